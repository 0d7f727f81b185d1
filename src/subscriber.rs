//! The events thread: each worker subscribes to `P events` on a thread of its own and hands
//! every message to the event loop through the mailbox, so a publish drops the affected cache
//! entries on every worker at once. It reconnects by itself (with backoff) after Redis restarts;
//! after a reconnect it asks the loop to drop everything mutable, since messages sent while the
//! subscription was down are lost.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use dynpage_core::events::Stale;
use dynpage_core::layout::Layout;
use dynpage_core::store::{connect, redact_url};
use ngx::ffi::NGX_LOG_WARN;

use crate::fetcher::{describe, Delivery, Mailbox};

/// How often a blocked read returns to check whether the worker is exiting.
const POLL: Duration = Duration::from_millis(50);
/// Reconnect delays: first, and the ceiling the doubling stops at.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(1);

pub struct Subscriber {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Subscriber {
    pub fn spawn(
        urls: Vec<String>,
        connect_timeout: Duration,
        layout: Layout,
        mailbox: Arc<Mailbox>,
    ) -> std::io::Result<Subscriber> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("dynpage-events".into())
            .spawn(move || {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run(&urls, connect_timeout, &layout, &mailbox, &flag)
                }));
            })?;
        Ok(Subscriber { stop, thread })
    }

    /// Asks the thread to stop and waits for it (at most about one poll interval).
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

/// Listens on the first Redis of the chain that works: a publish on the primary reaches its
/// replicas too, so any of them carries every event.
fn run(
    urls: &[String],
    connect_timeout: Duration,
    layout: &Layout,
    mailbox: &Mailbox,
    stop: &AtomicBool,
) {
    let channel = layout.events_channel();
    let mut retry = RETRY_FIRST;
    let mut down_reported = false;
    let mut first = true;
    let mut at = 0;
    while !stop.load(Ordering::Relaxed) {
        let Some(url) = urls.get(at % urls.len().max(1)) else {
            return;
        };
        let outcome = listen(url, connect_timeout, &channel, layout, mailbox, stop, first);
        first = false;
        let cause = match outcome {
            Listen::Stopped => return,
            Listen::Lost { cause, was_up } => {
                if was_up {
                    retry = RETRY_FIRST;
                    down_reported = false;
                }
                cause
            }
        };
        if !down_reported {
            mailbox.post(Delivery::Log(
                NGX_LOG_WARN,
                format!(
                    "dynpage: events subscription to redis \"{}\" lost: {cause}; \
                     pages follow dynpage_cache_ttl until it is back",
                    redact_url(url)
                ),
            ));
            down_reported = true;
        }
        // Try the next Redis of the chain straight away; back off once all have failed.
        at += 1;
        if at % urls.len().max(1) != 0 {
            continue;
        }
        let mut waited = Duration::ZERO;
        while waited < retry && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(RETRY_FIRST);
            waited += RETRY_FIRST;
        }
        retry = (retry * 2).min(RETRY_MAX);
    }
}

enum Listen {
    Stopped,
    Lost { cause: String, was_up: bool },
}

fn listen(
    url: &str,
    connect_timeout: Duration,
    channel: &str,
    layout: &Layout,
    mailbox: &Mailbox,
    stop: &AtomicBool,
    first: bool,
) -> Listen {
    let lost = |e: &redis::RedisError, was_up| Listen::Lost {
        cause: describe(e),
        was_up,
    };
    let mut con = match connect(url, connect_timeout) {
        Ok(c) => c,
        Err(e) => return lost(&e, false),
    };
    let mut pubsub = con.as_pubsub();
    if let Err(e) = pubsub.subscribe(channel) {
        return lost(&e, false);
    }
    if let Err(e) = pubsub.set_read_timeout(Some(POLL)) {
        return lost(&e, false);
    }
    if !first {
        // Anything may have changed while nobody listened (the first attempt at start-up is
        // the only one that cannot have missed anything).
        mailbox.post(Delivery::Stale(Stale::AllMutable));
    }
    loop {
        if stop.load(Ordering::Relaxed) {
            // Skip the UNSUBSCRIBE handshake that dropping `pubsub` would wait for: the
            // connection is closed right after, which ends the subscription anyway.
            std::mem::forget(pubsub);
            return Listen::Stopped;
        }
        match pubsub.get_message() {
            Ok(msg) => {
                let key = String::from_utf8_lossy(msg.get_payload_bytes());
                mailbox.post(Delivery::Stale(Stale::from_event(layout, &key)));
            }
            Err(e) if e.is_timeout() => {}
            Err(e) => return lost(&e, true),
        }
    }
}
