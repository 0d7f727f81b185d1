//! What failed for which inputs, remembered until the cache TTL passes, and what was logged of
//! it: a worker renders a failing page (or module) once per set of inputs, not per request, and
//! logs each failure once. Bounded: each table is cleared when it reaches its cap (worst case a
//! failure is tried or logged again).

use std::collections::{HashMap, HashSet};

/// At most this many entries per table.
const CAP: usize = 10_000;

/// A render that failed: what and why, for the one log line.
#[derive(Debug)]
pub struct FailedRender {
    until_ms: u64,
    /// The inputs that failed (`version 2000 (template "item" version 1000)`).
    pub what: String,
    pub cause: String,
    /// Set once the outcome (a fallback served, or nothing rendered) was logged.
    logged: bool,
}

/// The failures one worker knows of.
#[derive(Debug, Default)]
pub struct Failures {
    /// Renders that failed, by the id of their inputs (and location).
    renders: HashMap<u64, FailedRender>,
    /// Modules left out of a render, by the id of its inputs and request values.
    modules: HashMap<u64, (u64, Vec<String>)>,
    /// Renders whose left-out modules or dimensions were logged.
    noticed: HashSet<u64>,
}

impl Failures {
    /// Notes that render `id` failed; kept until `until_ms`. A failure already known is kept
    /// as it was (its first cause is the one logged).
    pub fn note_render(&mut self, id: u64, now: u64, until_ms: u64, what: String, cause: String) {
        if self.render_failed(id, now) {
            return;
        }
        if self.renders.len() >= CAP {
            self.renders.retain(|_, b| b.until_ms > now);
            if self.renders.len() >= CAP {
                self.renders.clear();
            }
        }
        let failed = FailedRender {
            until_ms,
            what,
            cause,
            logged: false,
        };
        self.renders.insert(id, failed);
    }

    /// Whether render `id` failed within its TTL.
    pub fn render_failed(&self, id: u64, now: u64) -> bool {
        self.renders.get(&id).is_some_and(|b| now < b.until_ms)
    }

    /// The failed render `id`, if its outcome is not logged yet (marking it logged).
    pub fn unlogged_render(&mut self, id: u64) -> Option<&FailedRender> {
        let b = self.renders.get_mut(&id)?;
        if b.logged {
            return None;
        }
        b.logged = true;
        Some(b)
    }

    /// The modules known to fail for inputs `id`.
    pub fn failed_modules(&self, id: u64, now: u64) -> Vec<String> {
        self.modules
            .get(&id)
            .filter(|(until, _)| now < *until)
            .map(|(_, names)| names.clone())
            .unwrap_or_default()
    }

    /// Remembers that modules `names` fail for inputs `id`, until `until_ms`.
    pub fn note_modules(&mut self, id: u64, now: u64, until_ms: u64, names: Vec<String>) {
        if self.modules.len() >= CAP {
            self.modules.retain(|_, (until, _)| *until > now);
            if self.modules.len() >= CAP {
                self.modules.clear();
            }
        }
        self.modules.insert(id, (until_ms, names));
    }

    /// Whether this is the first time something about render `id` is noticed (what a page left
    /// out is logged once per set of inputs and location).
    pub fn first_notice(&mut self, id: u64) -> bool {
        if self.noticed.len() >= CAP {
            self.noticed.clear();
        }
        self.noticed.insert(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_render_is_known_until_its_ttl_and_logged_once() {
        let mut f = Failures::default();
        f.note_render(7, 100, 200, "version 1".into(), "boom".into());
        assert!(f.render_failed(7, 199));
        assert!(!f.render_failed(7, 200));
        assert!(!f.render_failed(8, 150));
        assert_eq!(
            f.unlogged_render(7).map(|b| b.cause.clone()),
            Some("boom".into())
        );
        assert!(f.unlogged_render(7).is_none());
        // A second failure within the TTL keeps the first cause.
        f.note_render(7, 150, 300, "version 1".into(), "other".into());
        assert!(!f.render_failed(7, 250));
    }

    #[test]
    fn failed_modules_expire_and_notices_are_first_once() {
        let mut f = Failures::default();
        f.note_modules(1, 0, 10, vec!["a".into()]);
        assert_eq!(f.failed_modules(1, 9), vec!["a".to_string()]);
        assert!(f.failed_modules(1, 10).is_empty());
        assert!(f.first_notice(5));
        assert!(!f.first_notice(5));
    }

    #[test]
    fn tables_stay_bounded() {
        let mut f = Failures::default();
        for id in 0..(CAP as u64 + 10) {
            f.note_render(id, 0, 1_000, String::new(), String::new());
            f.note_modules(id, 0, 1_000, Vec::new());
            f.first_notice(id);
        }
        assert!(f.renders.len() <= CAP);
        assert!(f.modules.len() <= CAP);
        assert!(f.noticed.len() <= CAP);
    }
}
