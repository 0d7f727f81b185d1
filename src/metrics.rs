//! This process's handle on the counters in the shared zone (`dynpage_core::metrics`): set
//! once when a worker starts, then read from the event loop and the worker's threads. Without
//! the zone nothing is counted (every accessor answers `None`).

use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

use ngx::ffi::ngx_int_t;

use dynpage_core::metrics::{Counters, SourceCounters, SourceKind, Tally, WorkerGauges};
use dynpage_core::serve::Source;
use dynpage_core::store::redact_url;
use dynpage_core::version::Variant;

use crate::zone::Zone;

static COUNTERS: AtomicPtr<Counters> = AtomicPtr::new(ptr::null_mut());
static GAUGES: AtomicPtr<WorkerGauges> = AtomicPtr::new(ptr::null_mut());

/// The counters, once `attach` ran.
pub fn counters() -> Option<&'static Counters> {
    // SAFETY: null, or the zone's counters stored by `attach`, which stay mapped until this
    // process exits.
    unsafe { COUNTERS.load(Ordering::Relaxed).as_ref() }
}

/// This worker's gauges, once `attach` ran.
pub fn gauges() -> Option<&'static WorkerGauges> {
    // SAFETY: null, or a slot of the zone's counters stored by `attach` (see `counters`).
    unsafe { GAUGES.load(Ordering::Relaxed).as_ref() }
}

/// Where this worker counts its requests: its slot's tally (or the shared one when every slot
/// is taken).
pub fn tally() -> Option<&'static Tally> {
    match gauges() {
        Some(g) => Some(&g.tally),
        None => counters().map(|c| &c.retired),
    }
}

/// Counts a request answered with `rc` for `dynpage_status`: the status sent when a page was
/// served, else `rc` when it is one, else 500.
pub fn count_request(served: Option<(Variant, Source)>, sent_status: u64, rc: ngx_int_t) {
    if let Some(c) = tally() {
        let status = match (served, rc) {
            (Some(_), _) => sent_status,
            (None, 100..) => rc as u64,
            (None, _) => 500,
        };
        c.request(served, status);
    }
}

/// Whether the process `pid` still runs.
pub fn running(pid: u64) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// A worker starts: counts into `zone` from now on, in a gauge slot of its own.
pub fn attach(zone: &Zone) {
    let counters = zone.counters();
    COUNTERS.store(ptr::from_ref(counters).cast_mut(), Ordering::Relaxed);
    let pid = u64::from(std::process::id());
    if let Some(g) = counters.worker(pid, running) {
        GAUGES.store(ptr::from_ref(g).cast_mut(), Ordering::Relaxed);
    }
}

/// The worker exits: its gauge slot is free for the next one.
pub fn detach() {
    if let (Some(g), Some(c)) = (gauges(), counters()) {
        g.release(c);
    }
    GAUGES.store(ptr::null_mut(), Ordering::Relaxed);
}

/// The counters of a source (named by its URL, the password redacted), named once for all
/// workers under the zone's lock.
pub fn source(zone: Option<&Zone>, kind: SourceKind, url: &str) -> Option<&'static SourceCounters> {
    let zone = zone?;
    let name = redact_url(url);
    Some(zone.locked(|| zone.counters().source(kind, &name)))
}
