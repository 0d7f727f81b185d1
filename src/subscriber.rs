//! The events thread: each worker subscribes to `P events` on a thread of its own and hands
//! every message to the event loop through the mailbox, so a publish drops the affected cache
//! entries on every worker at once. It reconnects by itself (with backoff) after Redis restarts;
//! after a reconnect it asks the loop to drop everything mutable, since messages sent while the
//! subscription was down are lost.
//!
//! It reads with the module's bounded client: connecting and subscribing end within
//! `dynpage_redis_timeout`, every read within a poll interval, so it notices at once that the
//! worker is exiting. Something no Redis does (`SUBSCRIBE` answered with an integer, a message
//! that is not RESP2 or over the limits) and a panic of the thread are logged once at `alert`
//! and handled like a lost subscription: reconnect with backoff, then resync.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dynpage_core::events::Invalidation;
use dynpage_core::layout::Layout;
use dynpage_core::metrics::Counters;
use dynpage_core::resp::{encode, Conn, ErrorKind, Limits, Reply, Target};
use dynpage_core::store::redact_url;
use dynpage_core::topology::Client;
use ngx::ffi::{NGX_LOG_ALERT, NGX_LOG_WARN};

use crate::fetcher::{describe, join_until, Delivery, Health, Mailbox};

/// How often a blocked read returns to check whether the worker is exiting.
const POLL: Duration = Duration::from_millis(50);
/// Reconnect delays: first, and the ceiling the doubling stops at.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(1);
/// A subscription that stayed up this long ends an incident: the next surprise is alerted
/// again (a peer that misbehaves right after every subscription is alerted once).
const STABLE: Duration = Duration::from_secs(10);

/// What a subscription reply or message may hold: `["message", channel, key]`, a key being at
/// most 1 KiB (plus the prefix).
const EVENT_LIMITS: Limits = Limits {
    max_bulk: 64 * 1024,
    max_elements: 8,
};

pub struct Subscriber {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// Lowers this thread's scheduling priority (nice 10): a burst of events parsed here must not
/// take the CPU from the worker's event loop, which `worker_cpu_affinity` may have pinned to
/// the same core. Applying what it delivers stays on the event loop, in slices.
fn yield_to_event_loop() {
    // SAFETY: plain syscalls on the calling thread (its kernel thread id).
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 10);
    }
}

impl Subscriber {
    pub fn spawn(
        urls: Vec<String>,
        timeout: Duration,
        layout: Layout,
        mailbox: Arc<Mailbox>,
        health: Arc<Health>,
    ) -> std::io::Result<Subscriber> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("dynpage-events".into())
            .spawn(move || {
                yield_to_event_loop();
                let ctx = Ctx {
                    timeout,
                    layout: &layout,
                    mailbox: &mailbox,
                    health: &health,
                    stop: &flag,
                    up_since: Cell::new(None),
                };
                // `run` catches the panics of each attempt; this is the last guard (a panic in
                // the loop itself must not unwind out of the thread).
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&urls, &ctx)));
            })?;
        Ok(Subscriber { stop, thread })
    }

    /// Asks the thread to stop (it notices within a poll interval, or when its connect ends,
    /// within the timeout).
    pub fn signal(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Stops the thread and waits for it until `deadline` at most.
    pub fn stop(self, deadline: Instant) {
        self.signal();
        join_until([self.thread], deadline);
    }
}

struct Ctx<'a> {
    timeout: Duration,
    layout: &'a Layout,
    mailbox: &'a Mailbox,
    health: &'a Health,
    stop: &'a AtomicBool,
    /// When the current attempt's subscription was confirmed.
    up_since: Cell<Option<Instant>>,
}

impl Ctx<'_> {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn log(&self, level: u32, line: String) {
        self.mailbox.post(Delivery::Log(level, line));
    }

    /// Hands a change to the event loop; an item failing on its own is asked again at once.
    fn invalidate(&self, what: Invalidation) {
        self.health.forget_failing(|key| what.covers(key));
        self.mailbox.post(Delivery::Invalidate(what));
    }
}

/// How one subscription attempt ended.
enum Listen {
    Stopped,
    /// The connection failed or was lost (a Redis restarting, a network): `warn`.
    Lost {
        cause: String,
        was_up: bool,
    },
    /// The server did something no Redis does: `alert`.
    Surprise(String),
}

/// Listens on the first Redis of the chain that works: a publish on the primary reaches its
/// replicas too, so any of them carries every event. A cluster is listened to on any of its
/// nodes (a PUBLISH reaches every node), a Redis behind sentinels on the master they name.
fn run(urls: &[String], ctx: &Ctx) {
    let mut clients: Vec<Result<Client, String>> = urls.iter().map(|u| Client::new(u, 0)).collect();
    let channel = ctx.layout.events_channel();
    let mut retry = RETRY_FIRST;
    let mut lost_reported = false;
    let mut alerted = false;
    let mut first = true;
    let mut at = 0;
    while !ctx.stopping() {
        let n = urls.len().max(1);
        let (Some(url), Some(client)) = (urls.get(at % n), clients.get_mut(at % n)) else {
            return;
        };
        // Every attempt runs guarded: a panic is logged and the thread goes on as after a
        // lost subscription (reconnect, resync).
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match client {
            Ok(c) => listen_any(c, &channel, ctx, first),
            Err(e) => Listen::Surprise(format!("cannot use its URL: {e}")),
        }))
        .unwrap_or_else(|payload| Listen::Surprise(format!("panic: {}", panic_text(&*payload))));
        first = false;
        if ctx.up_since.take().is_some_and(|t| t.elapsed() >= STABLE) {
            alerted = false;
        }
        if !matches!(outcome, Listen::Stopped) {
            count(|c| &c.reconnects);
        }
        match outcome {
            Listen::Stopped => return,
            Listen::Lost { cause, was_up } => {
                if was_up {
                    retry = RETRY_FIRST;
                    lost_reported = false;
                }
                if !lost_reported && !alerted {
                    ctx.log(
                        NGX_LOG_WARN,
                        format!(
                            "events subscription to redis \"{}\" lost: {cause}; \
                             pages follow dynpage_cache_ttl until it is back",
                            redact_url(url)
                        ),
                    );
                    lost_reported = true;
                }
            }
            Listen::Surprise(what) => {
                if !alerted {
                    ctx.log(
                        NGX_LOG_ALERT,
                        format!(
                            "events subscription to redis \"{}\" failed: {what}; \
                             reconnecting (with backoff), pages follow dynpage_cache_ttl \
                             until it is back",
                            redact_url(url)
                        ),
                    );
                    alerted = true;
                }
            }
        }
        // Try the next Redis of the chain straight away; back off once all have failed.
        at += 1;
        if at % n != 0 {
            continue;
        }
        let until = Instant::now() + retry;
        while Instant::now() < until && !ctx.stopping() {
            std::thread::sleep(RETRY_FIRST.min(until.saturating_duration_since(Instant::now())));
        }
        retry = (retry * 2).min(RETRY_MAX);
    }
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic".to_string()
    }
}

/// Whether `reply` is `[kind, channel, ...]` with the given kind and channel.
fn is_push(reply: &Reply, kind: &str, channel: &str) -> bool {
    matches!(reply, Reply::Array(items) if items.len() == 3
        && matches!(&items[0], Reply::Bulk(k) if k == kind.as_bytes())
        && matches!(&items[1], Reply::Bulk(c) if c == channel.as_bytes()))
}

/// Listens on the first node of `client` that subscribes (one Redis; the master the sentinels
/// name; each node of a cluster in turn, so a lost node is replaced by another at once).
fn listen_any(client: &mut Client, channel: &str, ctx: &Ctx, first: bool) -> Listen {
    let single = matches!(client, Client::Single { .. });
    let targets = match client.subscribe_targets(Instant::now() + ctx.timeout) {
        Ok(t) => t,
        Err(e) => {
            return Listen::Lost {
                cause: describe(&e),
                was_up: false,
            }
        }
    };
    let mut last = Listen::Lost {
        cause: "no node to subscribe on".into(),
        was_up: false,
    };
    for t in targets {
        if ctx.stopping() {
            return Listen::Stopped;
        }
        match listen(&t, channel, ctx, first) {
            Listen::Lost {
                cause,
                was_up: false,
            } if !single => {
                last = Listen::Lost {
                    cause: format!("{}: {cause}", t.address()),
                    was_up: false,
                };
            }
            Listen::Lost { cause, was_up } if !single => {
                return Listen::Lost {
                    cause: format!("{}: {cause}", t.address()),
                    was_up,
                }
            }
            other => return other,
        }
    }
    last
}

fn listen(target: &Target, channel: &str, ctx: &Ctx, first: bool) -> Listen {
    let lost = |e: &dynpage_core::resp::Error, was_up| match e.kind {
        ErrorKind::Protocol | ErrorKind::TooLarge => Listen::Surprise(describe(e)),
        _ => Listen::Lost {
            cause: describe(e),
            was_up,
        },
    };
    let deadline = Instant::now() + ctx.timeout;
    let mut con = match Conn::connect(target, deadline) {
        Ok(c) => c,
        Err(e) => return lost(&e, false),
    };
    let mut subscribe = Vec::new();
    encode(&[b"SUBSCRIBE", channel.as_bytes()], &mut subscribe);
    if let Err(e) = con.send(&subscribe, deadline) {
        return lost(&e, false);
    }
    match con.read_reply(&EVENT_LIMITS, deadline) {
        Ok(r) if is_push(&r, "subscribe", channel) => {}
        Ok(r) => {
            return Listen::Surprise(format!(
                "SUBSCRIBE was answered with {}, not a subscription",
                r.describe()
            ))
        }
        Err(e) => return lost(&e, false),
    }
    ctx.up_since.set(Some(Instant::now()));
    if !first {
        // Anything may have changed while nobody listened (the first attempt at start-up is
        // the only one that cannot have missed anything).
        ctx.invalidate(Invalidation::AllMutable);
        count(|c| &c.resyncs);
    }
    loop {
        if ctx.stopping() {
            // No UNSUBSCRIBE: the connection is closed right after, which ends it anyway.
            return Listen::Stopped;
        }
        // A message that began arriving is kept across these short reads.
        match con.read_reply(&EVENT_LIMITS, Instant::now() + POLL) {
            Ok(r) if is_push(&r, "message", channel) => {
                let Reply::Array(mut items) = r else {
                    continue;
                };
                let key = match items.pop() {
                    Some(Reply::Bulk(b)) => String::from_utf8_lossy(&b).into_owned(),
                    _ => {
                        return Listen::Surprise("sent a message without a payload".into());
                    }
                };
                #[cfg(feature = "test-panic")]
                if key == "dynpage-test-panic-events" {
                    panic!("test-panic: the events thread panics on purpose");
                }
                count(|c| &c.events);
                ctx.invalidate(Invalidation::from_event(ctx.layout, &key));
            }
            Ok(r) => return Listen::Surprise(format!("sent {} on the subscription", r.describe())),
            Err(e) if e.is_timeout() => {}
            Err(e) => return lost(&e, true),
        }
    }
}

/// Adds one to a counter of `dynpage_status`.
fn count(which: impl FnOnce(&Counters) -> &AtomicU64) {
    if let Some(c) = crate::metrics::counters() {
        which(c).fetch_add(1, Ordering::Relaxed);
    }
}
