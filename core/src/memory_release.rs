//! When a worker hands back to the system the memory its caches let go of.
//!
//! The allocator keeps the room a dropped cache entry occupied for reuse, and with caches that
//! churn (a long tail of pages through a small bound) those holes, spread over the event loop's
//! heap and each fetch thread's, add a third or more to what the caches hold. A fetch thread
//! returns them (the edge calls `malloc_trim`) once the caches have let go of enough since the
//! last time ([`MemoryRelease::claim`]), at most once per interval, also when the worker is idle.
//! The event loop only counts ([`MemoryRelease::note_let_go`]: one store).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// The least a release waits for, in bytes let go of since the last one.
pub const MIN_RELEASE_BYTES: u64 = 256 * 1024;

/// At most one release per this many milliseconds.
pub const RELEASE_INTERVAL_MS: u64 = 1000;

/// How often an idle fetch thread looks whether a release is due: a fraction of the interval,
/// so what was let go of at the end of a load goes back within about a second.
pub const RELEASE_POLL_MS: u64 = RELEASE_INTERVAL_MS / 4;

/// Shared by the event loop (which counts) and the fetch threads (one of which releases).
pub struct MemoryRelease {
    /// Bytes the caches have let go of in all, as the event loop last counted.
    let_go: AtomicU64,
    /// `let_go` when the last release was claimed.
    let_go_at_release: AtomicU64,
    /// When the last release was claimed (ms since `started`, at least 1; 0: never).
    released_ms: AtomicU64,
    /// Bytes let go of that make a release worth its cost.
    threshold: u64,
    /// What [`MemoryRelease::claim`] measures time from (monotonic: a wall clock set back
    /// would hold releases off).
    started: Instant,
}

impl MemoryRelease {
    /// For caches bounded at `bound` bytes in all: a release is due once an eighth of that
    /// (at least [`MIN_RELEASE_BYTES`]) was let go of.
    pub fn new(bound: usize) -> MemoryRelease {
        MemoryRelease {
            let_go: AtomicU64::new(0),
            let_go_at_release: AtomicU64::new(0),
            released_ms: AtomicU64::new(0),
            threshold: (bound as u64 / 8).max(MIN_RELEASE_BYTES),
            started: Instant::now(),
        }
    }

    /// Notes the bytes the caches have let go of in all since they were made (a running total:
    /// evicted, replaced, removed, shrunk).
    pub fn note_let_go(&self, total: u64) {
        self.let_go.store(total, Ordering::Relaxed);
    }

    /// Whether the caller should release now: enough was let go of since the last release and
    /// the interval has passed. `Some(bytes let go of since the last release)` for one caller
    /// per due release, however many ask.
    pub fn claim(&self) -> Option<u64> {
        let now_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.claim_at(now_ms)
    }

    /// [`MemoryRelease::claim`] at `now_ms` (milliseconds on a monotonic clock).
    fn claim_at(&self, now_ms: u64) -> Option<u64> {
        let total = self.let_go.load(Ordering::Relaxed);
        let at = self.let_go_at_release.load(Ordering::Relaxed);
        let since = total.saturating_sub(at);
        if since < self.threshold {
            return None;
        }
        let last = self.released_ms.load(Ordering::Relaxed);
        if last != 0 && now_ms < last.saturating_add(RELEASE_INTERVAL_MS) {
            return None;
        }
        self.released_ms
            .compare_exchange(last, now_ms.max(1), Ordering::AcqRel, Ordering::Relaxed)
            .ok()?; // else another thread claimed it
                    // A claim delayed past the next one never takes the mark back.
        self.let_go_at_release.fetch_max(total, Ordering::Relaxed);
        Some(since)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_release_waits_for_enough_bytes_let_go() {
        let m = MemoryRelease::new(4 << 20); // threshold 512 KB
        assert_eq!(m.claim_at(5_000), None);
        m.note_let_go(500 * 1024);
        assert_eq!(m.claim_at(5_000), None);
        m.note_let_go(512 * 1024);
        assert!(m.claim_at(5_000).is_some());
        // What was let go of is released: nothing more is due until more is let go of.
        assert_eq!(m.claim_at(10_000), None);
        m.note_let_go(1000 * 1024);
        assert_eq!(m.claim_at(10_000), None, "488 KB since the last release");
        m.note_let_go(1024 * 1024);
        assert_eq!(
            m.claim_at(10_000),
            Some(512 * 1024),
            "what was let go of since"
        );
    }

    #[test]
    fn small_bounds_wait_for_the_least_release() {
        let m = MemoryRelease::new(64 * 1024);
        m.note_let_go(MIN_RELEASE_BYTES - 1);
        assert_eq!(m.claim_at(1), None);
        m.note_let_go(MIN_RELEASE_BYTES);
        assert!(m.claim_at(1).is_some());
    }

    #[test]
    fn at_most_one_release_per_interval() {
        let m = MemoryRelease::new(0);
        m.note_let_go(10 << 20);
        assert!(m.claim_at(1_000).is_some());
        m.note_let_go(20 << 20);
        assert_eq!(m.claim_at(1_000 + RELEASE_INTERVAL_MS - 1), None);
        assert!(m.claim_at(1_000 + RELEASE_INTERVAL_MS).is_some());
    }

    #[test]
    fn one_thread_claims_a_due_release() {
        use std::sync::{Arc, Barrier};
        // The threads claim together (a barrier), many rounds over, each round due once.
        for round in 1..=200u64 {
            let m = Arc::new(MemoryRelease::new(0));
            m.note_let_go(10 << 20);
            let start = Arc::new(Barrier::new(8));
            let claims: usize = (0..8)
                .map(|_| {
                    let (m, start) = (m.clone(), start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        usize::from(m.claim_at(round * 50_000).is_some())
                    })
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|t| t.join().unwrap_or(0))
                .sum();
            assert_eq!(claims, 1, "round {round}");
        }
    }

    #[test]
    fn claims_on_the_monotonic_clock() {
        let m = MemoryRelease::new(0);
        m.note_let_go(10 << 20);
        assert_eq!(
            m.claim(),
            Some(10 << 20),
            "the first release is due at once"
        );
        m.note_let_go(20 << 20);
        assert_eq!(m.claim(), None, "not again within the interval");
    }
}
