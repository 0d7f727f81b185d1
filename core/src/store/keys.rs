//! Worker-cache keys: building them (into a reused buffer, or new) and reading them back.

use crate::layout::DocRef;
use crate::version::Field;

/// Separator inside cache keys; it cannot occur in field names.
pub const CACHE_KEY_SEP: char = '\u{1}';
const SEP: char = CACHE_KEY_SEP;

fn kind_tag(doc_is_page: bool) -> &'static str {
    if doc_is_page {
        "page:"
    } else {
        "tpl:"
    }
}

/// Writes the cache key of a document's meta into `buf` (cleared first): no allocation once
/// `buf` has grown.
pub fn write_meta_cache_key(buf: &mut String, doc_is_page: bool, name: &str) {
    buf.clear();
    buf.push('M');
    buf.push(SEP);
    buf.push_str(kind_tag(doc_is_page));
    buf.push_str(name);
}

/// Writes the cache key of one document field into `buf` (cleared first).
pub fn write_field_cache_key(buf: &mut String, doc_is_page: bool, name: &str, field: Field) {
    use std::fmt::Write;
    buf.clear();
    buf.push('F');
    buf.push(SEP);
    let _ = write!(buf, "{field}");
    buf.push(SEP);
    buf.push_str(kind_tag(doc_is_page));
    buf.push_str(name);
}

pub fn meta_cache_key(doc: &DocRef) -> String {
    let mut s = String::new();
    write_meta_cache_key(&mut s, matches!(doc, DocRef::Page(_)), doc.name());
    s
}

pub fn field_cache_key(doc: &DocRef, field: Field) -> String {
    let mut s = String::new();
    write_field_cache_key(&mut s, matches!(doc, DocRef::Page(_)), doc.name(), field);
    s
}

/// Writes the cache key of one data key (dimension mode) into `buf` (cleared first).
pub fn write_data_cache_key(buf: &mut String, key: &str) {
    buf.clear();
    buf.push('D');
    buf.push(SEP);
    buf.push_str(key);
}

/// Cache key of one data key (dimension mode).
pub fn data_cache_key(key: &str) -> String {
    let mut s = String::with_capacity(2 + key.len());
    write_data_cache_key(&mut s, key);
    s
}

/// What kind of value a cache key holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheKeyKind {
    Meta,
    Field(Field),
    Data,
}

/// A worker-cache key read back: which document (or data key) and which part of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheKey<'a> {
    pub kind: CacheKeyKind,
    /// The document, for metas and fields.
    pub doc: Option<DocRef>,
    /// The page key, template name or data key.
    pub name: &'a str,
}

impl<'a> CacheKey<'a> {
    pub fn parse(key: &'a str) -> Option<CacheKey<'a>> {
        let (tag, rest) = key.split_once(SEP)?;
        let (kind, doc_part) = match tag {
            "M" => (CacheKeyKind::Meta, rest),
            "F" => {
                let (field, doc) = rest.split_once(SEP)?;
                (CacheKeyKind::Field(Field::parse(field)?), doc)
            }
            "D" => {
                return Some(CacheKey {
                    kind: CacheKeyKind::Data,
                    doc: None,
                    name: rest,
                })
            }
            _ => return None,
        };
        let doc = DocRef::parse_field_name(doc_part)?;
        let name = doc_part.split_once(':').map_or("", |(_, n)| n);
        Some(CacheKey {
            kind,
            doc: Some(doc),
            name,
        })
    }

    /// Whether the value can change without a new version (so events and resyncs drop it).
    pub fn is_mutable(&self) -> bool {
        match self.kind {
            CacheKeyKind::Meta | CacheKeyKind::Data => true,
            CacheKeyKind::Field(f) => !f.is_immutable(),
        }
    }
}
