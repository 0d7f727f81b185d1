//! The per-worker runtime: the worker cache (L1), in-flight fetches, the fetch threads, and the
//! eventfd registered as an nginx connection that wakes the event loop when results arrive.

use std::cell::RefCell;
use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ngx::ffi::{
    ngx_close_connection, ngx_connection_t, ngx_cycle_t, ngx_event_t, ngx_get_connection,
    ngx_handle_read_event, ngx_http_request_t, ngx_int_t, NGX_ERROR, NGX_OK,
};
use ngx::http::HttpModuleMainConf;
use parking_lot::Mutex;

use dynpage_core::cache_entry::Entry;
use dynpage_core::chain::Via;
use dynpage_core::etag::EtagBuf;
use dynpage_core::events::{group_of, Invalidation};
use dynpage_core::failures::Failures;
use dynpage_core::layout::{DocRef, Layout};
use dynpage_core::lru::{Lru, Seeded};
use dynpage_core::memory_release::MemoryRelease;
use dynpage_core::metrics::SourceKind;
use dynpage_core::output_cache::OutputCache;
use dynpage_core::prepare::Prepared;
use dynpage_core::serve::Answer;
use dynpage_core::stale_store::{Identity, Stored};
use dynpage_core::store::{hint_bytes, Fetch, VersionHints};
use dynpage_core::version::{DocMeta, Field, Fnv};

use crate::clock::now_ms;
use crate::fetcher::{self, Delivery, Health, Job, JobResult, Mailbox, SourceConf};
use crate::module::Module;
use crate::subscriber::Subscriber;

/// A request waiting for a fetch.
type Waiter = *mut ngx_http_request_t;

/// What resumes a request whose fetch ended (the content handler's `resume`).
pub type Resume = fn(Waiter, Answer);

pub struct Runtime {
    pub cache: Lru<Entry>,
    /// What the fetch threads' version hints hold (`dynpage_cache_size` counts them; `cache`
    /// is bounded by the rest).
    hints_bytes: usize,
    /// Rendered outputs (`None`: `dynpage_output_cache_size 0`).
    pub outputs: Option<OutputCache>,
    /// Resumes the requests whose fetch ended.
    resume: Resume,
    /// Deliveries taken from the mailbox and not applied yet (see `wake_up`).
    backlog: std::collections::VecDeque<Delivery>,
    /// Cache key being fetched → requests waiting for it.
    inflight: HashMap<String, Vec<Waiter>>,
    jobs: Option<Sender<Job>>,
    mailbox: Arc<Mailbox>,
    threads: Vec<JoinHandle<()>>,
    conn: *mut ngx_connection_t,
    /// The eventfd `conn` watches (the fetch threads' wake-up).
    efd: RawFd,
    subscriber: Option<Subscriber>,
    /// Which sources the fetch threads are skipping after a failure.
    health: Arc<Health>,
    /// Told what the caches let go of; a fetch thread gives it back to the system.
    release: Arc<MemoryRelease>,
    /// How long the worker's exit waits for its threads at most: their round trips end
    /// within `dynpage_redis_timeout`.
    exit_wait: Duration,
    /// Renders and modules that failed, so that the fallback is served at once until the TTL
    /// passes (then the real version is tried again), each logged once.
    pub failures: Failures,
    /// Documents with warnings → a hash of the warnings last logged.
    warned: HashMap<String, u64>,
    /// Counts invalidations (events, resyncs); a fetch sent before one is `doubtful`.
    generation: u64,
    /// Moved on by an event for the `rollback`/`gray` hashes (every meta) and by a resync.
    metas_epoch: u64,
    /// Moved on by a resync (every mutable entry: metas, predeploy/abVersion fields, data).
    mutable_epoch: u64,
    /// The shared zone (the stale store), when nginx set it up.
    pub zone: Option<crate::zone::Zone>,
    /// Outputs this worker put in the stale store: identity → (ETag, when written).
    stale_written: HashMap<u64, (EtagBuf, u64), Seeded>,
    /// How many `stale_written` holds before it starts again: about the pages the output
    /// cache holds (a page's output weighs a few KB), within 256–10,000 (at most ~650 KB).
    stale_written_cap: usize,
    /// Reused buffers: cache-key probes and render output.
    pub key_buf: String,
    pub body: Vec<u8>,
    /// How long a suspended request may wait before it is answered 503.
    pub wait_limit_ms: u64,
}

thread_local! {
    static RUNTIME: RefCell<Option<Runtime>> = const { RefCell::new(None) };
}

/// Runs `f` with the runtime; `None` if there is none (no source configured, or init failed).
/// Never call nginx code that can re-enter the module inside `f`.
pub fn with<R>(f: impl FnOnce(&mut Runtime) -> R) -> Option<R> {
    RUNTIME.with(|cell| {
        let mut guard = cell.try_borrow_mut().ok()?;
        guard.as_mut().map(f)
    })
}

/// A connection of nginx's for `efd`, its read event calling [`on_wakeup`]; `None` (and `efd`
/// closed) when nginx cannot give or watch one.
fn watch_eventfd(efd: RawFd, cycle: &ngx_cycle_t) -> Option<*mut ngx_connection_t> {
    // SAFETY: efd is a fresh descriptor; nginx takes it for a connection from its pool, which
    // lives until `stop` closes it.
    let c = unsafe { ngx_get_connection(efd, cycle.log) };
    // SAFETY: a live connection (checked not null) has a read event of nginx's.
    let Some(rev) = (!c.is_null()).then(|| unsafe { (*c).read }) else {
        // SAFETY: efd is ours still: nginx did not take it.
        unsafe { libc::close(efd) };
        return None;
    };
    // SAFETY: `rev` is the connection's read event (not null for a connection from the pool),
    // set up before it is watched.
    let ev = unsafe { &mut *rev };
    ev.handler = Some(on_wakeup);
    ev.log = cycle.log;
    // SAFETY: a set-up read event of a live connection.
    if unsafe { ngx_handle_read_event(rev, 0) } != NGX_OK as ngx_int_t {
        // SAFETY: closes the connection taken above (and its fd) once.
        unsafe { ngx_close_connection(c) };
        return None;
    }
    Some(c)
}

/// `init_process`: opens the eventfd, registers it with the event loop, starts the threads.
/// `resume` is called (on the event loop) for each request whose fetch ended.
pub fn start(cycle_ref: &ngx_cycle_t, resume: Resume) -> ngx_int_t {
    let Some(mcf) = Module::main_conf(cycle_ref) else {
        return NGX_OK as ngx_int_t;
    };
    let zone = attach_zone(mcf.zone);
    if let Some(z) = zone.as_ref().filter(|_| mcf.counters()) {
        crate::metrics::attach(z);
    }
    if mcf.redis.is_empty() {
        return NGX_OK as ngx_int_t;
    }
    // SAFETY: plain syscall; the fd is owned by the connection below.
    let efd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if efd < 0 {
        alert!(cycle; "eventfd() failed, pages cannot be fetched");
        return NGX_ERROR as ngx_int_t;
    }
    let Some(conn) = watch_eventfd(efd, cycle_ref) else {
        return NGX_ERROR as ngx_int_t;
    };
    let timeout_ms = mcf.redis_timeout_ms() as u64;
    let mailbox = Arc::new(Mailbox::new(efd));
    let (tx, rx) = channel::<Job>();
    let stats = mcf
        .redis
        .iter()
        .map(|url| crate::metrics::source(zone.as_ref(), SourceKind::Redis, url))
        .chain(
            mcf.cms
                .iter()
                .map(|url| crate::metrics::source(zone.as_ref(), SourceKind::Cms, url)),
        )
        .collect();
    let health = Arc::new(Health::new(stats));
    let source = SourceConf {
        redis: mcf.redis.clone(),
        // Checked when the configuration was read.
        cms: mcf
            .cms
            .as_deref()
            .and_then(|u| dynpage_core::cms::CmsUrl::parse(u).ok()),
        cms_url: mcf.cms.clone().unwrap_or_default(),
        timeout: Duration::from_millis(timeout_ms),
        layout: Layout::new(mcf.prefix()),
        health: health.clone(),
        hints: Arc::new(VersionHints::within(hint_bytes(mcf.cache_size()))),
    };
    let hints_bytes = source.hints.bytes();
    let layout = source.layout.clone();
    let release = Arc::new(MemoryRelease::new(
        mcf.cache_size() + mcf.output_cache_size(),
    ));
    let jobs = Arc::new(Mutex::new(rx));
    let threads = match fetcher::spawn(
        mcf.fetch_threads(),
        source,
        jobs,
        mailbox.clone(),
        release.clone(),
    ) {
        Ok(t) => t,
        Err(e) => {
            alert!(cycle; "cannot start fetch threads: {e}");
            // SAFETY: the connection was opened above and is not used elsewhere yet.
            unsafe { ngx_close_connection(conn) };
            return NGX_ERROR as ngx_int_t;
        }
    };
    let subscriber = match Subscriber::spawn(
        mcf.redis.clone(),
        Duration::from_millis(timeout_ms),
        layout,
        mailbox.clone(),
        health.clone(),
    ) {
        Ok(s) => Some(s),
        Err(e) => {
            alert!(cycle; "cannot start the events thread: {e}; \
                     pages follow dynpage_cache_ttl only");
            None
        }
    };
    let runtime = Runtime {
        // The hints are counted in dynpage_cache_size.
        cache: Lru::counting_own_cost(mcf.cache_size().saturating_sub(hints_bytes)),
        hints_bytes,
        outputs: Some(mcf.output_cache_size())
            .filter(|&n| n > 0)
            .map(OutputCache::new),
        inflight: HashMap::new(),
        jobs: Some(tx),
        mailbox,
        threads,
        conn,
        efd,
        subscriber,
        warned: HashMap::new(),
        failures: Failures::default(),
        resume,
        backlog: std::collections::VecDeque::new(),
        health,
        release,
        exit_wait: Duration::from_millis(timeout_ms + 50),
        generation: 0,
        metas_epoch: 0,
        mutable_epoch: 0,
        zone,
        stale_written: HashMap::default(),
        stale_written_cap: (mcf.output_cache_size() / 4096).clamp(256, 10_000),
        key_buf: String::with_capacity(256),
        body: Vec::with_capacity(64 * 1024),
        // A miss may go through every source of the chain, each within the timeout (plus
        // timer slack); sources being skipped cost nothing.
        // The fetch threads end every round trip by its deadline, so this timer only fires if
        // a thread is late: leave it room on a loaded machine.
        wait_limit_ms: timeout_ms * mcf.chain_len() as u64 + 100,
    };
    RUNTIME.with(|cell| *cell.borrow_mut() = Some(runtime));
    NGX_OK as ngx_int_t
}

/// This worker's handle on the shared zone; `None` (logged) if nginx did not set it up.
fn attach_zone(
    zone: Option<std::ptr::NonNull<ngx::ffi::ngx_shm_zone_t>>,
) -> Option<crate::zone::Zone> {
    // SAFETY: the zone was added while the configuration was read, and nginx set it up before
    // starting workers.
    let attached = zone.and_then(|z| unsafe { crate::zone::Zone::attach(z) });
    if zone.is_some() && attached.is_none() {
        alert!(cycle; "the shared zone is not usable; pages are not kept for stale serving \
             across reloads");
    }
    attached
}

/// `exit_process`: stops the threads, then closes the eventfd. Never waits on a peer: the
/// threads are given until their current round trip's deadline, then left to end by themselves.
pub fn stop() {
    crate::metrics::detach();
    let Some(mut rt) = RUNTIME.with(|cell| cell.borrow_mut().take()) else {
        return;
    };
    // Nothing is posted from here on, and the threads drop what is still queued.
    rt.mailbox.close();
    drop(rt.jobs.take());
    let deadline = Instant::now() + rt.exit_wait;
    if let Some(s) = &rt.subscriber {
        s.signal();
    }
    fetcher::join_until(rt.threads.drain(..), deadline);
    if let Some(s) = rt.subscriber.take() {
        s.stop(deadline);
    }
    // SAFETY: the connection was opened in `start`; the mailbox is closed, so no thread writes
    // to the eventfd any more (even one still running).
    unsafe { ngx_close_connection(rt.conn) };
}

impl Runtime {
    /// Starts what `fetches` need (skipping keys already in flight) and makes `r` wait for the
    /// first one. Err if the fetch threads are gone.
    pub fn request(&mut self, fetches: Vec<Fetch>, r: Waiter) -> Result<(), ()> {
        let wait_on = fetches.first().map(Fetch::cache_key).ok_or(())?;
        self.start(fetches)?;
        if let Some(waiters) = self.inflight.get_mut(&wait_on) {
            waiters.push(r);
        }
        Ok(())
    }

    /// Fetches `fetches` in the background (inputs served past their TTL), those not already
    /// being fetched; nobody waits for them. Nothing is sent when the threads are gone.
    pub fn refresh(&mut self, fetches: Vec<Fetch>) {
        let _ = self.start(fetches);
    }

    /// Sends the fetches not already in flight to the threads, noting them in flight. Err (and
    /// nothing noted) if the threads are gone.
    fn start(&mut self, fetches: Vec<Fetch>) -> Result<(), ()> {
        let mut new = Vec::new();
        for f in fetches {
            if let std::collections::hash_map::Entry::Vacant(slot) =
                self.inflight.entry(f.cache_key())
            {
                slot.insert(Vec::new());
                new.push(f);
            }
        }
        if new.is_empty() {
            return Ok(());
        }
        // Metas the cache still holds (past their TTL): their versions are held too, so the
        // read script need not bring one with them.
        let warm = new
            .iter()
            .filter(|f| matches!(f, Fetch::Meta(_)))
            .map(Fetch::cache_key)
            .filter(|k| self.cache.contains(k))
            .collect();
        let job = Job {
            fetches: new,
            warm,
            garbage: Vec::new(),
            generation: self.generation,
        };
        let unsent = match &self.jobs {
            Some(tx) => match tx.send(job) {
                Ok(()) => return Ok(()),
                Err(std::sync::mpsc::SendError(job)) => job.fetches,
            },
            None => job.fetches,
        };
        for f in &unsent {
            self.inflight.remove(&f.cache_key());
        }
        Err(())
    }

    /// Whether every source is being skipped after a failure (requests then use stale inputs
    /// or get 503 at once instead of each waiting for the timeout).
    pub fn source_down(&self, now: u64) -> bool {
        self.health.all_down(now)
    }

    /// Stops `r` waiting (it timed out).
    pub fn forget(&mut self, r: Waiter) {
        for waiters in self.inflight.values_mut() {
            waiters.retain(|&w| w != r);
        }
    }

    /// Applies what the threads delivered, in order, and returns the requests to resume, each
    /// with how its fetch ended.
    fn absorb(&mut self, deliveries: Vec<Delivery>, now: u64) -> Vec<(Waiter, Answer)> {
        let mut woken = Vec::new();
        for d in deliveries {
            match d {
                Delivery::Fetched(res) => self.absorb_fetch(res, now, &mut woken),
                Delivery::Invalidate(what) => self.invalidate(&what),
                Delivery::Log(level, line) => log_at!(level, cycle; "{line}"),
            }
        }
        let garbage: Vec<Prepared> = self
            .cache
            .take_evicted()
            .into_iter()
            .map(|e| e.value)
            .collect();
        if !garbage.is_empty() {
            self.discard(garbage);
        }
        woken
    }

    /// Drops values the cache let go of: here those that free a few blocks (a page's
    /// document: waking a thread for it would cost more), the others on a fetch thread (see
    /// `Job::garbage`), or here when no thread is left.
    pub fn discard(&mut self, mut garbage: Vec<Prepared>) {
        garbage.retain(|p| !p.cheap_to_drop());
        if garbage.is_empty() {
            return;
        }
        if let Some(tx) = &self.jobs {
            let job = Job {
                fetches: Vec::new(),
                warm: Vec::new(),
                garbage,
                generation: self.generation,
            };
            // A worker without threads (exiting) drops them itself, with the failed send.
            let _ = tx.send(job);
        }
    }

    /// Keeps the output just rendered as the last good one of `id` in the shared zone, when it
    /// changed or was last confirmed more than `refresh_ms` ago (a page that does not change
    /// still counts as good now). Costs one map lookup otherwise. A try that failed (the output
    /// does not fit) is not repeated before `refresh_ms` either.
    pub fn keep_for_stale(&mut self, id: Identity, stored: &Stored<'_>, now: u64, refresh_ms: u64) {
        let Some(zone) = &self.zone else {
            return;
        };
        let seen = self.stale_written.get(&id.hash);
        if seen
            .is_some_and(|(etag, at)| *etag == stored.etag && now < at.saturating_add(refresh_ms))
        {
            return;
        }
        if !zone.touch(id, &stored.etag, now) {
            zone.remember(id, stored, now);
        }
        if self.stale_written.len() >= self.stale_written_cap {
            // Bounded memory (the table's room goes too); after it, `touch` finds what is kept.
            self.stale_written = HashMap::default();
        }
        self.stale_written.insert(id.hash, (stored.etag, now));
    }

    /// `(metas_epoch, mutable_epoch)`, for `Entry::invalidated`.
    pub fn epochs(&self) -> (u64, u64) {
        (self.metas_epoch, self.mutable_epoch)
    }

    /// What an event (or a lost subscription) invalidates: the entries of one document or data
    /// key through the cache's group index, or every meta / mutable entry by moving an epoch
    /// on. Either way O(what it touches), whatever the cache holds.
    fn invalidate(&mut self, what: &Invalidation) {
        self.generation += 1;
        match what {
            Invalidation::AllMetas => self.metas_epoch += 1,
            Invalidation::AllMutable => {
                self.metas_epoch += 1;
                self.mutable_epoch += 1;
            }
            Invalidation::Doc(_) | Invalidation::Data(_) => {
                let touched = what.group().map_or(0, |group| {
                    self.cache.update_group(&group, |e| e.invalidated = true)
                });
                if touched == 0 {
                    if let Some(c) = crate::metrics::counters() {
                        c.events_unknown.fetch_add(1, Relaxed);
                    }
                }
            }
        }
    }

    /// Bytes the kept outputs hold (0 without them).
    pub fn kept_bytes(&self) -> usize {
        self.outputs.as_ref().map_or(0, OutputCache::used)
    }

    /// Tells the fetch threads what the caches have let go of in all (see `MemoryRelease`): one
    /// store.
    pub fn note_let_go(&self) {
        let outputs = self.outputs.as_ref().map_or(0, OutputCache::let_go);
        self.release
            .note_let_go(self.cache.stats().let_go + outputs);
    }

    /// Publishes this worker's cache sizes for `dynpage_status`, and what the caches let go of
    /// for the fetch threads.
    pub fn publish_gauges(&self) {
        self.note_let_go();
        let Some(g) = crate::metrics::gauges() else {
            return;
        };
        let cache = self.cache.stats();
        g.cache_entries.store(cache.entries as u64, Relaxed);
        g.cache_bytes
            .store((cache.used + self.hints_bytes) as u64, Relaxed);
        g.cache_bound
            .store((cache.capacity + self.hints_bytes) as u64, Relaxed);
        g.cache_evictions.store(cache.evictions, Relaxed);
        if let Some(o) = &self.outputs {
            g.output_entries.store(o.len() as u64, Relaxed);
            g.output_bytes.store(o.used() as u64, Relaxed);
            g.output_bound.store(o.capacity() as u64, Relaxed);
            g.output_evictions.store(o.evictions(), Relaxed);
            g.output_too_large.store(o.too_large(), Relaxed);
        }
    }

    /// Logs a document's warnings (bad pin, bad gray share...) when they change, not on every
    /// reload of its meta.
    fn warn_once(&mut self, key: &str, f: &Fetch, meta: Option<&DocMeta>) {
        let warnings = meta.map(|m| m.warnings.as_slice()).unwrap_or_default();
        if warnings.is_empty() {
            self.warned.remove(key);
            return;
        }
        if self.warned.len() >= 10_000 {
            self.warned.clear(); // bounded memory; worst case a warning is logged again
        }
        let mut h = Fnv::default();
        for w in warnings {
            h.write(w.as_bytes()).write(&[0]);
        }
        if self.warned.insert(key.to_string(), h.finish()) != Some(h.finish()) {
            for w in warnings {
                warn!(cycle; "{f}: {w}");
            }
        }
    }

    fn absorb_fetch(&mut self, res: JobResult, now: u64, woken: &mut Vec<(Waiter, Answer)>) {
        let doubtful = res.generation != self.generation;
        for (f, value, via) in res.answered {
            debug!(cycle; "fetched {:?} from {}", f.cache_key(), match &via {
                Via::Redis(i) => format!("redis source {i}"),
                Via::Cms => "the CMS".to_string(),
            });
            let key = f.cache_key();
            if let Prepared::Meta(meta) = &value {
                self.warn_once(&key, &f, meta.as_deref());
            }
            // A version read with a meta nobody waits on (see store::fetch_batch_scripted)
            // never replaces the one held (which may be hollow: its output is kept).
            let unasked = !self.inflight.contains_key(&key);
            if unasked
                && matches!(f, Fetch::Field(_, Field::Version(_)))
                && self.cache.contains(&key)
            {
                continue;
            }
            let weight = value.weight();
            // A template is shared by the pages that render with it: a long tail of pages does
            // not evict it.
            let shared = matches!(
                &f,
                Fetch::Meta(DocRef::Template(_)) | Fetch::Field(DocRef::Template(_), _)
            );
            self.cache.insert_as(
                &key,
                group_of(&key),
                Entry {
                    value,
                    loaded_ms: now,
                    from_cms: matches!(via, Via::Cms),
                    doubtful,
                    invalidated: false,
                    metas_epoch: self.metas_epoch,
                    mutable_epoch: self.mutable_epoch,
                },
                weight,
                shared,
            );
            if let Some(ws) = self.inflight.remove(&key) {
                let answer = match via {
                    Via::Redis(_) => Answer::Redis,
                    Via::Cms => Answer::Cms,
                };
                woken.extend(ws.into_iter().map(|w| (w, answer)));
            }
        }
        // The sources' failures were logged by the fetch thread, once per outage.
        for f in &res.unanswered {
            debug!(cycle; "fetching {:?}: no source answered", f.cache_key());
            if let Some(ws) = self.inflight.remove(&f.cache_key()) {
                woken.extend(ws.into_iter().map(|w| (w, Answer::Failed)));
            }
        }
    }
}

/// The eventfd's read handler: drains it, absorbs results, resumes waiting requests.
unsafe extern "C" fn on_wakeup(_ev: *mut ngx_event_t) {
    crate::ffi_guard::catch("the eventfd handler", (), wake_up);
}

/// At most this many events are applied per wake-up: a burst of them is applied in slices,
/// with the event loop serving requests between them.
const DELIVERIES_PER_WAKEUP: usize = 256;

/// Drains the mailbox and resumes the requests whose fetch ended (each guarded on its own).
/// Applies every fetch result and at most `DELIVERIES_PER_WAKEUP` events; for the rest it wakes
/// itself up again (one write to the eventfd), so nginx runs what is ready meanwhile.
fn wake_up() {
    let Some((resume, woken)) = with(|rt| {
        let mut counter: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from our non-blocking eventfd.
        unsafe { while libc::read(rt.efd, (&mut counter as *mut u64).cast(), 8) == 8 {} }
        // Fetch results (as many as there are fetches in flight) and log lines go at once: a
        // request waiting for its fetch never waits behind a burst of events. Applying a
        // result before events that came earlier is safe: those events, applied next, expire
        // the entry it made (through its group or an epoch).
        let mut slice = Vec::new();
        for d in rt.mailbox.take() {
            match d {
                Delivery::Invalidate(_) => rt.backlog.push_back(d),
                other => slice.push(other),
            }
        }
        let n = rt.backlog.len().min(DELIVERIES_PER_WAKEUP);
        slice.extend(rt.backlog.drain(..n));
        if !rt.backlog.is_empty() {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a live u64 to our non-blocking eventfd.
            unsafe { libc::write(rt.efd, (&one as *const u64).cast(), 8) };
        }
        let woken = rt.absorb(slice, now_ms());
        rt.publish_gauges();
        (rt.resume, woken)
    }) else {
        return;
    };
    for (r, answer) in woken {
        resume(r, answer);
    }
}
