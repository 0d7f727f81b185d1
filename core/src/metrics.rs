//! The counters every worker updates and `dynpage_status` reports: one `Counters` block, plain
//! atomics, laid out so that all-zero bytes are its valid starting value (the nginx edge puts
//! it in shared memory, zeroed). Updates are relaxed atomic adds, like nginx's `stub_status`;
//! nothing here locks. A page key is never a label: every dimension below is a short fixed list.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};

use crate::serve::{Source, Transition};
use crate::version::Variant;

/// Marks a block set up by this layout (a reload keeps the block of the previous cycle).
pub const LAYOUT: u64 = 0x6479_6e73_7461_7404; // "dynstat" v4

/// Sources (Redis of every chain, then CMSes) that get their own counters; more share the last.
pub const MAX_SOURCES: usize = 16;
/// Workers whose cache gauges are kept (a reload's new workers reuse the slots of gone ones).
pub const MAX_WORKERS: usize = 64;
/// Bytes of a source's name (its URL, password redacted) that are kept.
pub const NAME_LEN: usize = 96;

/// The `source` of a request: none (404, 503...), then [`Source::ALL`].
pub const REQUEST_SOURCES: [&str; 6] = ["none", "l1", "redis", "cms", "stale", "fallback"];
/// Variants, in [`Variant`]'s order.
pub const VARIANTS: [&str; 3] = ["production", "predeploy", "gray"];
/// Status classes `1xx`..`5xx`.
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
/// Results of a worker-cache lookup.
pub const LOOKUP_RESULTS: [&str; 4] = ["hit", "miss", "expired", "updating"];
/// Results of a kept-output lookup.
pub const OUTPUT_RESULTS: [&str; 2] = ["hit", "miss"];
/// The request path's transitions that are counted, as labels.
pub const TRANSITIONS: [&str; 13] = [
    "fetch",
    "go_stale",
    "unavailable",
    "not_found",
    "fall_back",
    "next_stage",
    "give_up",
    "not_modified",
    "kept",
    "rendered",
    "render_failed",
    "guard_failed",
    "compressed",
];
/// Upper bounds (seconds) of the latency and render-time histograms' buckets (then `+Inf`).
pub const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// A latency histogram: cumulative counts are computed when read.
#[repr(C)]
#[derive(Default)]
pub struct Histogram {
    /// Per bucket (not cumulative), the last one `+Inf`.
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe_us(&self, us: u64) {
        let secs = us as f64 / 1e6;
        let i = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }

    fn read(&self) -> HistogramValues {
        let mut out = HistogramValues::default();
        let mut total = 0;
        for (i, c) in self.counts.iter().enumerate() {
            total += c.load(Relaxed);
            out.cumulative[i] = total;
        }
        out.sum_us = self.sum_us.load(Relaxed);
        out
    }
}

/// One source's counters. `state` says whether the slot is named yet.
#[repr(C)]
pub struct SourceCounters {
    /// 0: free; 1: being named; 2: named.
    state: AtomicU64,
    /// 0: redis, 1: cms.
    kind: AtomicU64,
    name_len: AtomicU64,
    name: [AtomicU8; NAME_LEN],
    pub fetches: AtomicU64,
    /// Pipelines sent: one per fetch where the read script serves, more where it does not.
    pub round_trips: AtomicU64,
    pub errors: AtomicU64,
    /// Times it was skipped after a failure.
    pub skips: AtomicU64,
    /// Skipped until then (wall clock, ms); 0: never.
    pub down_until_ms: AtomicU64,
    pub latency: Histogram,
}

impl SourceCounters {
    pub fn fetched(&self, us: u64, ok: bool, round_trips: u64) {
        self.fetches.fetch_add(1, Relaxed);
        self.round_trips.fetch_add(round_trips, Relaxed);
        if !ok {
            self.errors.fetch_add(1, Relaxed);
        }
        self.latency.observe_us(us);
    }

    /// The source is skipped until `until_ms`.
    pub fn skipped(&self, until_ms: u64) {
        self.skips.fetch_add(1, Relaxed);
        self.down_until_ms.store(until_ms, Relaxed);
    }

    fn name(&self) -> String {
        let len = (self.name_len.load(Relaxed) as usize).min(NAME_LEN);
        let bytes: Vec<u8> = self.name[..len].iter().map(|b| b.load(Relaxed)).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn has_name(&self, kind: SourceKind, name: &[u8]) -> bool {
        let name = &name[..name.len().min(NAME_LEN)];
        self.state.load(std::sync::atomic::Ordering::Acquire) == 2
            && self.kind.load(Relaxed) == kind as u64
            && self.name_len.load(Relaxed) as usize == name.len()
            && self
                .name
                .iter()
                .zip(name)
                .all(|(a, b)| a.load(Relaxed) == *b)
    }
}

/// What a source is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    Redis = 0,
    Cms = 1,
}

/// The per-request counts. Each worker counts into a tally of its own (its cache lines are not
/// shared with other workers); a worker's tally is folded into `Counters::retired` when it
/// exits, or when a new worker takes the slot of one that died.
#[repr(C)]
#[derive(Default)]
pub struct Tally {
    requests: [[[AtomicU64; STATUS_CLASSES.len()]; REQUEST_SOURCES.len()]; VARIANTS.len()],
    lookups: [AtomicU64; LOOKUP_RESULTS.len()],
    output_lookups: [AtomicU64; OUTPUT_RESULTS.len()],
    transitions: [AtomicU64; TRANSITIONS.len()],
}

impl Tally {
    /// One request answered: what it was served (`None`: no page) and its status.
    pub fn request(&self, served: Option<(Variant, Source)>, status: u64) {
        let (v, s) = match served {
            Some((v, s)) => (variant_index(v), s as usize),
            None => (0, 0),
        };
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.requests[v][s.min(REQUEST_SOURCES.len() - 1)][class].fetch_add(1, Relaxed);
    }

    pub fn lookup(&self, result: Lookup) {
        self.lookups[result as usize].fetch_add(1, Relaxed);
    }

    pub fn output_lookup(&self, hit: bool) {
        self.output_lookups[usize::from(!hit)].fetch_add(1, Relaxed);
    }

    pub fn transition(&self, t: Transition) {
        self.transitions[transition_index(t)].fetch_add(1, Relaxed);
    }

    fn each(&self) -> impl Iterator<Item = &AtomicU64> {
        self.requests
            .iter()
            .flatten()
            .flatten()
            .chain(&self.lookups)
            .chain(&self.output_lookups)
            .chain(&self.transitions)
    }

    /// Adds this tally to `into` and zeroes it.
    fn fold_into(&self, into: &Tally) {
        for (from, to) in self.each().zip(into.each()) {
            let n = from.swap(0, Relaxed);
            if n > 0 {
                to.fetch_add(n, Relaxed);
            }
        }
    }

    /// Adds this tally to `v`.
    fn add_to(&self, v: &mut Values) {
        for (vi, by_source) in self.requests.iter().enumerate() {
            for (si, by_class) in by_source.iter().enumerate() {
                for (ci, c) in by_class.iter().enumerate() {
                    v.requests[vi][si][ci] += c.load(Relaxed);
                }
            }
        }
        for (to, from) in v.lookups.iter_mut().zip(&self.lookups) {
            *to += from.load(Relaxed);
        }
        for (to, from) in v.output_lookups.iter_mut().zip(&self.output_lookups) {
            *to += from.load(Relaxed);
        }
        for (to, from) in v.transitions.iter_mut().zip(&self.transitions) {
            *to += from.load(Relaxed);
        }
    }
}

/// One worker's slot: its gauges (the sizes of its caches, summed over the workers that are
/// running) and its tally (summed over every slot: a dead worker's counts still count).
#[repr(C)]
#[derive(Default)]
pub struct WorkerGauges {
    /// The worker's pid; 0: free.
    pub pid: AtomicU64,
    pub cache_entries: AtomicU64,
    pub cache_bytes: AtomicU64,
    pub cache_bound: AtomicU64,
    pub cache_evictions: AtomicU64,
    pub output_entries: AtomicU64,
    pub output_bytes: AtomicU64,
    pub output_bound: AtomicU64,
    pub output_evictions: AtomicU64,
    pub output_too_large: AtomicU64,
    /// Requests waiting for a fetch now.
    pub suspended: AtomicU64,
    pub tally: Tally,
}

/// Everything counted, for all workers.
#[repr(C)]
pub struct Counters {
    /// [`LAYOUT`] once set up.
    pub layout: AtomicU64,
    /// When the counters started (ms since the epoch): nginx's start, not a reload.
    pub started_ms: AtomicU64,
    /// The tallies of workers gone (and of workers without a slot of their own).
    pub retired: Tally,
    /// Modules left out of a page that rendered.
    pub modules_left_out: AtomicU64,
    /// Dimensions (dimension mode) whose key does not exist, and those present but unusable
    /// (both render as null).
    pub dimensions_missing: AtomicU64,
    pub dimensions_broken: AtomicU64,
    pub render: Histogram,
    /// `P events` messages received, those naming nothing cached, resyncs, reconnects.
    pub events: AtomicU64,
    pub events_unknown: AtomicU64,
    pub resyncs: AtomicU64,
    pub reconnects: AtomicU64,
    /// Stale outputs served from the shared zone (every source down, nothing in the worker).
    pub stale_outputs: AtomicU64,
    sources: [SourceCounters; MAX_SOURCES],
    workers: [WorkerGauges; MAX_WORKERS],
}

impl Default for SourceCounters {
    fn default() -> SourceCounters {
        SourceCounters {
            state: AtomicU64::new(0),
            kind: AtomicU64::new(0),
            name_len: AtomicU64::new(0),
            name: std::array::from_fn(|_| AtomicU8::new(0)),
            fetches: AtomicU64::new(0),
            round_trips: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            skips: AtomicU64::new(0),
            down_until_ms: AtomicU64::new(0),
            latency: Histogram::default(),
        }
    }
}

/// The all-zero block (what shared memory starts as), for tests and a worker without a zone.
impl Default for Counters {
    fn default() -> Counters {
        Counters {
            layout: AtomicU64::new(0),
            started_ms: AtomicU64::new(0),
            retired: Tally::default(),
            modules_left_out: AtomicU64::new(0),
            dimensions_missing: AtomicU64::new(0),
            dimensions_broken: AtomicU64::new(0),
            render: Histogram::default(),
            events: AtomicU64::new(0),
            events_unknown: AtomicU64::new(0),
            resyncs: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            stale_outputs: AtomicU64::new(0),
            sources: std::array::from_fn(|_| SourceCounters::default()),
            workers: std::array::from_fn(|_| WorkerGauges::default()),
        }
    }
}

fn variant_index(v: Variant) -> usize {
    match v {
        Variant::Production => 0,
        Variant::Predeploy => 1,
        Variant::Gray => 2,
    }
}

fn transition_index(t: Transition) -> usize {
    match t {
        Transition::Fetch => 0,
        Transition::GoStale => 1,
        Transition::Unavailable => 2,
        Transition::NotFound => 3,
        Transition::FallBack => 4,
        Transition::NextStage => 5,
        Transition::GiveUp => 6,
        Transition::NotModified => 7,
        Transition::Kept => 8,
        Transition::Rendered { .. } => 9,
        Transition::RenderFailed => 10,
        Transition::GuardFailed => 11,
        Transition::Compressed(_) => 12,
    }
}

/// The result of one worker-cache lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    Hit = 0,
    Miss = 1,
    /// Held, but past its TTL (or invalidated) for this lookup.
    Expired = 2,
    /// Past its TTL, served while a background fetch refreshes it.
    Updating = 3,
}

impl Counters {
    /// Sets up a zeroed block (a kept one is left as it is).
    pub fn init(&self, now_ms: u64) {
        if self.layout.load(Relaxed) != LAYOUT {
            self.started_ms.store(now_ms, Relaxed);
            self.layout.store(LAYOUT, Relaxed);
        }
    }

    /// The counters of the source `name` (its URL, redacted), naming a free slot for it the
    /// first time; the last slot when all are taken. Meant for one process at a time (nginx's
    /// master, while it reads the configuration); a race only ever costs a second slot.
    pub fn source(&self, kind: SourceKind, name: &str) -> &SourceCounters {
        let bytes = name.as_bytes();
        if let Some(s) = self.sources.iter().find(|s| s.has_name(kind, bytes)) {
            return s;
        }
        for s in &self.sources {
            if s.state
                .compare_exchange(0, 1, std::sync::atomic::Ordering::Acquire, Relaxed)
                .is_ok()
            {
                let bytes = &bytes[..bytes.len().min(NAME_LEN)];
                for (slot, b) in s.name.iter().zip(bytes) {
                    slot.store(*b, Relaxed);
                }
                s.name_len.store(bytes.len() as u64, Relaxed);
                s.kind.store(kind as u64, Relaxed);
                s.state.store(2, std::sync::atomic::Ordering::Release);
                return s;
            }
        }
        &self.sources[MAX_SOURCES - 1]
    }

    /// A slot for the worker `pid`'s gauges: a free one, or one whose worker is gone
    /// (`running` says which pids still run). `None` when all are in use.
    pub fn worker(&self, pid: u64, running: impl Fn(u64) -> bool) -> Option<&WorkerGauges> {
        for w in &self.workers {
            let was = w.pid.load(Relaxed);
            if (was == 0 || (was != pid && !running(was)))
                && w.pid.compare_exchange(was, pid, Relaxed, Relaxed).is_ok()
            {
                // A worker that died left its counts here: they stay counted.
                w.tally.fold_into(&self.retired);
                w.clear();
                return Some(w);
            }
        }
        None
    }

    /// What the counters say now. `running`: whether a worker's pid still runs (the gauges of
    /// gone workers are left out).
    pub fn read(&self, running: impl Fn(u64) -> bool) -> Values {
        let mut v = Values {
            started_ms: self.started_ms.load(Relaxed),
            ..Values::default()
        };
        self.retired.add_to(&mut v);
        for w in &self.workers {
            w.tally.add_to(&mut v);
        }
        v.modules_left_out = self.modules_left_out.load(Relaxed);
        v.dimensions_missing = self.dimensions_missing.load(Relaxed);
        v.dimensions_broken = self.dimensions_broken.load(Relaxed);
        v.render = self.render.read();
        v.events = self.events.load(Relaxed);
        v.events_unknown = self.events_unknown.load(Relaxed);
        v.resyncs = self.resyncs.load(Relaxed);
        v.reconnects = self.reconnects.load(Relaxed);
        v.stale_outputs = self.stale_outputs.load(Relaxed);
        for s in &self.sources {
            if s.state.load(std::sync::atomic::Ordering::Acquire) != 2 {
                continue;
            }
            v.sources.push(SourceValues {
                kind: if s.kind.load(Relaxed) == SourceKind::Cms as u64 {
                    SourceKind::Cms
                } else {
                    SourceKind::Redis
                },
                name: s.name(),
                fetches: s.fetches.load(Relaxed),
                round_trips: s.round_trips.load(Relaxed),
                errors: s.errors.load(Relaxed),
                skips: s.skips.load(Relaxed),
                down_until_ms: s.down_until_ms.load(Relaxed),
                latency: s.latency.read(),
            });
        }
        for w in &self.workers {
            let pid = w.pid.load(Relaxed);
            if pid == 0 || !running(pid) {
                continue;
            }
            v.workers += 1;
            let g = &mut v.gauges;
            g.cache_entries += w.cache_entries.load(Relaxed);
            g.cache_bytes += w.cache_bytes.load(Relaxed);
            g.cache_bound += w.cache_bound.load(Relaxed);
            g.cache_evictions += w.cache_evictions.load(Relaxed);
            g.output_entries += w.output_entries.load(Relaxed);
            g.output_bytes += w.output_bytes.load(Relaxed);
            g.output_bound += w.output_bound.load(Relaxed);
            g.output_evictions += w.output_evictions.load(Relaxed);
            g.output_too_large += w.output_too_large.load(Relaxed);
            g.suspended += w.suspended.load(Relaxed);
        }
        v
    }
}

impl WorkerGauges {
    fn clear(&self) {
        for g in [
            &self.cache_entries,
            &self.cache_bytes,
            &self.cache_bound,
            &self.cache_evictions,
            &self.output_entries,
            &self.output_bytes,
            &self.output_bound,
            &self.output_evictions,
            &self.output_too_large,
            &self.suspended,
        ] {
            g.store(0, Relaxed);
        }
    }

    /// The worker `counters` gave this slot exits: its counts go to the retired tally, and
    /// the slot is free.
    pub fn release(&self, counters: &Counters) {
        self.tally.fold_into(&counters.retired);
        self.clear();
        self.pid.store(0, Relaxed);
    }
}

/// A histogram as read: cumulative counts per bucket (the last is `+Inf`, the count).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HistogramValues {
    pub cumulative: [u64; BUCKETS.len() + 1],
    pub sum_us: u64,
}

impl HistogramValues {
    pub fn count(&self) -> u64 {
        self.cumulative[BUCKETS.len()]
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct SourceValues {
    pub kind: SourceKind,
    pub name: String,
    pub fetches: u64,
    pub round_trips: u64,
    pub errors: u64,
    pub skips: u64,
    pub down_until_ms: u64,
    pub latency: HistogramValues,
}

/// The workers' gauges, summed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Gauges {
    pub cache_entries: u64,
    pub cache_bytes: u64,
    pub cache_bound: u64,
    pub cache_evictions: u64,
    pub output_entries: u64,
    pub output_bytes: u64,
    pub output_bound: u64,
    pub output_evictions: u64,
    pub output_too_large: u64,
    pub suspended: u64,
}

/// The counters as read at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Values {
    pub started_ms: u64,
    /// By variant, source and status class (indexes into [`VARIANTS`], [`REQUEST_SOURCES`],
    /// [`STATUS_CLASSES`]).
    pub requests: [[[u64; STATUS_CLASSES.len()]; REQUEST_SOURCES.len()]; VARIANTS.len()],
    pub lookups: [u64; LOOKUP_RESULTS.len()],
    pub output_lookups: [u64; OUTPUT_RESULTS.len()],
    pub transitions: [u64; TRANSITIONS.len()],
    pub modules_left_out: u64,
    pub dimensions_missing: u64,
    pub dimensions_broken: u64,
    pub render: HistogramValues,
    pub events: u64,
    pub events_unknown: u64,
    pub resyncs: u64,
    pub reconnects: u64,
    pub stale_outputs: u64,
    pub sources: Vec<SourceValues>,
    /// Workers running with gauges.
    pub workers: u64,
    pub gauges: Gauges,
}

impl Values {
    /// (variant, source, status class, count) for every non-zero count.
    pub fn requests_by(&self) -> impl Iterator<Item = (usize, usize, usize, u64)> + '_ {
        self.requests
            .iter()
            .enumerate()
            .flat_map(|(vi, by_source)| {
                by_source
                    .iter()
                    .enumerate()
                    .flat_map(move |(si, by_class)| {
                        by_class
                            .iter()
                            .enumerate()
                            .filter(|(_, n)| **n > 0)
                            .map(move |(ci, n)| (vi, si, ci, *n))
                    })
            })
    }

    /// Requests in all.
    pub fn requests_total(&self) -> u64 {
        self.requests_by().map(|r| r.3).sum()
    }

    /// Requests served a page from `source` (an index into [`REQUEST_SOURCES`]).
    pub fn requests_from(&self, source: usize) -> u64 {
        self.requests_by()
            .filter(|r| r.1 == source)
            .map(|r| r.3)
            .sum()
    }

    /// Requests answered from the worker cache among those served a page (0 when none).
    pub fn hit_ratio(&self) -> f64 {
        let pages: u64 = (1..REQUEST_SOURCES.len())
            .map(|s| self.requests_from(s))
            .sum();
        if pages == 0 {
            return 0.0;
        }
        self.requests_from(1) as f64 / pages as f64
    }

    pub fn transition(&self, name: &str) -> u64 {
        TRANSITIONS
            .iter()
            .position(|t| *t == name)
            .map_or(0, |i| self.transitions[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block() -> Box<Counters> {
        let c = Box::<Counters>::default();
        c.init(1000);
        c
    }

    #[test]
    fn requests_are_counted_by_variant_source_and_class() {
        let c = block();
        c.retired
            .request(Some((Variant::Production, Source::L1)), 200);
        c.retired
            .request(Some((Variant::Production, Source::L1)), 304);
        c.retired.request(Some((Variant::Gray, Source::Redis)), 200);
        c.retired.request(None, 404);
        c.retired.request(None, 503);
        c.retired.request(None, 999);
        let v = c.read(|_| true);
        assert_eq!(v.requests_total(), 6);
        assert_eq!(
            v.requests_by().collect::<Vec<_>>(),
            vec![
                (0, 0, 3, 1),
                (0, 0, 4, 2),
                (0, 1, 1, 1),
                (0, 1, 2, 1),
                (2, 2, 1, 1)
            ]
        );
        assert_eq!(v.hit_ratio(), 2.0 / 3.0);
        assert_eq!(v.started_ms, 1000);
    }

    #[test]
    fn a_kept_block_keeps_its_start() {
        let c = block();
        c.retired.request(None, 404);
        c.init(5000);
        let v = c.read(|_| true);
        assert_eq!(v.started_ms, 1000);
        assert_eq!(v.requests_total(), 1);
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe_us(50); // 0.00005 s: first bucket
        h.observe_us(100); // exactly the first bound
        h.observe_us(3_000); // 0.003 s: the 0.005 bucket
        h.observe_us(5_000_000); // over every bound
        let v = h.read();
        assert_eq!(v.cumulative[0], 2);
        assert_eq!(v.cumulative[4], 2);
        assert_eq!(v.cumulative[5], 3);
        assert_eq!(v.cumulative[BUCKETS.len() - 1], 3);
        assert_eq!(v.count(), 4);
        assert_eq!(v.sum_us, 5_003_150);
    }

    #[test]
    fn sources_are_named_once_and_found_again() {
        let c = block();
        let a = c.source(SourceKind::Redis, "redis://a:6379");
        a.fetched(120, true, 1);
        let b = c.source(SourceKind::Cms, "http://cms/");
        b.fetched(80, false, 2);
        assert!(std::ptr::eq(
            a,
            c.source(SourceKind::Redis, "redis://a:6379")
        ));
        // The same URL as another kind is another source.
        assert!(!std::ptr::eq(
            a,
            c.source(SourceKind::Cms, "redis://a:6379")
        ));
        let v = c.read(|_| true);
        assert_eq!(v.sources.len(), 3);
        assert_eq!(v.sources[0].name, "redis://a:6379");
        assert_eq!((v.sources[0].fetches, v.sources[0].errors), (1, 0));
        assert_eq!(
            (v.sources[1].kind, v.sources[1].errors),
            (SourceKind::Cms, 1)
        );
    }

    #[test]
    fn sources_past_the_table_share_the_last_slot() {
        let c = block();
        for i in 0..MAX_SOURCES + 3 {
            c.source(SourceKind::Redis, &format!("redis://h{i}:1"));
        }
        assert_eq!(c.read(|_| true).sources.len(), MAX_SOURCES);
        let long = "x".repeat(NAME_LEN * 2);
        let c = block();
        let s = c.source(SourceKind::Redis, &long);
        assert!(std::ptr::eq(s, c.source(SourceKind::Redis, &long)));
        assert_eq!(c.read(|_| true).sources[0].name.len(), NAME_LEN);
    }

    #[test]
    fn gauges_sum_the_running_workers_and_slots_are_reused() {
        let c = block();
        let w1 = c.worker(101, |_| true).expect("a slot");
        let w2 = c.worker(102, |_| true).expect("a slot");
        w1.cache_entries.store(3, Relaxed);
        w2.cache_entries.store(4, Relaxed);
        assert_eq!(c.read(|_| true).gauges.cache_entries, 7);
        assert_eq!(c.read(|_| true).workers, 2);
        // 101 is gone: its gauges no longer count, and its slot is taken again.
        let running = |pid| pid != 101;
        assert_eq!(c.read(running).gauges.cache_entries, 4);
        let w3 = c.worker(103, running).expect("a slot");
        assert!(std::ptr::eq(w1, w3));
        assert_eq!(w3.cache_entries.load(Relaxed), 0);
        w2.release(&c);
        assert_eq!(c.read(|_| true).workers, 1);
    }

    #[test]
    fn a_workers_counts_outlive_it_whether_it_exits_or_dies() {
        let c = block();
        let w1 = c.worker(101, |_| true).expect("a slot");
        let w2 = c.worker(102, |_| true).expect("a slot");
        w1.tally.request(None, 404);
        w2.tally.request(None, 404);
        w2.tally.request(None, 404);
        assert_eq!(c.read(|_| true).requests_total(), 3);
        // 102 exits: its counts move to the retired tally.
        w2.release(&c);
        assert_eq!(c.read(|_| true).requests_total(), 3);
        // 101 dies: its counts stay in its slot, and move when a new worker takes it.
        let gone = |pid| pid != 101;
        assert_eq!(c.read(gone).requests_total(), 3);
        let w3 = c.worker(103, gone).expect("a slot");
        assert!(std::ptr::eq(w1, w3));
        w3.tally.request(None, 200);
        assert_eq!(c.read(gone).requests_total(), 4);
    }

    #[test]
    fn transitions_are_counted_by_name() {
        let c = block();
        c.retired.transition(Transition::Kept);
        c.retired.transition(Transition::Rendered {
            passes: 2,
            known_failed: 0,
        });
        c.retired.transition(Transition::GuardFailed);
        let v = c.read(|_| true);
        assert_eq!(v.transition("kept"), 1);
        assert_eq!(v.transition("rendered"), 1);
        assert_eq!(v.transition("guard_failed"), 1);
        assert_eq!(v.transition("nonsense"), 0);
    }
}
