//! `dynpagectl check`: a document's values (template source, snapshots) and what they refer to
//! (templates, template versions, includes), looked up through a bounded cache.

use dynpage_core::layout::{quote, DocRef, MAX_NAME_LEN};
use dynpage_core::render::compile;
use dynpage_core::snapshot::{Snapshot, SnapshotError, TemplateSpec};
use dynpage_core::store::MAX_DOC_FIELDS;
use dynpage_core::version::DocMeta;

use super::checker::{Checker, Doc, Facts, TEMPLATE_CACHE};
use super::replies::{int_reply, list_reply};
use super::report::Kind;
use crate::context::Result;

impl Checker<'_> {
    /// Checks one value: a template's source, or a page's snapshot.
    pub(super) fn check_value(&mut self, d: &Doc, field: &str, value: Vec<u8>) -> Result<()> {
        let what = match d.doc {
            DocRef::Page(_) => "snapshot",
            DocRef::Template(_) => "template",
        };
        let text = match String::from_utf8(value) {
            Ok(t) => t,
            Err(e) => {
                return self.problem(
                    &d.shown,
                    Some(field),
                    Kind::NotUtf8,
                    &format!("{what} is not UTF-8: {}", e.utf8_error()),
                )
            }
        };
        if let DocRef::Template(_) = d.doc {
            return self.check_source(&d.shown, field, text, "");
        }
        let snapshot = match Snapshot::parse(&text) {
            Ok(s) => s,
            Err(e) => {
                let kind = match e {
                    SnapshotError::NotJson(_) => Kind::SnapshotNotJson,
                    _ => Kind::SnapshotInvalid,
                };
                return self.problem(&d.shown, Some(field), kind, &e.to_string());
            }
        };
        match snapshot.template {
            TemplateSpec::Inline(src) => self.check_source(&d.shown, field, src, "inline "),
            TemplateSpec::Named { name, version } => {
                self.check_reference(&d.shown, field, &name, version)
            }
        }
    }

    /// Template source compiles, and every template it includes exists. `what` is put before
    /// "template" in messages (`inline ` for a snapshot's own template).
    fn check_source(&mut self, key: &str, field: &str, src: String, what: &str) -> Result<()> {
        let compiled = match compile(src) {
            Ok(t) => t,
            Err(e) => {
                return self.problem(
                    key,
                    Some(field),
                    Kind::TemplateDoesNotCompile,
                    &format!("{what}{e}"),
                )
            }
        };
        for name in compiled.includes() {
            if matches!(self.template(name)?, Facts::Missing) {
                let consequence = if compiled.modules().contains(name) {
                    "it is included `with` data, so it renders as nothing"
                } else {
                    "the render fails"
                };
                self.problem(
                    key,
                    Some(field),
                    Kind::IncludeMissing,
                    &format!(
                        "{what}template includes template {}, which does not exist: {consequence}",
                        quote(name)
                    ),
                )?;
            }
        }
        Ok(())
    }

    /// A snapshot's `{"name": ..., "version": ...}`: the template (and version) exists.
    fn check_reference(
        &mut self,
        key: &str,
        field: &str,
        name: &str,
        version: Option<u64>,
    ) -> Result<()> {
        match (self.template(name)?, version) {
            (Facts::Missing, _) => self.problem(
                key,
                Some(field),
                Kind::TemplateMissing,
                &format!("names template {}, which does not exist", quote(name)),
            ),
            (Facts::Versions(vs), Some(v)) if vs.binary_search(&v).is_err() => self.problem(
                key,
                Some(field),
                Kind::TemplateVersionMissing,
                &format!(
                    "names template {} version {v}, which does not exist",
                    quote(name)
                ),
            ),
            _ => Ok(()),
        }
    }

    /// What is known of template `name`: from the cache, else read (`HLEN`, then `HKEYS`).
    fn template(&mut self, name: &str) -> Result<Facts> {
        if let Some(f) = self.templates.get(name) {
            return Ok(f.clone());
        }
        let facts = if name.is_empty() || name.len() > MAX_NAME_LEN {
            // The module refuses such a name without asking Redis.
            Facts::Missing
        } else {
            let key = self.ctx.layout.doc_key(&DocRef::Template(name.to_string()));
            let mut pipe = redis::pipe();
            pipe.cmd("HLEN").arg(&key);
            let len = self
                .query(&mut pipe, 1)?
                .pop()
                .map(|v| int_reply("HLEN", v));
            match len.transpose()?.flatten() {
                None => Facts::Unlisted,
                Some(0) => Facts::Missing,
                Some(n) if n > MAX_DOC_FIELDS => Facts::Unlisted,
                Some(_) => {
                    let mut pipe = redis::pipe();
                    pipe.cmd("HKEYS").arg(&key);
                    let names = self
                        .query(&mut pipe, 1)?
                        .pop()
                        .map(|v| list_reply("HKEYS", v));
                    match names.transpose()?.flatten() {
                        None => Facts::Unlisted,
                        Some(names) if names.is_empty() => Facts::Missing,
                        Some(names) => {
                            let shown: Vec<String> = names
                                .iter()
                                .map(|n| String::from_utf8_lossy(n).into_owned())
                                .collect();
                            let meta =
                                DocMeta::from_fields(shown.iter().map(String::as_str), None, None);
                            Facts::Versions(meta.versions.into())
                        }
                    }
                }
            }
        };
        self.remember(&DocRef::Template(name.to_string()), facts.clone());
        Ok(facts)
    }

    pub(super) fn remember(&mut self, doc: &DocRef, facts: Facts) {
        if let DocRef::Template(name) = doc {
            if self.templates.len() >= TEMPLATE_CACHE {
                self.templates.clear();
            }
            self.templates.insert(name.clone(), facts);
        }
    }
}
