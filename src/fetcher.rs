//! Fetch threads: each worker runs a few, which do the blocking Redis round trips and prepare
//! (parse, compile) what they read, then hand results back to the event loop through an eventfd.

use std::os::fd::RawFd;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;

use dynpage_core::events::Stale;
use dynpage_core::layout::Layout;
use dynpage_core::prepare::{prepare, Prepared};
use dynpage_core::store::{connect, fetch_batch, Fetch};

/// Threads per worker process.
pub const FETCH_THREADS: usize = 4;

/// Fetches for one round trip.
pub struct Job {
    pub fetches: Vec<Fetch>,
    /// The worker's invalidation count when the job was sent (see `Runtime::absorb`).
    pub generation: u64,
}

/// What a job found: one prepared value per fetch, or why the source failed.
pub struct JobResult {
    pub fetches: Vec<Fetch>,
    pub generation: u64,
    pub outcome: Result<Vec<Prepared>, String>,
}

/// What the threads hand to the event loop.
pub enum Delivery {
    Fetched(JobResult),
    /// From `P events` (or a lost subscription): cache entries to drop.
    Stale(Stale),
    /// A line for the error log (threads do not write it themselves).
    Log(String),
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

/// How the threads reach Redis.
#[derive(Clone)]
pub struct SourceConf {
    pub url: String,
    pub timeout: Duration,
    pub layout: Layout,
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

fn run(conf: SourceConf, jobs: Arc<Mutex<Receiver<Job>>>, mailbox: Arc<Mailbox>) {
    let mut con: Option<redis::Connection> = None;
    loop {
        let job = match jobs.lock().recv() {
            Ok(job) => job,
            Err(_) => return, // the worker is exiting
        };
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            fetch(&conf, &mut con, &job.fetches)
        }))
        .unwrap_or_else(|_| Err("internal error while fetching".to_string()));
        mailbox.post(Delivery::Fetched(JobResult {
            fetches: job.fetches,
            generation: job.generation,
            outcome,
        }));
    }
}

fn fetch(
    conf: &SourceConf,
    con: &mut Option<redis::Connection>,
    fetches: &[Fetch],
) -> Result<Vec<Prepared>, String> {
    if con.is_none() {
        *con = Some(connect(&conf.url, conf.timeout).map_err(|e| describe(&e))?);
    }
    let Some(c) = con.as_mut() else {
        return Err("no connection".into());
    };
    match fetch_batch(c, &conf.layout, fetches) {
        Ok(raws) => Ok(fetches
            .iter()
            .zip(raws)
            .map(|(f, raw)| prepare(f, raw))
            .collect()),
        Err(e) => {
            // The connection may hold a late reply: never reuse it.
            *con = None;
            Err(describe(&e))
        }
    }
}

pub fn describe(e: &redis::RedisError) -> String {
    if e.is_timeout() {
        "timed out".to_string()
    } else {
        e.to_string().replace('\n', " ")
    }
}
