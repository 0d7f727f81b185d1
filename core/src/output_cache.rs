//! Rendered outputs kept per worker: a page's bytes, keyed by everything that determines them
//! (the output's ETag — the inputs' versions and content hashes, the `dynpage_var` values, the
//! modules left out — and the location), bounded in bytes, least recently used first out. A
//! changed input resolves to another ETag, so an output is never served for inputs it was not
//! rendered from; outputs of inputs no longer in force age out.

use std::collections::HashMap;
use std::sync::Arc;

/// One kept output. Shared: a response being sent holds a reference until it is done.
#[derive(Debug)]
pub struct Output {
    pub body: Box<[u8]>,
}

/// What an entry costs besides its bytes (the map slot, the list links, the `Arc`).
const ENTRY_OVERHEAD: usize = 96;

struct Slot {
    output: Arc<Output>,
    weight: usize,
    /// Recency: a higher tick was used later.
    tick: u64,
}

/// The outputs of one worker.
pub struct OutputCache {
    slots: HashMap<u64, Slot>,
    /// Tick → key, oldest first (ticks are unique).
    order: std::collections::BTreeMap<u64, u64>,
    tick: u64,
    used: usize,
    capacity: usize,
    evictions: u64,
    /// Outputs not kept because alone they exceed the bound.
    too_large: u64,
}

impl OutputCache {
    /// A cache of at most `capacity` bytes (0: keeps nothing).
    pub fn new(capacity: usize) -> OutputCache {
        OutputCache {
            slots: HashMap::new(),
            order: std::collections::BTreeMap::new(),
            tick: 0,
            used: 0,
            capacity,
            evictions: 0,
            too_large: 0,
        }
    }

    /// The output kept under `key`, marked used.
    pub fn get(&mut self, key: u64) -> Option<Arc<Output>> {
        let slot = self.slots.get_mut(&key)?;
        self.tick += 1;
        self.order.remove(&slot.tick);
        slot.tick = self.tick;
        self.order.insert(self.tick, key);
        Some(slot.output.clone())
    }

    /// Keeps a copy of `body` under `key`, evicting the least recently used outputs to stay
    /// within the bound; an output larger than the whole bound is not kept (counted).
    pub fn insert(&mut self, key: u64, body: &[u8]) -> Option<Arc<Output>> {
        let weight = body.len() + ENTRY_OVERHEAD;
        if weight > self.capacity {
            self.too_large += 1;
            return None;
        }
        self.remove(key);
        while self.used + weight > self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some(slot) = self.slots.remove(&oldest) {
                self.used -= slot.weight;
                self.evictions += 1;
            }
        }
        let output = Arc::new(Output { body: body.into() });
        self.tick += 1;
        self.order.insert(self.tick, key);
        self.used += weight;
        let slot = Slot {
            output: output.clone(),
            weight,
            tick: self.tick,
        };
        self.slots.insert(key, slot);
        Some(output)
    }

    fn remove(&mut self, key: u64) {
        if let Some(slot) = self.slots.remove(&key) {
            self.order.remove(&slot.tick);
            self.used -= slot.weight;
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Bytes held (bodies and per-entry overhead).
    pub fn used(&self) -> usize {
        self.used
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Outputs not kept because they alone exceed the bound.
    pub fn too_large(&self) -> u64 {
        self.too_large
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_and_returns_the_same_bytes() {
        let mut c = OutputCache::new(10_000);
        assert!(c.get(1).is_none());
        c.insert(1, b"hello");
        assert_eq!(
            &*c.get(1).map(|o| o.body.clone()).unwrap_or_default(),
            b"hello"
        );
        assert_eq!(c.used(), 5 + ENTRY_OVERHEAD);
        // Replacing a key does not count it twice.
        c.insert(1, b"hi");
        assert_eq!(c.used(), 2 + ENTRY_OVERHEAD);
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn evicts_the_least_recently_used_within_the_bound() {
        let body = [0u8; 1000];
        let mut c = OutputCache::new(3 * (1000 + ENTRY_OVERHEAD));
        c.insert(1, &body);
        c.insert(2, &body);
        c.insert(3, &body);
        assert!(c.get(1).is_some()); // 2 is now the oldest
        c.insert(4, &body);
        assert!(c.get(2).is_none());
        assert!(c.get(1).is_some() && c.get(3).is_some() && c.get(4).is_some());
        assert_eq!(c.evictions(), 1);
        assert!(c.used() <= c.capacity());
    }

    #[test]
    fn an_output_over_the_bound_is_not_kept_and_is_counted() {
        let mut c = OutputCache::new(500);
        assert!(c.insert(1, &[0u8; 1000]).is_none());
        assert_eq!((c.len(), c.too_large()), (0, 1));
        let off = OutputCache::new(0);
        assert_eq!(off.capacity(), 0);
    }

    #[test]
    fn a_held_output_outlives_its_eviction() {
        let mut c = OutputCache::new(2 * (10 + ENTRY_OVERHEAD));
        let held = c.insert(1, b"0123456789");
        c.insert(2, b"0123456789");
        c.insert(3, b"0123456789");
        assert!(c.get(1).is_none());
        assert_eq!(held.map(|o| o.body.len()), Some(10));
    }

    #[test]
    fn many_distinct_keys_stay_within_the_bound() {
        let mut c = OutputCache::new(100_000);
        for k in 0..100_000u64 {
            c.insert(k, &[1u8; 200]);
            assert!(c.used() <= c.capacity());
        }
        assert!(c.len() <= 100_000 / (200 + ENTRY_OVERHEAD));
    }
}
