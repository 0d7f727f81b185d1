//! Reads of single documents for `dynpagectl`: a meta, one field, the list of pages.

use redis::{ConnectionLike, RedisResult, Value};

use super::batch::{fetch_batch, unexpected};
use super::fetch::{Fetch, Raw, RawMeta};
use crate::layout::{DocRef, Layout};
use crate::version::Field;

/// Reads a document's meta (field names, pin, gray share).
pub fn get_meta(
    con: &mut dyn ConnectionLike,
    layout: &Layout,
    doc: &DocRef,
) -> RedisResult<Option<RawMeta>> {
    match fetch_batch(con, layout, &[Fetch::Meta(doc.clone())])?.pop() {
        Some(Raw::Meta(m)) => Ok(m),
        _ => Err(unexpected(&Value::Nil)),
    }
}

/// One field of a document as text, `None` if absent.
pub fn get_field(
    con: &mut dyn ConnectionLike,
    layout: &Layout,
    doc: &DocRef,
    field: Field,
) -> RedisResult<Option<String>> {
    redis::cmd("HGET")
        .arg(layout.doc_key(doc))
        .arg(field.name())
        .query(con)
}

/// Every page document under the prefix (SCAN, so Redis is never blocked).
pub fn list_pages(con: &mut dyn ConnectionLike, layout: &Layout) -> RedisResult<Vec<DocRef>> {
    let pattern = format!(
        "{}*",
        glob_escape(&layout.doc_key(&DocRef::Page(String::new())))
    );
    let mut cursor: u64 = 0;
    let mut pages = Vec::new();
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query(con)?;
        pages.extend(keys.iter().filter_map(|k| layout.parse_doc_key(k)));
        if next == 0 {
            break;
        }
        cursor = next;
    }
    pages.sort_by(|a, b| a.name().cmp(b.name()));
    pages.dedup();
    Ok(pages)
}

/// `s` escaped for a SCAN `MATCH` pattern, so that it matches only itself.
pub fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
