//! Fetch threads: each worker runs a few, which do the blocking Redis round trips and prepare
//! (parse, compile) what they read, then hand results back to the event loop through an eventfd.

use std::os::fd::RawFd;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use std::sync::atomic::{AtomicU64, Ordering};

use ngx::ffi::{NGX_LOG_ALERT, NGX_LOG_ERR};

use dynpage_core::chain::{fetch_chain, Source, Via};
use dynpage_core::cms::{fetch_page, CmsUrl};
use dynpage_core::events::Stale;
use dynpage_core::layout::Layout;
use dynpage_core::prepare::{prepare, Prepared};
use dynpage_core::store::{connect, fetch_batch_by, redact_url, time_left, Fetch, Raw};

/// Threads per worker process.
pub const FETCH_THREADS: usize = 4;

/// How long a source that failed is skipped: meanwhile the chain goes on to the next source at
/// once instead of waiting for the timeout, and when every source is skipped, requests use
/// stale inputs (or get 503) at once. The first fetch after it tries the source again.
pub const SKIP_FAILED_SOURCE_MS: u64 = 1000;

/// Fetches for one round trip.
pub struct Job {
    pub fetches: Vec<Fetch>,
    /// The worker's invalidation count when the job was sent (see `Runtime::absorb`).
    pub generation: u64,
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
    Stale(Stale),
    /// A line for the error log (threads do not write it themselves), with its level.
    Log(u32, String),
}

/// Where deliveries go, shared by the threads and the event loop.
pub struct Mailbox {
    results: Mutex<Vec<Delivery>>,
    eventfd: RawFd,
}

impl Mailbox {
    pub fn new(eventfd: RawFd) -> Mailbox {
        Mailbox {
            results: Mutex::new(Vec::new()),
            eventfd,
        }
    }

    pub fn post(&self, result: Delivery) {
        self.results.lock().push(result);
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to the eventfd, which outlives the threads
        // (the worker joins them before closing it).
        unsafe {
            libc::write(self.eventfd, (&one as *const u64).cast(), 8);
        }
    }

    /// Everything posted so far.
    pub fn take(&self) -> Vec<Delivery> {
        std::mem::take(&mut *self.results.lock())
    }
}

/// Which sources are being skipped after a failure, shared by the threads and the event loop.
pub struct Health {
    /// Per Redis of the chain, then the CMS: skipped until then (wall clock, ms).
    down_until_ms: Vec<AtomicU64>,
}

impl Health {
    pub fn new(sources: usize) -> Health {
        Health {
            down_until_ms: (0..sources).map(|_| AtomicU64::new(0)).collect(),
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
        let was = d.swap(now + SKIP_FAILED_SOURCE_MS, Ordering::Relaxed);
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
}

pub fn spawn(
    conf: SourceConf,
    jobs: Arc<Mutex<Receiver<Job>>>,
    mailbox: Arc<Mailbox>,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    (0..FETCH_THREADS)
        .map(|i| {
            let (conf, jobs, mailbox) = (conf.clone(), jobs.clone(), mailbox.clone());
            std::thread::Builder::new()
                .name(format!("dynpage-fetch-{i}"))
                .spawn(move || run(conf, jobs, mailbox))
        })
        .collect()
}

/// One Redis of the chain, with this thread's connection to it.
struct RedisSource<'a> {
    url: &'a str,
    conf: &'a SourceConf,
    con: Option<redis::Connection>,
}

impl Source for RedisSource<'_> {
    fn fetch(&mut self, items: &[Fetch]) -> Result<Vec<Raw>, String> {
        // One budget for connecting (if needed) and the round trip.
        let deadline = Instant::now() + self.conf.timeout;
        let reused = self.con.is_some();
        match self.round_trip(items, deadline) {
            // A connection kept from before may have been closed by a Redis that restarted
            // since: that says nothing about the Redis now. Try once on a new connection, within
            // the same deadline, before counting it as a failure.
            Err(e)
                if reused && !e.is_timeout() && (e.is_connection_dropped() || e.is_io_error()) =>
            {
                self.round_trip(items, deadline).map_err(|e| describe(&e))
            }
            other => other.map_err(|e| describe(&e)),
        }
    }
}

impl RedisSource<'_> {
    /// One round trip, connecting first if there is no connection; ends by `deadline`. After an
    /// error the connection is dropped (it may hold a late reply: never reuse it).
    fn round_trip(&mut self, items: &[Fetch], deadline: Instant) -> redis::RedisResult<Vec<Raw>> {
        if self.con.is_none() {
            self.con = Some(connect(self.url, time_left(deadline)?)?);
        }
        let Some(c) = self.con.as_mut() else {
            return Err(redis::RedisError::from(std::io::Error::other(
                "no connection",
            )));
        };
        let result = fetch_batch_by(c, &self.conf.layout, items, deadline);
        if result.is_err() {
            self.con = None;
        }
        result
    }
}

fn run(conf: SourceConf, jobs: Arc<Mutex<Receiver<Job>>>, mailbox: Arc<Mailbox>) {
    let mut sources: Vec<RedisSource> = conf
        .redis
        .iter()
        .map(|url| RedisSource {
            url,
            conf: &conf,
            con: None,
        })
        .collect();
    loop {
        let job = match jobs.lock().recv() {
            Ok(job) => job,
            Err(_) => return, // the worker is exiting
        };
        let generation = job.generation;
        let what: Vec<String> = job.fetches.iter().map(|f| f.to_string()).collect();
        let fetches = job.fetches.clone();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            fetch(&conf, &mut sources, job.fetches, &mailbox, &what)
        }))
        .unwrap_or_else(|_| {
            mailbox.post(Delivery::Log(
                NGX_LOG_ALERT,
                format!("dynpage: internal error while fetching {}", what.join(", ")),
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

fn fetch(
    conf: &SourceConf,
    sources: &mut [RedisSource],
    fetches: Vec<Fetch>,
    mailbox: &Mailbox,
    what: &[String],
) -> JobResult {
    let now = wall_ms();
    let cms_index = conf.redis.len();
    let mut ask_cms = |key: &str| match &conf.cms {
        Some(url) => fetch_page(url, key, conf.timeout),
        None => Err("no CMS".into()),
    };
    let use_cms = conf.cms.is_some() && !conf.health.is_down(cms_index, now);
    let out = fetch_chain(
        sources,
        |i| conf.health.is_down(i, now),
        if use_cms { Some(&mut ask_cms) } else { None },
        fetches,
        now,
    );
    let failed_at = wall_ms();
    for (source, cause) in &out.failures {
        let (index, kind, name) = match source {
            Some(i) => (*i, "redis", redact_url(&conf.redis[*i])),
            None => (cms_index, "cms", conf.cms_url.clone()),
        };
        if conf.health.mark_down(index, failed_at) {
            mailbox.post(Delivery::Log(
                NGX_LOG_ERR,
                format!(
                    "dynpage: {kind} \"{name}\" failed while fetching {}: {cause}; \
                     skipping it for {SKIP_FAILED_SOURCE_MS}ms",
                    what.join(", ")
                ),
            ));
        }
    }
    JobResult {
        generation: 0,
        answered: out
            .answered
            .into_iter()
            .map(|(f, raw, via)| {
                let prepared = prepare(&f, raw);
                (f, prepared, via)
            })
            .collect(),
        unanswered: out.unanswered,
    }
}

/// Wall-clock milliseconds (the threads cannot read nginx's cached time).
fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub fn describe(e: &redis::RedisError) -> String {
    if e.is_timeout() {
        "timed out".to_string()
    } else {
        e.to_string().replace('\n', " ")
    }
}
