//! Shared by the integration tests: a fake Redis (documents, pins, gray shares, data keys),
//! what a fetch thread would read from it, and the resolver's `Inputs` over any cache map.

#![allow(dead_code)] // each test file uses its part

pub mod redis_server;

use std::collections::HashMap;
use std::sync::Arc;

use dynpage_core::layout::DocRef;
use dynpage_core::prepare::{prepare, Prepared, PreparedData, PreparedSnapshot};
use dynpage_core::render::CompiledTemplate;
use dynpage_core::resolve::{Inputs, Loaded, Slot};
use dynpage_core::store::{Fetch, Raw, RawMeta};
use dynpage_core::version::{DocMeta, Field};

/// The documents of a fake Redis.
#[derive(Default)]
pub struct Store {
    pub docs: HashMap<DocRef, Vec<(String, String)>>,
    /// Rollback pins (`P rollback`), by document field name (`page:/a`).
    pub pins: HashMap<String, String>,
    /// Gray shares (`P gray`), by document.
    pub gray: HashMap<DocRef, String>,
    /// Data keys (dimension mode).
    pub data: HashMap<String, String>,
}

impl Store {
    /// Writes `field` of `doc` (replacing it, as HSET does).
    pub fn put(&mut self, doc: DocRef, field: &str, value: &str) {
        let fields = self.docs.entry(doc).or_default();
        fields.retain(|(k, _)| k != field);
        fields.push((field.into(), value.into()));
    }

    /// What a fetch thread would read for `f`, prepared as the worker keeps it.
    pub fn fetch(&self, f: &Fetch) -> Prepared {
        let raw = match f {
            Fetch::Meta(d) => Raw::Meta(self.docs.get(d).map(|fields| RawMeta {
                fields: fields.iter().map(|(k, _)| k.clone()).collect(),
                pin: self.pins.get(&d.field_name()).cloned(),
                gray: self.gray.get(d).cloned(),
            })),
            Fetch::Field(d, field) => Raw::Field(self.docs.get(d).and_then(|fs| {
                fs.iter()
                    .find(|(k, _)| *k == field.name())
                    .map(|(_, v)| v.clone().into_bytes())
            })),
            Fetch::Data(k) => Raw::Data(Ok(self.data.get(k).map(|v| v.clone().into_bytes()))),
        };
        prepare(f, raw)
    }
}

/// A cache the resolver can read: an entry by its cache key.
pub trait Lookup {
    fn lookup(&self, key: &str) -> Option<&Prepared>;
}

impl Lookup for HashMap<String, Prepared> {
    fn lookup(&self, key: &str) -> Option<&Prepared> {
        self.get(key)
    }
}

/// The resolver's `Inputs` over a [`Lookup`].
pub struct Cached<'a, T: Lookup + ?Sized>(pub &'a T);

impl<T: Lookup + ?Sized> Inputs for Cached<'_, T> {
    fn meta(&mut self, page: bool, name: &str) -> Slot<Option<Arc<DocMeta>>> {
        let doc = if page {
            DocRef::Page(name.into())
        } else {
            DocRef::Template(name.into())
        };
        match self.0.lookup(&Fetch::Meta(doc).cache_key()) {
            Some(Prepared::Meta(m)) => Slot::Have(m.clone()),
            _ => Slot::Missing,
        }
    }
    fn snapshot(&mut self, key: &str, field: Field) -> Slot<Loaded<PreparedSnapshot>> {
        match self
            .0
            .lookup(&Fetch::Field(DocRef::Page(key.into()), field).cache_key())
        {
            Some(Prepared::Snapshot(s)) => Slot::Have(s.clone()),
            _ => Slot::Missing,
        }
    }
    fn template(&mut self, name: &str, field: Field) -> Slot<Loaded<CompiledTemplate>> {
        match self
            .0
            .lookup(&Fetch::Field(DocRef::Template(name.into()), field).cache_key())
        {
            Some(Prepared::Template(t)) => Slot::Have(t.clone()),
            _ => Slot::Missing,
        }
    }
    fn data(&mut self, key: &str) -> Slot<Loaded<PreparedData>> {
        match self.0.lookup(&Fetch::Data(key.into()).cache_key()) {
            Some(Prepared::Data(d)) => Slot::Have(d.clone()),
            _ => Slot::Missing,
        }
    }
}

pub fn page(k: &str) -> DocRef {
    DocRef::Page(k.into())
}

pub fn tpl(k: &str) -> DocRef {
    DocRef::Template(k.into())
}
