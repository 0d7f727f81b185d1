//! `dynpagectl check`: a document's field names, production versions, rollback pin and gray
//! share, and the `rollback` and `gray` hashes' entries that name no existing document.

use dynpage_core::layout::{
    check_gray_share, check_version, quote, version_error, DocRef, FIELD_AB, FIELD_PREDEPLOY,
    MAX_GRAY_SHARE,
};
use dynpage_core::store::{MAX_ENTRY_BYTES, MAX_FIELD_NAME_BYTES};
use dynpage_core::version::DocMeta;

use super::checker::{Checker, Doc, Facts, FieldWork, PIPELINE_COMMANDS, SCAN_COUNT};
use super::replies::int_reply;
use super::report::Kind;
use crate::context::{redis_err, Result};
use crate::when::format_ms;

impl Checker<'_> {
    /// A document's `rollback` or `gray` entry over the entry limit (it is not read).
    pub(super) fn entry_too_large(&mut self, hash: &str, d: &Doc, len: usize) -> Result<()> {
        let field = d.doc.field_name();
        self.problem(
            hash,
            Some(&field),
            Kind::EntryTooLarge,
            &format!(
                "the value is {len} bytes, over the {MAX_ENTRY_BYTES} byte limit: the module \
                 fails the whole source when it reads it"
            ),
        )
    }

    /// Checks a document's field names, versions, pin and gray share, and lists the fields whose
    /// values are to be read.
    pub(super) fn check_meta(
        &mut self,
        i: usize,
        d: &Doc,
        names: Vec<Vec<u8>>,
        pin: Option<String>,
        share: Option<String>,
        work: &mut Vec<FieldWork>,
    ) -> Result<()> {
        // Deleted since HLEN.
        if names.is_empty() {
            return Ok(());
        }
        let shown: Vec<String> = names
            .iter()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect();
        if let Some(long) = names
            .iter()
            .map(Vec::len)
            .find(|&n| n > MAX_FIELD_NAME_BYTES)
        {
            self.problem(
                &d.shown,
                None,
                Kind::NameTooLong,
                &format!(
                    "has a field name of {long} bytes, over the {MAX_FIELD_NAME_BYTES} byte \
                     limit: the module refuses {}",
                    d.doc
                ),
            )?;
        }
        let meta = DocMeta::from_fields(shown.iter().map(String::as_str), pin.as_deref(), None);
        if let DocRef::Template(name) = &d.doc {
            self.remember(
                &DocRef::Template(name.clone()),
                Facts::Versions(meta.versions.as_slice().into()),
            );
        }
        for (name, text) in names.into_iter().zip(shown) {
            if name.len() > MAX_FIELD_NAME_BYTES {
                continue;
            }
            if text != FIELD_PREDEPLOY && text != FIELD_AB {
                if let Err(e) = check_version(&text) {
                    self.problem(
                        &d.shown,
                        Some(&text),
                        Kind::NotAVersion,
                        &format!("{}; the module ignores this field", version_error(&text, e)),
                    )?;
                    continue;
                }
            }
            work.push(FieldWork {
                doc: i,
                name,
                shown: text,
                len: 0,
            });
        }
        self.check_production(d, &meta)?;
        self.check_pin(d, &meta, pin.as_deref())?;
        self.check_share(d, &meta, share.as_deref())
    }

    /// Rule 3: is there a production version now?
    fn check_production(&mut self, d: &Doc, meta: &DocMeta) -> Result<()> {
        let consequence = match d.doc {
            DocRef::Page(_) => "requests get 404",
            DocRef::Template(_) => "pages that use it fail",
        };
        if meta.versions.is_empty() {
            let only: Vec<&str> = [
                meta.has_predeploy.then_some(FIELD_PREDEPLOY),
                meta.has_ab.then_some(FIELD_AB),
            ]
            .into_iter()
            .flatten()
            .collect();
            let has = if only.is_empty() {
                String::new()
            } else {
                format!(" (only {})", only.join(" and "))
            };
            return self.problem(
                &d.shown,
                None,
                Kind::NoProductionVersion,
                &format!(
                    "has no production version{has}: {consequence} unless served predeploy or \
                     gray"
                ),
            );
        }
        if meta.production(self.now).is_none() {
            let first = meta.versions[0];
            return self.problem(
                &d.shown,
                None,
                Kind::OnlyFutureVersions,
                &format!(
                    "every version is in the future: {consequence} until the first, {first}, \
                     goes live at {}",
                    format_ms(first)
                ),
            );
        }
        Ok(())
    }

    fn check_pin(&mut self, d: &Doc, meta: &DocMeta, pin: Option<&str>) -> Result<()> {
        let Some(raw) = pin else {
            return Ok(());
        };
        let (key, field) = (self.ctx.layout.rollback_key(), d.doc.field_name());
        match check_version(raw) {
            Err(e) => self.problem(
                &key,
                Some(&field),
                Kind::PinNotAVersion,
                &format!("pin {}; the module ignores it", version_error(raw, e)),
            ),
            Ok(v) if meta.versions.binary_search(&v).is_err() => self.problem(
                &key,
                Some(&field),
                Kind::PinVersionMissing,
                &format!(
                    "pins version {v}, which {} does not have: the module ignores the pin",
                    d.doc
                ),
            ),
            Ok(_) => Ok(()),
        }
    }

    fn check_share(&mut self, d: &Doc, meta: &DocMeta, share: Option<&str>) -> Result<()> {
        let Some(raw) = share else {
            return Ok(());
        };
        let (key, field) = (self.ctx.layout.gray_key(), d.doc.field_name());
        match check_gray_share(raw) {
            Err(e) => self.problem(
                &key,
                Some(&field),
                Kind::GrayNotAShare,
                &format!(
                    "gray share {} is not a whole percent 0-100 written plainly: it {}; the \
                     module ignores it",
                    quote(raw),
                    e.reason(u64::from(MAX_GRAY_SHARE))
                ),
            ),
            Ok(p) if p > 0 && !meta.has_ab => self.problem(
                &key,
                Some(&field),
                Kind::GrayWithoutAbVersion,
                &format!(
                    "gray share {p}% but {} has no abVersion field: everyone gets production",
                    d.doc
                ),
            ),
            Ok(_) => Ok(()),
        }
    }

    /// The `rollback` (`pins`) or `gray` hash: entries that name no document, or a document that
    /// does not exist. (Entries of existing documents are checked with their document.)
    pub(super) fn entries(&mut self, pins: bool) -> Result<()> {
        let key = if pins {
            self.ctx.layout.rollback_key()
        } else {
            self.ctx.layout.gray_key()
        };
        let mut cursor: u64 = 0;
        loop {
            let reply: redis::RedisResult<(u64, Vec<Vec<u8>>)> = redis::cmd("HSCAN")
                .arg(&key)
                .arg(cursor)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .query(&mut self.con);
            let (next, flat) = match reply {
                Ok(r) => r,
                Err(e) if e.code() == Some("WRONGTYPE") => {
                    let what = if pins { "rollback pins" } else { "gray shares" };
                    return self.problem(
                        &key,
                        None,
                        Kind::NotAHash,
                        &format!("is not a hash: the module cannot read {what} from it"),
                    );
                }
                Err(e) => return redis_err(e),
            };
            // Field, value, field, value...: only the fields matter here.
            let mut named = Vec::new();
            for field in flat.into_iter().step_by(2) {
                let shown = String::from_utf8_lossy(&field).into_owned();
                match DocRef::parse_field_name(&shown) {
                    Some(doc) => named.push((shown, doc)),
                    None => {
                        self.problem(
                            &key,
                            Some(&shown),
                            Kind::EntryNotADocument,
                            "names no document: expected page:<page key> or tpl:<name>; the \
                             module never reads it",
                        )?;
                    }
                }
            }
            for slice in named.chunks(PIPELINE_COMMANDS) {
                let mut pipe = redis::pipe();
                for (_, doc) in slice {
                    pipe.cmd("EXISTS").arg(self.ctx.layout.doc_key(doc));
                }
                let replies = self.query(&mut pipe, slice.len())?;
                for ((shown, doc), r) in slice.iter().zip(replies) {
                    if int_reply("EXISTS", r)? == Some(0) {
                        let (kind, what) = if pins {
                            (Kind::PinDocumentMissing, "pins a version of")
                        } else {
                            (Kind::GrayDocumentMissing, "gray share for")
                        };
                        self.problem(
                            &key,
                            Some(shown),
                            kind,
                            &format!("{what} {doc}, which does not exist"),
                        )?;
                    }
                }
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}
