//! The worker as the request path's decisions see it (`dynpage_core::serve::Env`): the worker
//! cache through the resolver's `Inputs`, judged by `cache_entry::Entry::serves`; the sources'
//! health; the failure memo; the output buffer.

use std::sync::Arc;

use dynpage_core::cache_entry::{Freshness, Judged};
use dynpage_core::failures::Failures;
use dynpage_core::layout::DocRef;
use dynpage_core::metrics::Lookup;
use dynpage_core::output_cache::OutputCache;
use dynpage_core::prepare::{Prepared, PreparedData, PreparedSnapshot};
use dynpage_core::render::CompiledTemplate;
use dynpage_core::resolve::{Inputs, Loaded, Slot};
use dynpage_core::serve::Env;
use dynpage_core::store::{
    write_data_cache_key, write_field_cache_key, write_meta_cache_key, Fetch,
};
use dynpage_core::version::{DocMeta, Field};

use crate::worker::Runtime;

/// One request's view of the worker.
pub struct WorkerEnv<'a> {
    rt: &'a mut Runtime,
    now_ms: u64,
    ttl_ms: u64,
    since_ms: u64,
    stale_ttl_ms: u64,
    /// `dynpage_output_cache` of the location.
    keep_outputs: bool,
    /// `dynpage_background_update`: how long past its TTL an entry serves while refreshed.
    updating_ms: u64,
    /// What served past its TTL (see `updating_ms`): to fetch in the background.
    refresh: Vec<Fetch>,
}

impl<'a> WorkerEnv<'a> {
    /// `since_ms`: when the request started (what was loaded since then is fresh for it).
    pub fn new(
        rt: &'a mut Runtime,
        now_ms: u64,
        ttl_ms: u64,
        since_ms: u64,
        stale_ttl_ms: u64,
        keep_outputs: bool,
        updating_ms: u64,
    ) -> WorkerEnv<'a> {
        WorkerEnv {
            rt,
            now_ms,
            ttl_ms,
            since_ms,
            stale_ttl_ms,
            keep_outputs,
            updating_ms,
            refresh: Vec::new(),
        }
    }

    /// What served past its TTL and is to be refreshed in the background.
    pub fn take_refresh(&mut self) -> Vec<Fetch> {
        std::mem::take(&mut self.refresh)
    }
}

impl Env for WorkerEnv<'_> {
    fn inputs(&mut self, stale: bool) -> impl Inputs + '_ {
        let fresh = Freshness {
            now_ms: self.now_ms,
            ttl_ms: self.ttl_ms,
            since_ms: self.since_ms,
            stale_ttl_ms: stale.then_some(self.stale_ttl_ms),
            updating_ms: if stale { 0 } else { self.updating_ms },
            epochs: self.rt.epochs(),
        };
        CacheInputs {
            rt: self.rt,
            fresh,
            refresh: &mut self.refresh,
        }
    }

    fn sources_down(&self) -> bool {
        self.rt.source_down(self.now_ms)
    }

    fn failures(&mut self) -> &mut Failures {
        &mut self.rt.failures
    }

    fn output(&mut self) -> &mut Vec<u8> {
        &mut self.rt.body
    }

    fn outputs(&mut self) -> Option<&mut OutputCache> {
        self.rt.outputs.as_mut().filter(|_| self.keep_outputs)
    }

    fn hollow(&mut self, key: &str, field: Field) {
        write_field_cache_key(&mut self.rt.key_buf, true, key, field);
        let mut full = None;
        let rt = &mut *self.rt;
        rt.cache.reweigh(&rt.key_buf, |entry| {
            // The CMS's snapshot is not in Redis: it could not be fetched again.
            if entry.from_cms {
                return entry.value.weight();
            }
            if let Prepared::Snapshot(Some(Ok(s))) = &entry.value {
                if !s.hollow {
                    let hollow = Prepared::Snapshot(Some(Ok(Arc::new(s.hollowed()))));
                    full = Some(std::mem::replace(&mut entry.value, hollow));
                }
            }
            entry.value.weight()
        });
        // A document is two blocks, freed here; anything heavier on a fetch thread.
        if let Some(full) = full {
            rt.discard(vec![full]);
        }
    }

    fn protect(&mut self, key: &str, field: Field) {
        let rt = &mut *self.rt;
        write_field_cache_key(&mut rt.key_buf, true, key, field);
        rt.cache.share(&rt.key_buf);
        write_meta_cache_key(&mut rt.key_buf, true, key);
        rt.cache.share(&rt.key_buf);
    }
}

/// The worker cache seen through the resolver's eyes.
struct CacheInputs<'a> {
    rt: &'a mut Runtime,
    fresh: Freshness,
    refresh: &'a mut Vec<Fetch>,
}

impl CacheInputs<'_> {
    /// The entry under the key just written to `key_buf`, if it serves this lookup; when it
    /// serves past its TTL, `fetch()` is noted for a background refresh.
    fn lookup(
        &mut self,
        immutable_field: bool,
        fetch: impl FnOnce() -> Fetch,
    ) -> Option<&Prepared> {
        let meta = self.rt.key_buf.starts_with('M');
        let counters = crate::metrics::tally();
        let Some(entry) = self.rt.cache.get(&self.rt.key_buf) else {
            if let Some(c) = counters {
                c.lookup(Lookup::Miss);
            }
            return None;
        };
        let judged = entry.judge(&self.fresh, meta, immutable_field);
        if let Some(c) = counters {
            c.lookup(match judged {
                Judged::Fresh => Lookup::Hit,
                Judged::Updating => Lookup::Updating,
                Judged::No => Lookup::Expired,
            });
        }
        match judged {
            Judged::Fresh => Some(&entry.value),
            Judged::Updating => {
                self.refresh.push(fetch());
                Some(&entry.value)
            }
            Judged::No => None,
        }
    }
}

impl Inputs for CacheInputs<'_> {
    fn meta(&mut self, page: bool, name: &str) -> Slot<Option<Arc<DocMeta>>> {
        write_meta_cache_key(&mut self.rt.key_buf, page, name);
        match self.lookup(false, || Fetch::Meta(doc_ref(page, name))) {
            Some(Prepared::Meta(m)) => Slot::Have(m.clone()),
            _ => Slot::Missing,
        }
    }

    fn snapshot(&mut self, key: &str, field: Field) -> Slot<Loaded<PreparedSnapshot>> {
        write_field_cache_key(&mut self.rt.key_buf, true, key, field);
        match self.lookup(field.is_immutable(), || {
            Fetch::Field(doc_ref(true, key), field)
        }) {
            Some(Prepared::Snapshot(s)) => Slot::Have(s.clone()),
            _ => Slot::Missing,
        }
    }

    fn template(&mut self, name: &str, field: Field) -> Slot<Loaded<CompiledTemplate>> {
        write_field_cache_key(&mut self.rt.key_buf, false, name, field);
        match self.lookup(field.is_immutable(), || {
            Fetch::Field(doc_ref(false, name), field)
        }) {
            Some(Prepared::Template(t)) => Slot::Have(t.clone()),
            _ => Slot::Missing,
        }
    }

    fn data(&mut self, key: &str) -> Slot<Loaded<PreparedData>> {
        write_data_cache_key(&mut self.rt.key_buf, key);
        match self.lookup(false, || Fetch::Data(key.to_string())) {
            Some(Prepared::Data(d)) => Slot::Have(d.clone()),
            _ => Slot::Missing,
        }
    }
}

fn doc_ref(page: bool, name: &str) -> DocRef {
    if page {
        DocRef::Page(name.to_string())
    } else {
        DocRef::Template(name.to_string())
    }
}
