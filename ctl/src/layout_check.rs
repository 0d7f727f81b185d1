//! `dynpagectl check`: reads the whole layout under the prefix and reports what would fail at
//! request time, one line per problem (`--json`: one JSON array of objects).
//!
//! It reads as the module reads, with the module's own parsers and limits (`dynpage_core`): a
//! field is a version only when `layout::check_version` says so, a snapshot is what
//! `Snapshot::parse` accepts, a template is what `render::compile` compiles, and a document,
//! field name or value over the `store` limits is reported rather than read. (`check.rs` is
//! another job: the render check every publish passes.)
//!
//! Nothing is assumed small. Keys are found with `SCAN MATCH <prefix>* COUNT n` (never `KEYS`);
//! the documents of each SCAN reply are read in a few pipelines (sizes, field names, value
//! lengths, then values in slices of bounded bytes), so memory holds one SCAN reply's field names
//! and at most a slice of values at a time. The `rollback` and `gray` hashes are read with
//! `HSCAN`. Problems are written as they are found. What a document refers to (a template, a
//! template's version) is looked up in Redis when needed, through a bounded cache.
//!
//! SCAN and HSCAN may return an element twice while Redis resizes a table during the check; a
//! problem is then reported twice. Nothing is missed.

use std::collections::HashMap;

use dynpage_core::layout::{DocRef, MAX_NAME_LEN};
use dynpage_core::store::{glob_escape, MAX_DOC_FIELDS, MAX_ENTRY_BYTES, MAX_FIELD_BYTES};

use crate::args::Args;
use crate::context::{fail, now_ms, redis_err, Ctx, Result};

mod checker;
mod meta;
mod replies;
mod report;
mod values;

use checker::{Checker, Doc, Facts, FieldWork, PIPELINE_COMMANDS, SCAN_COUNT};
use replies::{bytes_reply, int_reply, list_reply};
use report::{Kind, Report};

/// Most value bytes asked for in one pipeline of `HGET`s (a single larger value goes alone; none
/// is over [`MAX_FIELD_BYTES`]).
const PIPELINE_VALUE_BYTES: usize = 16 * 1024 * 1024;
/// Most fields of the documents read in one group (their names, then their values in slices).
const PIPELINE_FIELDS: usize = 20_000;

/// Consecutive ranges of `sizes` of at most [`PIPELINE_COMMANDS`] items and `max_total` in sum
/// (an item over `max_total` alone).
fn slices(sizes: &[usize], max_total: usize) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::new();
    let mut start = 0;
    while start < sizes.len() {
        let mut end = start + 1;
        let mut total = sizes[start];
        while end < sizes.len()
            && end - start < PIPELINE_COMMANDS
            && total.saturating_add(sizes[end]) <= max_total
        {
            total += sizes[end];
            end += 1;
        }
        ranges.push(start..end);
        start = end;
    }
    ranges
}

pub(crate) fn check(ctx: &Ctx, args: &Args) -> Result<()> {
    args.only(&["json"])?;
    let prefix = args
        .opt("prefix")
        .unwrap_or(dynpage_core::layout::DEFAULT_PREFIX);
    let con = ctx.connect()?;
    let mut c = Checker {
        ctx,
        con,
        now: now_ms(),
        report: Report {
            json: args.flag("json"),
            count: 0,
            out: std::io::BufWriter::new(std::io::stdout()),
        },
        templates: HashMap::new(),
        pages: 0,
        template_docs: 0,
    };
    c.documents(prefix)?;
    c.entries(true)?;
    c.entries(false)?;
    c.report.finish()?;
    match c.report.count {
        0 => {
            eprintln!(
                "dynpagectl: no problems under \"{}\": {} page(s), {} template(s) checked",
                prefix.escape_debug(),
                c.pages,
                c.template_docs
            );
            Ok(())
        }
        n => fail(format!(
            "{n} problem(s) under \"{}\" ({} page(s), {} template(s) checked)",
            prefix.escape_debug(),
            c.pages,
            c.template_docs
        )),
    }
}

impl Checker<'_> {
    /// Every page and template document under the prefix, one SCAN reply at a time.
    fn documents(&mut self, prefix: &str) -> Result<()> {
        let pattern = format!("{}*", glob_escape(prefix));
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .query(&mut self.con)
                .or_else(redis_err)?;
            let docs: Vec<(Vec<u8>, String, DocRef)> = keys
                .into_iter()
                .filter_map(|key| {
                    let shown = String::from_utf8_lossy(&key).into_owned();
                    let doc = self.ctx.layout.parse_doc_key(&shown)?;
                    Some((key, shown, doc))
                })
                .collect();
            self.check_docs(docs)?;
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    /// Checks the documents of one SCAN reply, in four rounds of pipelines.
    /// Documents are taken in groups of at most [`PIPELINE_FIELDS`] fields (a larger one alone),
    /// so what is held at once is bounded whatever the documents hold.
    fn check_docs(&mut self, found: Vec<(Vec<u8>, String, DocRef)>) -> Result<()> {
        let docs = self.sizes(found)?;
        let lens: Vec<usize> = docs.iter().map(|d| d.len).collect();
        for range in slices(&lens, PIPELINE_FIELDS) {
            let group = &docs[range];
            let mut work = self.metas(group)?;
            self.value_lengths(group, &mut work)?;
            self.values(group, work)?;
        }
        Ok(())
    }

    /// Round 1: sizes (each document's field count, its pin's and gray share's lengths). A
    /// document that cannot be read further is reported here and left out.
    fn sizes(&mut self, found: Vec<(Vec<u8>, String, DocRef)>) -> Result<Vec<Doc>> {
        let (rollback, gray) = (self.ctx.layout.rollback_key(), self.ctx.layout.gray_key());
        let mut pipe = redis::pipe();
        for (key, _, doc) in &found {
            let name = doc.field_name();
            pipe.cmd("HLEN").arg(key.as_slice());
            pipe.cmd("HSTRLEN").arg(&rollback).arg(&name);
            pipe.cmd("HSTRLEN").arg(&gray).arg(&name);
        }
        let mut replies = self.query(&mut pipe, found.len() * 3)?.into_iter();
        let mut docs = Vec::with_capacity(found.len());
        for (key, shown, doc) in found {
            let (Some(len), Some(pin), Some(share)) =
                (replies.next(), replies.next(), replies.next())
            else {
                return fail("redis: too few replies");
            };
            let len = int_reply("HLEN", len)?;
            // Another type of key under the rollback or gray name is reported by entries().
            let pin_len = int_reply("HSTRLEN", pin)?;
            let gray_len = int_reply("HSTRLEN", share)?;
            match doc {
                DocRef::Page(_) => self.pages += 1,
                DocRef::Template(_) => self.template_docs += 1,
            }
            match len {
                None => {
                    self.problem(
                        &shown,
                        None,
                        Kind::NotAHash,
                        &format!("is not a hash: the module cannot read {doc}"),
                    )?;
                    self.remember(&doc, Facts::Unlisted);
                    continue;
                }
                // Deleted since SCAN found it.
                Some(0) => continue,
                Some(n) if n > MAX_DOC_FIELDS => {
                    self.problem(
                        &shown,
                        None,
                        Kind::TooManyFields,
                        &format!(
                            "has {n} fields, over the {MAX_DOC_FIELDS} field limit: the module \
                             refuses {doc} (its fields are not checked; prune it)"
                        ),
                    )?;
                    self.remember(&doc, Facts::Unlisted);
                    continue;
                }
                Some(_) => {}
            }
            if doc.name().len() > MAX_NAME_LEN {
                self.problem(
                    &shown,
                    None,
                    Kind::NameTooLong,
                    &format!(
                        "the name is {} bytes, over the {MAX_NAME_LEN} byte limit: the module \
                         never reads this document",
                        doc.name().len()
                    ),
                )?;
            }
            docs.push(Doc {
                key,
                shown,
                doc,
                len: len.unwrap_or(0),
                pin_len,
                gray_len,
            });
        }
        Ok(docs)
    }

    /// Round 2: field names, and pins and gray shares within the entry limit; checks each
    /// document's meta and lists the fields whose values are to be read.
    fn metas(&mut self, docs: &[Doc]) -> Result<Vec<FieldWork>> {
        let (rollback, gray) = (self.ctx.layout.rollback_key(), self.ctx.layout.gray_key());
        let readable = |len: Option<usize>| len.is_some_and(|n| n <= MAX_ENTRY_BYTES);
        let mut pipe = redis::pipe();
        let mut n = 0;
        for d in docs {
            let name = d.doc.field_name();
            pipe.cmd("HKEYS").arg(d.key.as_slice());
            n += 1;
            for (hash, len) in [(&rollback, d.pin_len), (&gray, d.gray_len)] {
                if readable(len) {
                    pipe.cmd("HGET").arg(hash).arg(&name);
                    n += 1;
                }
            }
        }
        let mut replies = self.query(&mut pipe, n)?.into_iter();
        let mut next = |command: &str| match replies.next() {
            Some(v) => Ok(v),
            None => fail(format!("redis: no reply to {command}")),
        };
        let mut work = Vec::new();
        for (i, d) in docs.iter().enumerate() {
            let names = list_reply("HKEYS", next("HKEYS")?)?.unwrap_or_default();
            let mut entries = [None, None];
            for (slot, (hash, len)) in entries
                .iter_mut()
                .zip([(&rollback, d.pin_len), (&gray, d.gray_len)])
            {
                if readable(len) {
                    *slot = bytes_reply("HGET", next("HGET")?)?
                        .map(|v| String::from_utf8_lossy(&v).into_owned());
                } else if let Some(len) = len {
                    self.entry_too_large(hash, d, len)?;
                }
            }
            let [pin, share] = entries;
            self.check_meta(i, d, names, pin, share, &mut work)?;
        }
        Ok(work)
    }

    /// Round 3: the length of each value, in slices.
    fn value_lengths(&mut self, docs: &[Doc], work: &mut [FieldWork]) -> Result<()> {
        for slice in work.chunks_mut(PIPELINE_COMMANDS) {
            let mut pipe = redis::pipe();
            for w in slice.iter() {
                pipe.cmd("HSTRLEN")
                    .arg(docs[w.doc].key.as_slice())
                    .arg(w.name.as_slice());
            }
            let replies = self.query(&mut pipe, slice.len())?;
            for (w, r) in slice.iter_mut().zip(replies) {
                w.len = int_reply("HSTRLEN", r)?.unwrap_or(0);
            }
        }
        Ok(())
    }

    /// Round 4: the values within the field limit, in slices of bounded bytes, each checked.
    fn values(&mut self, docs: &[Doc], work: Vec<FieldWork>) -> Result<()> {
        let mut readable = Vec::with_capacity(work.len());
        for w in work {
            if w.len > MAX_FIELD_BYTES {
                let key = docs[w.doc].shown.clone();
                self.problem(
                    &key,
                    Some(&w.shown),
                    Kind::ValueTooLarge,
                    &format!(
                        "the value is {} bytes, over the {MAX_FIELD_BYTES} byte limit: the module \
                         refuses this version",
                        w.len
                    ),
                )?;
            } else {
                readable.push(w);
            }
        }
        let lens: Vec<usize> = readable.iter().map(|w| w.len).collect();
        for range in slices(&lens, PIPELINE_VALUE_BYTES) {
            let mut pipe = redis::pipe();
            for w in &readable[range.clone()] {
                pipe.cmd("HGET")
                    .arg(docs[w.doc].key.as_slice())
                    .arg(w.name.as_slice());
            }
            let replies = self.query(&mut pipe, range.len())?;
            for (w, r) in readable[range].iter().zip(replies) {
                // Deleted since HKEYS: nothing to check.
                if let Some(value) = bytes_reply("HGET", r)? {
                    self.check_value(&docs[w.doc], &w.shown, value)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_are_bounded_in_count_and_total() {
        assert_eq!(slices(&[], 10), Vec::<std::ops::Range<usize>>::new());
        assert_eq!(slices(&[4, 4, 4, 20, 1], 10), vec![0..2, 2..3, 3..4, 4..5]);
        assert_eq!(slices(&[usize::MAX, 1], 10), vec![0..1, 1..2]);
        let many = vec![0; PIPELINE_COMMANDS + 1];
        assert_eq!(
            slices(&many, 10),
            vec![
                0..PIPELINE_COMMANDS,
                PIPELINE_COMMANDS..PIPELINE_COMMANDS + 1
            ]
        );
    }

    #[test]
    fn prefixes_match_only_themselves_and_lines_stay_lines() {
        assert_eq!(glob_escape("dynpage:"), "dynpage:");
        assert_eq!(glob_escape(r"a*b?[c]\"), r"a\*b\?\[c\]\\");
        assert_eq!(report::one_line("/a\nb\tc"), "/a\\nb\\tc");
        assert_eq!(report::one_line("/商品/1"), "/商品/1");
    }
}
