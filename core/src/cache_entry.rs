//! A worker-cache entry, and whether it may serve a request: fresh for the TTL, always for an
//! immutable field that exists, for the request that waited for it, and while no source
//! answers, within `dynpage_stale_ttl`.

use crate::prepare::Prepared;

/// A cached value and when it was loaded (wall clock, ms).
pub struct Entry {
    pub value: Prepared,
    pub loaded_ms: u64,
    /// The CMS answered it (a page's made-up meta and its one snapshot): not in Redis, so a
    /// snapshot from it is never made hollow (it could not be fetched again).
    pub from_cms: bool,
    /// An event arrived while this was being fetched, so it may predate the change: only the
    /// requests that waited for it may use it; later ones fetch again.
    pub doubtful: bool,
    /// An event invalidated it: it is no longer fresh, but it still serves stale while no
    /// source answers.
    pub invalidated: bool,
    /// The cache's `metas_epoch` and `mutable_epoch` when this was loaded: an event that
    /// touches every meta (or a resync, every mutable entry) moves the cache's on, which
    /// invalidates these at once without visiting them.
    pub metas_epoch: u64,
    pub mutable_epoch: u64,
}

/// What a lookup is judged against.
#[derive(Clone, Copy, Debug)]
pub struct Freshness {
    pub now_ms: u64,
    /// `dynpage_cache_ttl`.
    pub ttl_ms: u64,
    /// When the request started: what was loaded since then was loaded for it.
    pub since_ms: u64,
    /// Set when no source answered: entries loaded within this many ms still serve.
    pub stale_ttl_ms: Option<u64>,
    /// `dynpage_background_update on`: past its TTL, an entry that no event invalidated still
    /// serves for this many ms more while one background fetch refreshes it (0: off).
    pub updating_ms: u64,
    /// The cache's `(metas_epoch, mutable_epoch)` now.
    pub epochs: (u64, u64),
}

impl Entry {
    /// Whether an event said this changed (see the `invalidated` field and the epochs). `meta` and `mutable`
    /// say what the entry holds.
    pub fn invalidated(&self, epochs: (u64, u64), meta: bool, mutable: bool) -> bool {
        self.invalidated
            || (meta && self.metas_epoch != epochs.0)
            || (mutable && self.mutable_epoch != epochs.1)
    }

    /// Whether this entry serves the lookup: an immutable field that exists always does;
    /// metas, mutable fields and absences for the TTL unless an event invalidated them (or when
    /// loaded for this request); anything loaded within the stale TTL when no source answered.
    pub fn serves(&self, f: &Freshness, meta: bool, immutable_field: bool) -> bool {
        self.judge(f, meta, immutable_field) != Judged::No
    }

    /// As `serves`, telling apart an entry past its TTL that serves while it is refreshed in
    /// the background (`Freshness::updating_ms`).
    pub fn judge(&self, f: &Freshness, meta: bool, immutable_field: bool) -> Judged {
        let invalidated = self.invalidated(f.epochs, meta, !immutable_field);
        let trusted = !self.doubtful && !invalidated;
        let expires = self.loaded_ms.saturating_add(f.ttl_ms);
        if (immutable_field && self.value.is_present())
            || self.loaded_ms >= f.since_ms
            || (trusted && f.now_ms < expires)
        {
            return Judged::Fresh;
        }
        if trusted && f.updating_ms > 0 && f.now_ms < expires.saturating_add(f.updating_ms) {
            return Judged::Updating;
        }
        if f.stale_ttl_ms
            .is_some_and(|s| f.now_ms < self.loaded_ms.saturating_add(s))
        {
            return Judged::Fresh;
        }
        Judged::No
    }
}

/// How an entry serves a lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Judged {
    Fresh,
    /// Past its TTL, within the background update's bound: it serves, and is to be refreshed.
    Updating,
    No,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(loaded_ms: u64, present: bool) -> Entry {
        Entry {
            value: if present {
                Prepared::Meta(Some(std::sync::Arc::new(
                    crate::version::DocMeta::from_fields(["1"], None, None),
                )))
            } else {
                Prepared::Meta(None)
            },
            loaded_ms,
            from_cms: false,
            doubtful: false,
            invalidated: false,
            metas_epoch: 0,
            mutable_epoch: 0,
        }
    }

    fn at(now_ms: u64) -> Freshness {
        Freshness {
            now_ms,
            ttl_ms: 100,
            since_ms: now_ms,
            stale_ttl_ms: None,
            updating_ms: 0,
            epochs: (0, 0),
        }
    }

    #[test]
    fn past_the_ttl_it_serves_while_updating_within_the_bound_unless_an_event_invalidated_it() {
        let e = entry(1000, true);
        let on = |now| Freshness {
            updating_ms: 100,
            ..at(now)
        };
        assert_eq!(e.judge(&on(1099), true, false), Judged::Fresh);
        assert_eq!(e.judge(&on(1100), true, false), Judged::Updating);
        assert_eq!(e.judge(&on(1199), true, false), Judged::Updating);
        assert_eq!(e.judge(&on(1200), true, false), Judged::No);
        assert_eq!(
            e.judge(&at(1100), true, false),
            Judged::No,
            "off by default"
        );
        let mut told = entry(1000, true);
        told.invalidated = true;
        assert_eq!(told.judge(&on(1150), true, false), Judged::No);
        let mut doubtful = entry(1000, true);
        doubtful.doubtful = true;
        assert_eq!(doubtful.judge(&on(1150), true, false), Judged::No);
    }

    #[test]
    fn fresh_for_the_ttl_then_not() {
        let e = entry(1000, true);
        assert!(e.serves(&at(1099), true, false));
        assert!(!e.serves(&at(1100), true, false));
    }

    #[test]
    fn an_immutable_field_that_exists_never_expires_but_its_absence_does() {
        assert!(entry(0, true).serves(&at(1_000_000), false, true));
        assert!(!entry(0, false).serves(&at(1_000_000), false, true));
    }

    #[test]
    fn events_outdate_and_the_waiting_request_still_uses_it() {
        let mut e = entry(1000, true);
        e.invalidated = true;
        assert!(!e.serves(&at(1001), true, false));
        let waited = Freshness {
            since_ms: 1000,
            ..at(1001)
        };
        assert!(e.serves(&waited, true, false));
        let e = entry(1000, true);
        let moved = Freshness {
            epochs: (1, 0),
            ..at(1001)
        };
        assert!(
            !e.serves(&moved, true, false),
            "a meta after a rollback change"
        );
        assert!(
            e.serves(&moved, false, false),
            "a mutable field keeps its epoch"
        );
        let resync = Freshness {
            epochs: (0, 1),
            ..at(1001)
        };
        assert!(!e.serves(&resync, false, false));
        let mut doubtful = entry(1000, true);
        doubtful.doubtful = true;
        assert!(!doubtful.serves(&at(1001), true, false));
    }

    #[test]
    fn stale_serves_within_the_stale_ttl() {
        let mut e = entry(1000, true);
        e.invalidated = true;
        let stale = Freshness {
            stale_ttl_ms: Some(500),
            ..at(1499)
        };
        assert!(e.serves(&stale, true, false));
        let too_old = Freshness {
            stale_ttl_ms: Some(500),
            ..at(1500)
        };
        assert!(!e.serves(&too_old, true, false));
    }
}
