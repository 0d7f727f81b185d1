//! Fetch threads: each worker runs a few, which do the blocking Redis round trips and prepare
//! (parse, compile) what they read, then hand results back to the event loop through an eventfd.

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use ngx::ffi::{NGX_LOG_ALERT, NGX_LOG_DEBUG, NGX_LOG_ERR};

use dynpage_core::chain::{fetch_chain, Source, SourceReply, Via};
use dynpage_core::cms::{fetch_page, CmsUrl};
use dynpage_core::events::Invalidation;
use dynpage_core::layout::Layout;
use dynpage_core::limits::COMPILE_STACK_BYTES;
use dynpage_core::memory_release::{MemoryRelease, RELEASE_POLL_MS};
use dynpage_core::metrics::SourceCounters;
use dynpage_core::prepare::{prepare, Prepared};
use dynpage_core::resp::{self, time_left, ErrorKind};
use dynpage_core::store::{redact_url, Fetch, Guess, ReadScript, VersionHints};
use dynpage_core::topology::Client;

/// How long a source that failed is skipped: meanwhile the chain goes on to the next source at
/// once instead of waiting for the timeout, and when every source is skipped, requests use
/// stale inputs (or get 503) at once. The first fetch after it tries the source again.
pub const SKIP_FAILED_SOURCE_MS: u64 = 1000;

/// A Redis whose replies were too slow for this many different keys (documents, data keys)
/// within [`SLOW_WINDOW_MS`] is skipped like a failed one: one slow document is that
/// document's problem, slowness across documents is the source's.
pub const SLOW_KEYS_TO_SKIP: usize = 3;
pub const SLOW_WINDOW_MS: u64 = 10_000;

/// An item (a document's meta or field, a data key) that failed on its own (too large, too
/// slow) is not asked again for this long, doubling on each failure up to the ceiling; requests
/// for it meanwhile get stale inputs or 503 at once. An event for it, or an answer, ends it.
pub const ITEM_RETRY_FIRST_MS: u64 = 1000;
pub const ITEM_RETRY_MAX_MS: u64 = 10_000;

/// Items remembered as failing, at most (beyond, the expired ones go, else all).
const MAX_FAILING_ITEMS: usize = 10_000;

/// Fetches for one round trip.
pub struct Job {
    pub fetches: Vec<Fetch>,
    /// The cache keys of the metas among `fetches` the worker still holds (refreshes): no
    /// version is read with them.
    pub warm: Vec<String>,
    /// Cache entries the worker let go of that are many blocks to free (compiled templates,
    /// dimensions' values): dropped here, off the event loop. A job may carry only these.
    pub garbage: Vec<Prepared>,
    /// The worker's invalidation count when the job was sent (see `Runtime::absorb`).
    pub generation: u64,
}

impl Job {
    /// Adds `other`'s work to this job. The fetches of jobs in flight together are distinct
    /// (the worker sends a fetch only while it is not in flight). The older generation is
    /// kept: what the merged job reads counts as read before the invalidations since then.
    fn merge(&mut self, other: Job) {
        self.fetches.extend(other.fetches);
        self.warm.extend(other.warm);
        self.garbage.extend(other.garbage);
        self.generation = self.generation.min(other.generation);
    }
}

/// What a job found: the prepared answers with who gave them, and what no source answered.
pub struct JobResult {
    pub generation: u64,
    pub answered: Vec<(Fetch, Prepared, Via)>,
    pub unanswered: Vec<Fetch>,
}

/// What the threads hand to the event loop.
pub enum Delivery {
    Fetched(JobResult),
    /// From `P events` (or a lost subscription): cache entries to drop.
    Invalidate(Invalidation),
    /// A line for the error log (threads do not write it themselves), with its level; without
    /// the `dynpage: ` the log writes first.
    Log(u32, String),
}

/// Where deliveries go, shared by the threads and the event loop.
pub struct Mailbox {
    /// `None` once closed: the worker is exiting and may close the eventfd at any time.
    results: Mutex<Option<Vec<Delivery>>>,
    /// Mirrors `results` being `None`, readable without the lock.
    closed: AtomicBool,
    eventfd: RawFd,
}

impl Mailbox {
    pub fn new(eventfd: RawFd) -> Mailbox {
        Mailbox {
            results: Mutex::new(Some(Vec::new())),
            closed: AtomicBool::new(false),
            eventfd,
        }
    }

    pub fn post(&self, result: Delivery) {
        let mut results = self.results.lock();
        let Some(queue) = results.as_mut() else {
            return;
        };
        queue.push(result);
        if queue.len() > 1 {
            // The eventfd was written for what is queued before it, and the worker reads the
            // eventfd before it takes the queue: that wake-up takes this too.
            return;
        }
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to the eventfd. The lock is held and the
        // mailbox is open, so the worker has not closed the eventfd (it closes the mailbox,
        // under this lock, first).
        unsafe {
            libc::write(self.eventfd, (&one as *const u64).cast(), 8);
        }
    }

    /// Stops all posting: after this returns, no thread writes to the eventfd any more, so the
    /// worker may close it whether or not its threads have ended. Threads see it and stop.
    pub fn close(&self) {
        *self.results.lock() = None;
        self.closed.store(true, Ordering::Relaxed);
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Everything posted so far. The worker reads the eventfd first: a post made after that
    /// read either lands in what this takes or writes the eventfd again (see `post`).
    pub fn take(&self) -> Vec<Delivery> {
        self.results
            .lock()
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }
}

/// Which sources are being skipped after a failure, and which items failed on their own,
/// shared by the threads and the event loop.
pub struct Health {
    /// Per Redis of the chain, then the CMS: skipped until then (wall clock, ms).
    down_until_ms: Vec<AtomicU64>,
    /// Per Redis: the keys whose replies were too slow there lately, with when (ms).
    slow: Mutex<Vec<Vec<(String, u64)>>>,
    /// Items (by cache key) that failed on their own: not asked before `until_ms`.
    failing: Mutex<HashMap<String, Backoff>>,
    /// Whether `failing` may hold anything (read without its lock on every job).
    any_failing: AtomicBool,
    /// Per source, as `down_until_ms`: its counters for `dynpage_status`.
    stats: Vec<Option<&'static SourceCounters>>,
    /// Per source: read the two-round way until then (wall clock, ms), after it refused the
    /// read script (shared by the threads' [`ReadScript`]s).
    script_off_until_ms: Vec<Arc<AtomicU64>>,
}

struct Backoff {
    until_ms: u64,
    /// The wait after the next failure.
    next_ms: u64,
}

impl Health {
    /// `stats`: per Redis of the chain, then the CMS, its counters (if counted).
    pub fn new(stats: Vec<Option<&'static SourceCounters>>) -> Health {
        let sources = stats.len();
        Health {
            down_until_ms: (0..sources).map(|_| AtomicU64::new(0)).collect(),
            slow: Mutex::new(vec![Vec::new(); sources]),
            failing: Mutex::new(HashMap::new()),
            any_failing: AtomicBool::new(false),
            stats,
            script_off_until_ms: (0..sources).map(|_| Arc::default()).collect(),
        }
    }

    /// The counters of source `index` (Redis of the chain, then the CMS).
    fn stats(&self, index: usize) -> Option<&'static SourceCounters> {
        self.stats.get(index).copied().flatten()
    }

    /// Notes that `key`'s reply was too slow at `source`; true when that makes the source
    /// slow for [`SLOW_KEYS_TO_SKIP`] different keys within [`SLOW_WINDOW_MS`] (the count
    /// starts again then).
    fn slow_at(&self, source: usize, key: &str, now: u64) -> bool {
        let mut slow = self.slow.lock();
        let Some(recent) = slow.get_mut(source) else {
            return false;
        };
        recent.retain(|(k, at)| k != key && at + SLOW_WINDOW_MS > now);
        recent.push((key.to_string(), now));
        if recent.len() >= SLOW_KEYS_TO_SKIP {
            recent.clear();
            return true;
        }
        false
    }

    /// Whether `key` failed on its own and is not to be asked yet.
    fn item_waiting(&self, key: &str, now: u64) -> bool {
        self.any_failing.load(Ordering::Relaxed)
            && self
                .failing
                .lock()
                .get(key)
                .is_some_and(|b| now < b.until_ms)
    }

    /// Notes that `key` failed on its own: how long it now waits, and whether it was fine
    /// before (so the failure is news worth a log line).
    fn item_failed(&self, key: &str, now: u64) -> (u64, bool) {
        let mut failing = self.failing.lock();
        if failing.len() >= MAX_FAILING_ITEMS && !failing.contains_key(key) {
            failing.retain(|_, b| now < b.until_ms);
            if failing.len() >= MAX_FAILING_ITEMS {
                failing.clear(); // bounded memory; worst case an item is asked sooner
            }
        }
        let first = !failing.contains_key(key);
        let b = failing.entry(key.to_string()).or_insert(Backoff {
            until_ms: 0,
            next_ms: ITEM_RETRY_FIRST_MS,
        });
        let wait = b.next_ms;
        b.until_ms = now + wait;
        b.next_ms = (wait * 2).min(ITEM_RETRY_MAX_MS);
        self.any_failing.store(true, Ordering::Relaxed);
        (wait, first)
    }

    /// `key` was answered: it is fine again.
    fn item_answered(&self, key: &str) {
        if self.any_failing.load(Ordering::Relaxed) {
            let mut failing = self.failing.lock();
            failing.remove(key);
            self.any_failing
                .store(!failing.is_empty(), Ordering::Relaxed);
        }
    }

    /// Forgets the failures of the items `covers` names (an event says they changed: ask at
    /// once).
    pub fn forget_failing(&self, covers: impl Fn(&str) -> bool) {
        if self.any_failing.load(Ordering::Relaxed) {
            let mut failing = self.failing.lock();
            failing.retain(|k, _| !covers(k));
            self.any_failing
                .store(!failing.is_empty(), Ordering::Relaxed);
        }
    }

    pub fn is_down(&self, source: usize, now: u64) -> bool {
        self.down_until_ms
            .get(source)
            .is_some_and(|d| now < d.load(Ordering::Relaxed))
    }

    /// Whether every source is being skipped.
    pub fn all_down(&self, now: u64) -> bool {
        (0..self.down_until_ms.len()).all(|i| self.is_down(i, now))
    }

    /// Starts skipping `source`; true if it was up (so the failure is news worth a log line).
    fn mark_down(&self, source: usize, now: u64) -> bool {
        let Some(d) = self.down_until_ms.get(source) else {
            return false;
        };
        let until = now + SKIP_FAILED_SOURCE_MS;
        let was = d.swap(until, Ordering::Relaxed);
        if was <= now {
            if let Some(stats) = self.stats(source) {
                stats.skipped(until);
            }
        }
        was <= now
    }
}

/// How the threads reach the sources.
#[derive(Clone)]
pub struct SourceConf {
    pub redis: Vec<String>,
    pub cms: Option<CmsUrl>,
    pub cms_url: String,
    pub timeout: Duration,
    pub layout: Layout,
    pub health: Arc<Health>,
    /// The worker's version hints (read and written by all its fetch threads).
    pub hints: Arc<VersionHints>,
}

/// Starts `threads` fetch threads.
pub fn spawn(
    threads: usize,
    conf: SourceConf,
    jobs: Arc<Mutex<Receiver<Job>>>,
    mailbox: Arc<Mailbox>,
    release: Arc<MemoryRelease>,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    (0..threads)
        .map(|i| {
            let (conf, jobs, mailbox) = (conf.clone(), jobs.clone(), mailbox.clone());
            let release = release.clone();
            // They compile templates: upon's compiler recurses once per nesting level, and
            // the stack is sized for the deepest template `limits` lets through.
            std::thread::Builder::new()
                .name(format!("dynpage-fetch-{i}"))
                .stack_size(COMPILE_STACK_BYTES)
                .spawn(move || run(conf, jobs, mailbox, &release, i))
        })
        .collect()
}

/// One Redis of the chain (a Redis, a cluster, a Redis behind sentinels), with this thread's
/// connection(s) to it.
struct RedisSource<'a> {
    /// Where it is (the URL was checked when the configuration was read).
    client: Result<Client, String>,
    conf: &'a SourceConf,
    stats: Option<&'static SourceCounters>,
    /// This thread's use of the read script at this source (one round trip per batch).
    script: ReadScript,
    /// The current job's `warm` metas.
    warm: Vec<String>,
}

impl Source for RedisSource<'_> {
    fn fetch(&mut self, items: &[Fetch]) -> SourceReply {
        let started = Instant::now();
        let (reply, round_trips) = self.round_trip(items);
        if let Some(stats) = self.stats {
            stats.fetched(elapsed_us(started), reply.failed.is_none(), round_trips);
        }
        reply
    }
}

fn elapsed_us(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

impl RedisSource<'_> {
    /// One budget for connecting (if needed) and the round trip: everything ends by the
    /// deadline, whatever the peer does. An item that fails on its own and ends the round trip
    /// (a reply refused as too large) leaves the rest to a new connection, within the same
    /// deadline. Also says how many pipelines were sent.
    fn round_trip(&mut self, items: &[Fetch]) -> (SourceReply, u64) {
        let warm = &self.warm;
        // A version's value comes with a meta unless the worker holds its versions (`warm`).
        let wanted = |f: &Fetch| !warm.iter().any(|k| *k == f.cache_key());
        let client = match &mut self.client {
            Ok(c) => c,
            Err(e) => return (SourceReply::failed(e.clone()), 0),
        };
        let mut round_trips = 0;
        let deadline = Instant::now() + self.conf.timeout;
        let mut reply = SourceReply::default();
        let mut retried = false;
        while reply.items.len() < items.len() {
            let rest = &items[reply.items.len()..];
            let (got, reused) = client.batch(
                &self.conf.layout,
                rest,
                deadline,
                &mut self.script,
                Guess {
                    now_ms: wall_ms(),
                    wanted: &wanted,
                    hints: Some(&self.conf.hints),
                },
            );
            let progress = !got.items.is_empty();
            round_trips += got.round_trips;
            reply.items.extend(got.items);
            reply.extra.extend(got.extra);
            match got.failed {
                // A connection kept from before may have been closed by a Redis that restarted
                // since: that says nothing about the Redis now. Try once on a new connection,
                // within the same deadline, before counting it as a failure.
                Some(e) if reused && !retried && !progress && e.kind == ErrorKind::Io => {
                    retried = true;
                }
                Some(e) => {
                    reply.failed = Some(describe(&e));
                    break;
                }
                None if !progress || time_left(deadline).is_err() => break,
                None => {}
            }
        }
        (reply, round_trips)
    }
}

fn run(
    conf: SourceConf,
    jobs: Arc<Mutex<Receiver<Job>>>,
    mailbox: Arc<Mailbox>,
    release: &MemoryRelease,
    thread: usize,
) {
    // Threads of different workers read from different replicas (read_from=replicas,
    // role=replica): the worker's pid spreads them.
    let pick = thread + std::process::id() as usize;
    let mut sources: Vec<RedisSource> = conf
        .redis
        .iter()
        .enumerate()
        .map(|(i, url)| RedisSource {
            client: Client::new(url, pick),
            conf: &conf,
            stats: conf.health.stats(i),
            warm: Vec::new(),
            script: ReadScript::sharing(
                conf.health
                    .script_off_until_ms
                    .get(i)
                    .cloned()
                    .unwrap_or_default(),
            ),
        })
        .collect();
    loop {
        // Memory the caches let go of goes back to the system from here, off the event loop,
        // also when the worker is idle (the wait ends a few times a second to see).
        if let Some(let_go) = release.claim() {
            let started = Instant::now();
            crate::free_memory::release();
            mailbox.post(Delivery::Log(
                NGX_LOG_DEBUG,
                format!(
                    "returned free memory to the system: {} KB let go of since the last time, \
                     in {} us",
                    let_go / 1024,
                    elapsed_us(started)
                ),
            ));
        }
        // With a CMS behind Redis, each request's job goes alone: the CMS is asked one page
        // at a time, and a batch's answers are handed over together, so merged jobs would
        // queue their CMS requests behind each other's.
        let mut job = match take_jobs(&jobs, conf.cms.is_none()) {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return, // the worker is exiting
        };
        drop(std::mem::take(&mut job.garbage));
        if mailbox.is_closed() {
            return; // the worker is exiting: what is still queued is for nobody
        }
        if job.fetches.is_empty() {
            continue;
        }
        for source in sources.iter_mut() {
            source.warm.clone_from(&job.warm);
        }
        let generation = job.generation;
        let what: Vec<String> = job.fetches.iter().map(|f| f.to_string()).collect();
        let fetches = job.fetches.clone();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            fetch(&conf, &mut sources, job.fetches, &mailbox, &what)
        }))
        .unwrap_or_else(|_| {
            mailbox.post(Delivery::Log(
                NGX_LOG_ALERT,
                format!("internal error while fetching {}", what.join(", ")),
            ));
            JobResult {
                generation,
                answered: Vec::new(),
                unanswered: fetches,
            }
        });
        mailbox.post(Delivery::Fetched(JobResult {
            generation,
            ..result
        }));
    }
}

/// A thread takes the jobs waiting when it is free, while it holds fewer than this many
/// fetches (so at most this many less one, plus one request's job), and reads them in one
/// round trip per source: under load, the misses of many requests share an exchange (and its
/// system calls) instead of queueing for one each. What a batch holds at once is bounded by
/// that count of replies, each within its item's limits.
pub const FETCHES_PER_ROUND_TRIP: usize = 16;

/// Waits (up to [`RELEASE_POLL_MS`]) for a job, then, if `merge`, takes those already waiting
/// behind it, as one job, while it has fewer than [`FETCHES_PER_ROUND_TRIP`] fetches.
fn take_jobs(jobs: &Mutex<Receiver<Job>>, merge: bool) -> Result<Job, RecvTimeoutError> {
    let jobs = jobs.lock();
    let mut job = jobs.recv_timeout(Duration::from_millis(RELEASE_POLL_MS))?;
    while merge && job.fetches.len() < FETCHES_PER_ROUND_TRIP {
        match jobs.try_recv() {
            Ok(next) => job.merge(next),
            Err(_) => break,
        }
    }
    Ok(job)
}

fn fetch(
    conf: &SourceConf,
    sources: &mut [RedisSource],
    fetches: Vec<Fetch>,
    mailbox: &Mailbox,
    what: &[String],
) -> JobResult {
    let now = wall_ms();
    let cms_index = conf.redis.len();
    let health = &conf.health;
    // Items that failed on their own lately are not asked again yet: stale inputs or 503.
    let (waiting, fetches): (Vec<Fetch>, Vec<Fetch>) = fetches
        .into_iter()
        .partition(|f| health.item_waiting(&f.cache_key(), now));
    let mut ask_cms = |key: &str| match &conf.cms {
        Some(url) => {
            let started = Instant::now();
            let answer = fetch_page(url, key, conf.timeout);
            if let Some(stats) = health.stats(cms_index) {
                stats.fetched(elapsed_us(started), answer.is_ok(), 1);
            }
            answer
        }
        None => Err("no CMS".into()),
    };
    let use_cms = conf.cms.is_some() && !health.is_down(cms_index, now);
    let out = if fetches.is_empty() {
        Default::default()
    } else {
        fetch_chain(
            sources,
            // A worker that is exiting asks nothing more.
            |i| health.is_down(i, now) || mailbox.is_closed(),
            if use_cms && !mailbox.is_closed() {
                Some(&mut ask_cms)
            } else {
                None
            },
            fetches,
            now,
        )
    };
    let failed_at = wall_ms();
    let redis_name = |i: usize| redact_url(conf.redis.get(i).map_or("", String::as_str));
    let skip = |index: usize, kind: &str, name: String, cause: &str| {
        if health.mark_down(index, failed_at) {
            mailbox.post(Delivery::Log(
                NGX_LOG_ERR,
                format!(
                    "{kind} \"{name}\" failed while fetching {}: {cause}; \
                     skipping it for {SKIP_FAILED_SOURCE_MS}ms",
                    what.join(", ")
                ),
            ));
        }
    };
    for (source, cause) in &out.failures {
        match source {
            Some(i) => skip(*i, "redis", redis_name(*i), cause),
            None => skip(cms_index, "cms", conf.cms_url.clone(), cause),
        }
    }
    // Slowness across different keys is the source's failure.
    for (i, f, failure) in &out.item_failures {
        if failure.slow && health.slow_at(*i, &redis_key(f), failed_at) {
            let cause = format!(
                "replies too slow for {SLOW_KEYS_TO_SKIP} different keys within \
                 {SLOW_WINDOW_MS}ms"
            );
            skip(*i, "redis", redis_name(*i), &cause);
        }
    }
    // An item no source answered because it failed on its own waits before it is asked again.
    for f in &out.unanswered {
        let Some((i, _, failure)) = out.item_failures.iter().rev().find(|(_, g, _)| g == f) else {
            continue;
        };
        let (wait, first) = health.item_failed(&f.cache_key(), failed_at);
        if first {
            mailbox.post(Delivery::Log(
                NGX_LOG_ERR,
                format!(
                    "{f} failed at redis \"{}\": {}; it gets stale inputs or 503 \
                     for {wait}ms, then is asked again (the source stays in use)",
                    redis_name(*i),
                    failure.cause
                ),
            ));
        }
    }
    let mut unanswered = out.unanswered;
    unanswered.extend(waiting);
    JobResult {
        generation: 0,
        answered: out
            .answered
            .into_iter()
            .map(|(f, raw, via)| {
                health.item_answered(&f.cache_key());
                let prepared = prepare(&f, raw);
                (f, prepared, via)
            })
            .collect(),
        unanswered,
    }
}

/// The Redis key an item reads (a document's meta and fields are one key).
fn redis_key(f: &Fetch) -> String {
    match f {
        Fetch::Meta(doc) | Fetch::Field(doc, _) => doc.field_name(),
        Fetch::Data(key) => key.clone(),
    }
}

/// Wall-clock milliseconds (the threads cannot read nginx's cached time).
fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub fn describe(e: &resp::Error) -> String {
    e.detail.replace('\n', " ")
}

/// Waits for `threads` to end, until `deadline` at most: a thread still running then is left
/// to end by itself (detached). Their round trips end within the timeout, and they post
/// nothing once the mailbox is closed, so a worker's exit never waits on a peer.
pub fn join_until(threads: impl IntoIterator<Item = JoinHandle<()>>, deadline: Instant) {
    for t in threads {
        while !t.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        if t.is_finished() {
            let _ = t.join();
        }
    }
}
