//! `P events`: what a message on the channel makes stale in a worker cache.
//!
//! A message is the full Redis key that changed: a document (`P page:<key>`, `P tpl:<name>`,
//! also sent for its `rollback` / `gray` entries), the `rollback` or `gray` hash itself, or a
//! data key. Cache keys are built by [`crate::store`]; this module reads them back.

use crate::layout::{DocRef, Layout};
use crate::store::{data_cache_key, CacheKey, CacheKeyKind};

/// What an event (or a lost subscription) invalidates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stale {
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

impl Stale {
    /// Reads one message from `P events`.
    pub fn from_event(layout: &Layout, message: &str) -> Stale {
        if let Some(doc) = layout.parse_doc_key(message) {
            return Stale::Doc(doc);
        }
        if message == layout.rollback_key() || message == layout.gray_key() {
            return Stale::AllMetas;
        }
        Stale::Data(message.to_string())
    }

    /// The group (see [`group_of`]) whose entries this event touches; `None` for the events
    /// that touch a kind of entry everywhere (`AllMetas`, `AllMutable`).
    pub fn group(&self) -> Option<String> {
        match self {
            Stale::Doc(doc) => Some(doc.field_name()),
            Stale::Data(key) => Some(data_cache_key(key)),
            Stale::AllMetas | Stale::AllMutable => None,
        }
    }

    /// Whether the worker-cache entry under `cache_key` must go.
    pub fn covers(&self, cache_key: &str) -> bool {
        let Some(entry) = CacheKey::parse(cache_key) else {
            return false;
        };
        match self {
            Stale::Doc(doc) => entry.doc.as_ref() == Some(doc),
            Stale::AllMetas => entry.kind == CacheKeyKind::Meta,
            Stale::Data(key) => entry.kind == CacheKeyKind::Data && entry.name == key.as_str(),
            Stale::AllMutable => entry.is_mutable(),
        }
    }
}

/// The invalidation group of a worker-cache key, a slice of it: the document (`page:<key>`,
/// `tpl:<name>`) for a meta or a field, the whole key for a data key. An event for a document
/// or a data key touches exactly the entries of its [`Stale::group`].
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
            Stale::from_event(&l, "dynpage:page:/a.html"),
            Stale::Doc(page("/a.html"))
        );
        assert_eq!(
            Stale::from_event(&l, "dynpage:tpl:item"),
            Stale::Doc(DocRef::Template("item".into()))
        );
        assert_eq!(Stale::from_event(&l, "dynpage:rollback"), Stale::AllMetas);
        assert_eq!(Stale::from_event(&l, "dynpage:gray"), Stale::AllMetas);
        assert_eq!(
            Stale::from_event(&l, "shop:9"),
            Stale::Data("shop:9".into())
        );
        // Another prefix's document is not ours: treated as a data key, which matches nothing
        // unless a location reads it as data.
        assert_eq!(
            Stale::from_event(&l, "other:page:/a.html"),
            Stale::Data("other:page:/a.html".into())
        );
    }

    #[test]
    fn a_document_event_drops_its_meta_and_fields_only() {
        let a = page("/a.html");
        let stale = Stale::Doc(a.clone());
        assert!(stale.covers(&meta_cache_key(&a)));
        assert!(stale.covers(&field_cache_key(&a, Field::Version(5))));
        assert!(stale.covers(&field_cache_key(&a, Field::Predeploy)));
        assert!(!stale.covers(&meta_cache_key(&page("/a.html2"))));
        assert!(!stale.covers(&meta_cache_key(&page("/a"))));
        assert!(!stale.covers(&meta_cache_key(&DocRef::Template("/a.html".into()))));
        assert!(!stale.covers(&data_cache_key("page:/a.html")));
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
            Stale::Doc(a.clone()),
            Stale::Doc(DocRef::Template("item".into())),
            Stale::Doc(DocRef::Template("/a.html".into())),
            Stale::Data("shop:1".into()),
            Stale::Data("page:/a.html".into()),
        ];
        for e in &events {
            let g = e.group().unwrap();
            for k in &keys {
                assert_eq!(group_of(k) == Some(g.as_str()), e.covers(k), "{e:?} {k:?}");
            }
        }
        assert_eq!(Stale::AllMetas.group(), None);
        assert_eq!(group_of("garbage"), None);
    }

    #[test]
    fn resync_keeps_immutable_versions() {
        let a = page("/a.html");
        assert!(Stale::AllMutable.covers(&meta_cache_key(&a)));
        assert!(Stale::AllMutable.covers(&field_cache_key(&a, Field::Ab)));
        assert!(Stale::AllMutable.covers(&data_cache_key("shop:1")));
        assert!(!Stale::AllMutable.covers(&field_cache_key(&a, Field::Version(7))));
        assert!(Stale::AllMetas.covers(&meta_cache_key(&a)));
        assert!(!Stale::AllMetas.covers(&field_cache_key(&a, Field::Ab)));
        let d = Stale::Data("shop:1".into());
        assert!(d.covers(&data_cache_key("shop:1")));
        assert!(!d.covers(&data_cache_key("shop:10")));
    }
}
