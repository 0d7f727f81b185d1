//! `P events`: what a message on the channel invalidates in a worker cache.
//!
//! A message is the full Redis key that changed: a document (`P page:<key>`, `P tpl:<name>`,
//! also sent for its `rollback` / `gray` entries), the `rollback` or `gray` hash itself, or a
//! data key. Cache keys are built by [`crate::store`]; this module reads them back.

use crate::layout::{DocRef, Layout};
use crate::store::{data_cache_key, CacheKey, CacheKeyKind};

/// What an event (or a lost subscription) invalidates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invalidation {
    /// Every cached piece of one document: its meta and every field.
    Doc(DocRef),
    /// Every document's meta (the `rollback` or `gray` hash changed as a whole).
    AllMetas,
    /// One data key (dimension mode).
    Data(String),
    /// Everything that can change without a new version: metas, `predeploy` / `abVersion`
    /// fields and data. Used after the subscription was lost, when events may have been missed.
    AllMutable,
}

impl Invalidation {
    /// Reads one message from `P events`.
    pub fn from_event(layout: &Layout, message: &str) -> Invalidation {
        if let Some(doc) = layout.parse_doc_key(message) {
            return Invalidation::Doc(doc);
        }
        if message == layout.rollback_key() || message == layout.gray_key() {
            return Invalidation::AllMetas;
        }
        Invalidation::Data(message.to_string())
    }

    /// The group (see [`group_of`]) whose entries this event touches; `None` for the events
    /// that touch a kind of entry everywhere (`AllMetas`, `AllMutable`).
    pub fn group(&self) -> Option<String> {
        match self {
            Invalidation::Doc(doc) => Some(doc.field_name()),
            Invalidation::Data(key) => Some(data_cache_key(key)),
            Invalidation::AllMetas | Invalidation::AllMutable => None,
        }
    }

    /// Whether the worker-cache entry under `cache_key` must go.
    pub fn covers(&self, cache_key: &str) -> bool {
        let Some(entry) = CacheKey::parse(cache_key) else {
            return false;
        };
        match self {
            Invalidation::Doc(doc) => entry.doc.as_ref() == Some(doc),
            Invalidation::AllMetas => entry.kind == CacheKeyKind::Meta,
            Invalidation::Data(key) => {
                entry.kind == CacheKeyKind::Data && entry.name == key.as_str()
            }
            Invalidation::AllMutable => entry.is_mutable(),
        }
    }
}

/// The invalidation group of a worker-cache key, a slice of it: the document (`page:<key>`,
/// `tpl:<name>`) for a meta or a field, the whole key for a data key. An event for a document
/// or a data key touches exactly the entries of its [`Invalidation::group`].
pub fn group_of(cache_key: &str) -> Option<&str> {
    let sep = crate::store::CACHE_KEY_SEP;
    let (tag, rest) = cache_key.split_once(sep)?;
    match tag {
        "M" => Some(rest),
        "F" => rest.split_once(sep).map(|(_, doc)| doc),
        "D" => Some(cache_key),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{data_cache_key, field_cache_key, meta_cache_key};
    use crate::version::Field;

    fn page(k: &str) -> DocRef {
        DocRef::Page(k.into())
    }

    #[test]
    fn reads_messages() {
        let l = Layout::default();
        assert_eq!(
            Invalidation::from_event(&l, "dynpage:page:/a.html"),
            Invalidation::Doc(page("/a.html"))
        );
        assert_eq!(
            Invalidation::from_event(&l, "dynpage:tpl:item"),
            Invalidation::Doc(DocRef::Template("item".into()))
        );
        assert_eq!(
            Invalidation::from_event(&l, "dynpage:rollback"),
            Invalidation::AllMetas
        );
        assert_eq!(
            Invalidation::from_event(&l, "dynpage:gray"),
            Invalidation::AllMetas
        );
        assert_eq!(
            Invalidation::from_event(&l, "shop:9"),
            Invalidation::Data("shop:9".into())
        );
        // Another prefix's document is not ours: treated as a data key, which matches nothing
        // unless a location reads it as data.
        assert_eq!(
            Invalidation::from_event(&l, "other:page:/a.html"),
            Invalidation::Data("other:page:/a.html".into())
        );
    }

    #[test]
    fn a_document_event_drops_its_meta_and_fields_only() {
        let a = page("/a.html");
        let invalidated = Invalidation::Doc(a.clone());
        assert!(invalidated.covers(&meta_cache_key(&a)));
        assert!(invalidated.covers(&field_cache_key(&a, Field::Version(5))));
        assert!(invalidated.covers(&field_cache_key(&a, Field::Predeploy)));
        assert!(!invalidated.covers(&meta_cache_key(&page("/a.html2"))));
        assert!(!invalidated.covers(&meta_cache_key(&page("/a"))));
        assert!(!invalidated.covers(&meta_cache_key(&DocRef::Template("/a.html".into()))));
        assert!(!invalidated.covers(&data_cache_key("page:/a.html")));
    }

    #[test]
    fn an_event_group_holds_exactly_what_covers_matches() {
        let a = page("/a.html");
        let keys = [
            meta_cache_key(&a),
            field_cache_key(&a, Field::Version(5)),
            field_cache_key(&a, Field::Predeploy),
            meta_cache_key(&page("/a.html2")),
            meta_cache_key(&DocRef::Template("/a.html".into())),
            field_cache_key(&DocRef::Template("item".into()), Field::Ab),
            data_cache_key("page:/a.html"),
            data_cache_key("shop:1"),
            data_cache_key("shop:10"),
        ];
        let events = [
            Invalidation::Doc(a.clone()),
            Invalidation::Doc(DocRef::Template("item".into())),
            Invalidation::Doc(DocRef::Template("/a.html".into())),
            Invalidation::Data("shop:1".into()),
            Invalidation::Data("page:/a.html".into()),
        ];
        for e in &events {
            let g = e.group().unwrap();
            for k in &keys {
                assert_eq!(group_of(k) == Some(g.as_str()), e.covers(k), "{e:?} {k:?}");
            }
        }
        assert_eq!(Invalidation::AllMetas.group(), None);
        assert_eq!(group_of("garbage"), None);
    }

    #[test]
    fn resync_keeps_immutable_versions() {
        let a = page("/a.html");
        assert!(Invalidation::AllMutable.covers(&meta_cache_key(&a)));
        assert!(Invalidation::AllMutable.covers(&field_cache_key(&a, Field::Ab)));
        assert!(Invalidation::AllMutable.covers(&data_cache_key("shop:1")));
        assert!(!Invalidation::AllMutable.covers(&field_cache_key(&a, Field::Version(7))));
        assert!(Invalidation::AllMetas.covers(&meta_cache_key(&a)));
        assert!(!Invalidation::AllMetas.covers(&field_cache_key(&a, Field::Ab)));
        let d = Invalidation::Data("shop:1".into());
        assert!(d.covers(&data_cache_key("shop:1")));
        assert!(!d.covers(&data_cache_key("shop:10")));
    }
}
