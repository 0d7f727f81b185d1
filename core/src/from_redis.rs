//! [`Inputs`] read straight from Redis, for `dynpagectl`: it resolves and renders exactly as the
//! module does, optionally with a page version that is not stored yet (the one being checked).

use std::sync::Arc;

use redis::{ConnectionLike, RedisError};

use crate::layout::{DocRef, Layout};
use crate::prepare::{prepare, Prepared, PreparedData, PreparedSnapshot};
use crate::render::CompiledTemplate;
use crate::resolve::{Inputs, Loaded, Slot};
use crate::store::{fetch_batch, Fetch, Raw};
use crate::version::{DocMeta, Field};

/// A page version checked before it is written: `key` at `field` holds `snapshot`.
pub struct Candidate {
    pub key: String,
    pub field: Field,
    pub snapshot: Arc<PreparedSnapshot>,
}

pub struct RedisInputs<'a> {
    con: &'a mut dyn ConnectionLike,
    layout: &'a Layout,
    candidate: Option<Candidate>,
    /// The first Redis error met; resolution then reports missing pieces.
    pub error: Option<RedisError>,
}

impl<'a> RedisInputs<'a> {
    pub fn new(
        con: &'a mut dyn ConnectionLike,
        layout: &'a Layout,
        candidate: Option<Candidate>,
    ) -> Self {
        RedisInputs {
            con,
            layout,
            candidate,
            error: None,
        }
    }

    fn load(&mut self, fetch: Fetch) -> Option<Prepared> {
        if self.error.is_some() {
            return None;
        }
        match fetch_batch(self.con, self.layout, std::slice::from_ref(&fetch)) {
            Ok(mut raws) => raws.pop().map(|raw: Raw| prepare(&fetch, raw)),
            Err(e) => {
                self.error = Some(e);
                None
            }
        }
    }
}

impl Inputs for RedisInputs<'_> {
    fn meta(&mut self, page: bool, name: &str) -> Slot<Option<Arc<DocMeta>>> {
        if let Some(c) = self.candidate.as_ref().filter(|c| page && c.key == name) {
            let mut meta = DocMeta::default();
            match c.field {
                Field::Version(v) => meta.versions.push(v),
                Field::Predeploy => meta.has_predeploy = true,
                Field::Ab => {
                    meta.has_ab = true;
                    meta.gray = 100;
                }
            }
            return Slot::Have(Some(Arc::new(meta)));
        }
        let doc = if page {
            DocRef::Page(name.into())
        } else {
            DocRef::Template(name.into())
        };
        match self.load(Fetch::Meta(doc)) {
            Some(Prepared::Meta(m)) => Slot::Have(m),
            _ => Slot::Missing,
        }
    }

    fn snapshot(&mut self, key: &str, field: Field) -> Slot<Loaded<PreparedSnapshot>> {
        if let Some(c) = self
            .candidate
            .as_ref()
            .filter(|c| c.key == key && c.field == field)
        {
            return Slot::Have(Some(Ok(c.snapshot.clone())));
        }
        match self.load(Fetch::Field(DocRef::Page(key.into()), field)) {
            Some(Prepared::Snapshot(s)) => Slot::Have(s),
            _ => Slot::Missing,
        }
    }

    fn template(&mut self, name: &str, field: Field) -> Slot<Loaded<CompiledTemplate>> {
        match self.load(Fetch::Field(DocRef::Template(name.into()), field)) {
            Some(Prepared::Template(t)) => Slot::Have(t),
            _ => Slot::Missing,
        }
    }

    fn data(&mut self, key: &str) -> Slot<Loaded<PreparedData>> {
        match self.load(Fetch::Data(key.into())) {
            Some(Prepared::Data(d)) => Slot::Have(d),
            _ => Slot::Missing,
        }
    }
}
