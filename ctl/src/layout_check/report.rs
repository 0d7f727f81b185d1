//! How `dynpagectl check` writes what it finds: one line per problem, or one JSON array.

use std::io::Write;

use serde_json::json;

use crate::context::{fail, Result};

/// What kind of problem: the `problem` value of `--json`, stable for machines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    NotAHash,
    TooManyFields,
    NameTooLong,
    NotAVersion,
    NoProductionVersion,
    OnlyFutureVersions,
    ValueTooLarge,
    NotUtf8,
    SnapshotNotJson,
    SnapshotInvalid,
    TemplateDoesNotCompile,
    IncludeMissing,
    TemplateMissing,
    TemplateVersionMissing,
    EntryNotADocument,
    EntryTooLarge,
    PinNotAVersion,
    PinDocumentMissing,
    PinVersionMissing,
    GrayNotAShare,
    GrayDocumentMissing,
    GrayWithoutAbVersion,
}

impl Kind {
    pub fn code(self) -> &'static str {
        match self {
            Kind::NotAHash => "not_a_hash",
            Kind::TooManyFields => "too_many_fields",
            Kind::NameTooLong => "name_too_long",
            Kind::NotAVersion => "not_a_version",
            Kind::NoProductionVersion => "no_production_version",
            Kind::OnlyFutureVersions => "only_future_versions",
            Kind::ValueTooLarge => "value_too_large",
            Kind::NotUtf8 => "not_utf8",
            Kind::SnapshotNotJson => "snapshot_not_json",
            Kind::SnapshotInvalid => "snapshot_invalid",
            Kind::TemplateDoesNotCompile => "template_does_not_compile",
            Kind::IncludeMissing => "include_missing",
            Kind::TemplateMissing => "template_missing",
            Kind::TemplateVersionMissing => "template_version_missing",
            Kind::EntryNotADocument => "entry_not_a_document",
            Kind::EntryTooLarge => "entry_too_large",
            Kind::PinNotAVersion => "pin_not_a_version",
            Kind::PinDocumentMissing => "pin_document_missing",
            Kind::PinVersionMissing => "pin_version_missing",
            Kind::GrayNotAShare => "gray_not_a_share",
            Kind::GrayDocumentMissing => "gray_document_missing",
            Kind::GrayWithoutAbVersion => "gray_without_ab_version",
        }
    }
}

/// Writes problems as they are found: lines, or the elements of one JSON array.
pub(super) struct Report {
    pub json: bool,
    pub count: usize,
    pub out: std::io::BufWriter<std::io::Stdout>,
}

impl Report {
    pub fn add(&mut self, key: &str, field: Option<&str>, kind: Kind, message: &str) -> Result<()> {
        let written = if self.json {
            let item = json!({
                "key": key,
                "field": field,
                "problem": kind.code(),
                "message": message,
            });
            let sep = if self.count == 0 { "[\n  " } else { ",\n  " };
            write!(self.out, "{sep}{item}")
        } else {
            match field {
                Some(f) => writeln!(
                    self.out,
                    "{} field {}: {}",
                    one_line(key),
                    one_line(f),
                    one_line(message)
                ),
                None => writeln!(self.out, "{}: {}", one_line(key), one_line(message)),
            }
        };
        self.count += 1;
        written.or_else(|e| fail(format!("cannot write the report: {e}")))
    }

    pub fn finish(&mut self) -> Result<()> {
        let end = match (self.json, self.count) {
            (false, _) => Ok(()),
            (true, 0) => writeln!(self.out, "[]"),
            (true, _) => writeln!(self.out, "\n]"),
        };
        end.and_then(|()| self.out.flush())
            .or_else(|e| fail(format!("cannot write the report: {e}")))
    }
}

/// `s` with control characters escaped, so that one problem is one line.
pub(super) fn one_line(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}
