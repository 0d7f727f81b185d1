//! Rendered outputs kept per worker: a page's bytes, keyed by everything that determines them
//! (the output's ETag — the inputs' versions and content hashes, the `dynpage_var` values, the
//! modules left out — and the location), bounded in bytes. A changed input resolves to another
//! ETag, so an output is never served for inputs it was not rendered from; outputs of inputs no
//! longer in force age out.
//!
//! Which output goes when room is needed: a segmented LRU. A new output is kept on probation
//! (the least recently used of those goes first); one asked for again is protected, in a part
//! of up to [`PROTECTED_SHARE`] of the bound, whose least recently used go back on probation.
//! So a long tail of pages asked for once does not push out the pages asked for again and
//! again, as it would in one LRU list (a Zipf tail of 20,000 pages at 2m: 40 % of requests hit
//! with one list, 51 % with two).
//!
//! With `dynpage_gzip` (`dynpage_brotli`), an output is compressed once, by the first request
//! that takes that coding, and the compressed bytes are kept beside the identity bytes in the
//! same slot, weighed into the same bound: no hit compresses.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use crate::coding::Coding;

/// One kept output. Shared: a response being sent holds a reference until it is done.
#[derive(Debug)]
pub struct Output {
    pub body: Box<[u8]>,
    /// Set once each, by [`OutputCache::compress`]; never changed after.
    gzip: OnceLock<Encoded>,
    br: OnceLock<Encoded>,
}

/// What compressing an output into one coding gave.
#[derive(Debug)]
enum Encoded {
    /// The compressed bytes, kept.
    Kept(Box<[u8]>),
    /// The identity bytes serve the clients that take this coding: the compressed bytes were
    /// not smaller, or did not fit within the bound beside the output.
    Identity,
}

impl Output {
    fn new(body: &[u8]) -> Output {
        Output {
            body: body.into(),
            gzip: OnceLock::new(),
            br: OnceLock::new(),
        }
    }

    fn slot(&self, coding: Coding) -> &OnceLock<Encoded> {
        match coding {
            Coding::Gzip => &self.gzip,
            Coding::Br => &self.br,
        }
    }

    /// The bytes in `coding`, once compressed and kept.
    pub fn encoded(&self, coding: Coding) -> Option<&[u8]> {
        match self.slot(coding).get() {
            Some(Encoded::Kept(bytes)) => Some(bytes),
            _ => None,
        }
    }

    /// Whether compressing into `coding` was done (kept or not).
    pub fn compressed(&self, coding: Coding) -> bool {
        self.slot(coding).get().is_some()
    }

    /// The gzip bytes, once compressed and kept.
    pub fn gzip(&self) -> Option<&[u8]> {
        self.encoded(Coding::Gzip)
    }
}

/// One compression, for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compressed {
    pub coding: Coding,
    pub bytes: usize,
    pub encoded_bytes: usize,
    /// Why the compressed bytes are not served, if they are not.
    pub unused: Option<Unused>,
}

/// Why an output's compressed bytes are not kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unused {
    /// They are not smaller than the identity bytes.
    NotSmaller,
    /// Beside the output's other bytes, they exceed the whole bound.
    TooLarge,
}

/// What an entry costs besides its bytes (the map slot, the list links, the `Arc`).
const ENTRY_OVERHEAD: usize = 96;

/// The most of the bound that outputs asked for more than once hold (see the module's
/// comment), in fifths.
pub const PROTECTED_SHARE: (usize, usize) = (4, 5);

/// The two parts of the cache: new outputs, and those asked for again.
const PROBATION: usize = 0;
const PROTECTED: usize = 1;

struct Slot {
    output: Arc<Output>,
    weight: usize,
    /// Recency: a higher tick was used later.
    tick: u64,
    /// [`PROBATION`] or [`PROTECTED`].
    part: usize,
}

/// The outputs of one worker.
pub struct OutputCache {
    /// Keys are keyed hashes already; a fast seeded hasher mixes them.
    slots: HashMap<u64, Slot, crate::lru::Seeded>,
    /// Per part: tick → key, oldest first (ticks are unique).
    order: [std::collections::BTreeMap<u64, u64>; 2],
    /// Per part: the weights it holds.
    part_used: [usize; 2],
    tick: u64,
    used: usize,
    capacity: usize,
    evictions: u64,
    /// The weight of every output dropped (evicted, replaced), in all (see
    /// [`crate::memory_release`]).
    let_go: u64,
    /// Outputs not kept because alone they exceed the bound.
    too_large: u64,
}

impl OutputCache {
    /// A cache of at most `capacity` bytes (0: keeps nothing).
    pub fn new(capacity: usize) -> OutputCache {
        OutputCache {
            slots: HashMap::default(),
            order: Default::default(),
            part_used: [0; 2],
            tick: 0,
            used: 0,
            capacity,
            evictions: 0,
            let_go: 0,
            too_large: 0,
        }
    }

    /// The output kept under `key`, marked used (and protected, if it was on probation).
    pub fn get(&mut self, key: u64) -> Option<Arc<Output>> {
        self.get_protecting(key).map(|(output, _)| output)
    }

    /// [`OutputCache::get`], and whether this use protected the output (it was on probation:
    /// its first use since it was kept, or since it was moved back).
    pub fn get_protecting(&mut self, key: u64) -> Option<(Arc<Output>, bool)> {
        let slot = self.slots.get_mut(&key)?;
        let output = slot.output.clone();
        let from = slot.part;
        let (tick, weight) = (slot.tick, slot.weight);
        self.tick += 1;
        slot.tick = self.tick;
        slot.part = PROTECTED;
        self.order[from].remove(&tick);
        self.order[PROTECTED].insert(self.tick, key);
        if from == PROBATION {
            self.part_used[PROBATION] -= weight;
            self.part_used[PROTECTED] += weight;
            self.demote_over_share();
        }
        Some((output, from == PROBATION))
    }

    /// Moves the least recently used protected outputs back on probation (as its most recently
    /// used) while the protected part holds more than its share; the most recently used one
    /// stays, whatever its weight.
    fn demote_over_share(&mut self) {
        let share = self.capacity / PROTECTED_SHARE.1 * PROTECTED_SHARE.0;
        while self.part_used[PROTECTED] > share && self.order[PROTECTED].len() > 1 {
            let Some((_, key)) = self.order[PROTECTED].pop_first() else {
                break;
            };
            let Some(slot) = self.slots.get_mut(&key) else {
                continue;
            };
            self.tick += 1;
            slot.tick = self.tick;
            slot.part = PROBATION;
            self.part_used[PROTECTED] -= slot.weight;
            self.part_used[PROBATION] += slot.weight;
            self.order[PROBATION].insert(self.tick, key);
        }
    }

    /// Drops the output that goes first when room is needed (the least recently used on
    /// probation, else protected), other than `keep`; whether one was dropped.
    fn evict_one(&mut self, keep: Option<u64>) -> bool {
        for part in [PROBATION, PROTECTED] {
            let victim = self.order[part]
                .iter()
                .find(|(_, &key)| Some(key) != keep)
                .map(|(&tick, &key)| (tick, key));
            if let Some((tick, key)) = victim {
                self.order[part].remove(&tick);
                self.drop_slot(key);
                return true;
            }
        }
        false
    }

    /// Forgets `key`'s slot, whose order entry is gone already, counting an eviction.
    fn drop_slot(&mut self, key: u64) {
        if let Some(slot) = self.slots.remove(&key) {
            self.used -= slot.weight;
            self.part_used[slot.part] -= slot.weight;
            self.let_go += slot.weight as u64;
            self.evictions += 1;
        }
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
            if !self.evict_one(None) {
                break;
            }
        }
        let output = Arc::new(Output::new(body));
        self.tick += 1;
        self.order[PROBATION].insert(self.tick, key);
        self.used += weight;
        self.part_used[PROBATION] += weight;
        let slot = Slot {
            output: output.clone(),
            weight,
            tick: self.tick,
            part: PROBATION,
        };
        self.slots.insert(key, slot);
        Some(output)
    }

    /// Compresses the output kept under `key` into `coding` at `level` unless that was done
    /// already (then `None`): the compressed bytes are kept beside it, their weight added to
    /// its own, evicting the least recently used other outputs to stay within the bound. Bytes
    /// that are not smaller, or that do not fit beside the output within the whole bound, are
    /// not kept: the output then serves identity to the clients of that coding, and is not
    /// compressed into it again.
    pub fn compress(&mut self, key: u64, coding: Coding, level: u32) -> Option<Compressed> {
        let slot = self.slots.get(&key)?;
        if slot.output.compressed(coding) {
            return None;
        }
        let output = slot.output.clone();
        let weight = slot.weight;
        let gz = coding.compress(&output.body, level);
        let mut done = Compressed {
            coding,
            bytes: output.body.len(),
            encoded_bytes: gz.len(),
            unused: None,
        };
        if gz.len() >= output.body.len() {
            done.unused = Some(Unused::NotSmaller);
        } else if weight + gz.len() > self.capacity {
            done.unused = Some(Unused::TooLarge);
            self.too_large += 1;
        }
        if done.unused.is_some() {
            let _ = output.slot(coding).set(Encoded::Identity);
            return Some(done);
        }
        while self.used + gz.len() > self.capacity {
            // Another output makes room (this one was just used).
            if !self.evict_one(Some(key)) {
                break;
            }
        }
        self.used += gz.len();
        if let Some(slot) = self.slots.get_mut(&key) {
            slot.weight += gz.len();
            self.part_used[slot.part] += gz.len();
        }
        let _ = output
            .slot(coding)
            .set(Encoded::Kept(gz.into_boxed_slice()));
        Some(done)
    }

    fn remove(&mut self, key: u64) {
        if let Some(slot) = self.slots.remove(&key) {
            self.order[slot.part].remove(&slot.tick);
            self.used -= slot.weight;
            self.part_used[slot.part] -= slot.weight;
            self.let_go += slot.weight as u64;
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

    /// Bytes let go of in all (see [`crate::memory_release`]).
    pub fn let_go(&self) -> u64 {
        self.let_go
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
        assert_eq!(c.let_go(), (1000 + ENTRY_OVERHEAD) as u64);
        c.insert(4, &body[..10]); // replaced
        assert_eq!(c.let_go(), 2 * (1000 + ENTRY_OVERHEAD) as u64);
    }

    #[test]
    fn outputs_asked_for_again_outlive_a_long_tail_asked_for_once() {
        let body = [0u8; 1000];
        let one = 1000 + ENTRY_OVERHEAD;
        let mut c = OutputCache::new(10 * one);
        for k in 1..=3 {
            c.insert(k, &body);
            assert!(c.get(k).is_some());
        }
        // Thirty pages asked for once, each newer than the three: one LRU list would have
        // dropped the three after seven of them.
        for k in 100..130 {
            c.insert(k, &body);
        }
        assert!((1..=3).all(|k| c.get(k).is_some()));
        assert_eq!(c.len(), 10);
        assert!(c.used() <= c.capacity());
    }

    #[test]
    fn the_use_that_protects_an_output_is_told() {
        let mut c = OutputCache::new(10_000);
        c.insert(1, b"page");
        assert_eq!(c.get_protecting(1).map(|(_, now)| now), Some(true));
        assert_eq!(c.get_protecting(1).map(|(_, now)| now), Some(false));
        assert!(c.get_protecting(2).is_none());
    }

    #[test]
    fn the_protected_part_holds_at_most_its_share_and_gives_back_its_oldest() {
        let body = [0u8; 1000];
        let one = 1000 + ENTRY_OVERHEAD;
        let mut c = OutputCache::new(10 * one);
        for k in 1..=10 {
            c.insert(k, &body);
            assert!(c.get(k).is_some());
        }
        // Eight fit in four fifths; 1 and 2, the oldest, went back on probation.
        assert_eq!(c.part_used, [2 * one, 8 * one]);
        assert_eq!(c.slots[&1].part, PROBATION);
        assert_eq!(c.slots[&10].part, PROTECTED);
        // A new output makes room on probation first.
        c.insert(11, &body);
        assert!(c.get(1).is_none());
        assert!((2..=11).all(|k| c.slots.contains_key(&k)));
        assert_eq!(c.part_used.iter().sum::<usize>(), c.used());
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

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Read;
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map(|_| out)
            .unwrap_or_default()
    }

    fn page(n: usize) -> Vec<u8> {
        (0..n).map(|i| b"<li>item</li>\n"[i % 14]).collect()
    }

    #[test]
    fn an_output_is_compressed_once_and_weighed_in_the_bound() {
        let body = page(10_000);
        let mut c = OutputCache::new(100_000);
        let kept = c.insert(1, &body);
        assert!(kept.as_ref().and_then(|o| o.gzip()).is_none());
        let done = c.compress(1, Coding::Gzip, 6);
        let gz_len = done.map_or(0, |d| d.encoded_bytes);
        assert_eq!(
            done,
            Some(Compressed {
                coding: Coding::Gzip,
                bytes: 10_000,
                encoded_bytes: gz_len,
                unused: None
            })
        );
        assert!(gz_len > 0 && gz_len < 1000);
        assert_eq!(c.used(), 10_000 + gz_len + ENTRY_OVERHEAD);
        // Not again: the first compression holds, for the output already held too.
        assert_eq!(c.compress(1, Coding::Gzip, 6), None);
        let gz = kept.as_ref().and_then(|o| o.gzip()).unwrap_or_default();
        assert_eq!(gunzip(gz), body);
        let again = c.get(1).and_then(|o| o.gzip().map(|g| g.as_ptr()));
        assert_eq!(again, Some(gz.as_ptr()), "the same bytes, not a copy");
        // Replacing the output drops its gzip bytes' weight too.
        c.insert(1, b"other");
        assert_eq!(c.used(), 5 + ENTRY_OVERHEAD);
        assert!(c.get(1).is_some_and(|o| o.gzip().is_none()));
        assert_eq!(c.compress(7, Coding::Gzip, 6), None, "nothing kept under 7");
    }

    #[test]
    fn gzip_bytes_that_are_not_smaller_or_do_not_fit_are_not_kept() {
        let mut c = OutputCache::new(100_000);
        c.insert(1, b"hi");
        let done = c.compress(1, Coding::Gzip, 6);
        assert_eq!(done.and_then(|d| d.unused), Some(Unused::NotSmaller));
        assert!(c.get(1).is_some_and(|o| o.gzip().is_none()));
        assert_eq!(c.used(), 2 + ENTRY_OVERHEAD);
        assert_eq!(c.compress(1, Coding::Gzip, 6), None, "not compressed again");

        let body = page(10_000);
        let mut tight = OutputCache::new(10_000 + ENTRY_OVERHEAD + 10);
        tight.insert(1, &body);
        let done = tight.compress(1, Coding::Gzip, 6);
        assert_eq!(done.and_then(|d| d.unused), Some(Unused::TooLarge));
        assert!(tight.get(1).is_some_and(|o| o.gzip().is_none()));
        assert_eq!(tight.used(), 10_000 + ENTRY_OVERHEAD);
        assert_eq!(
            tight.compress(1, Coding::Gzip, 6),
            None,
            "not compressed again"
        );
    }

    /// Bytes that compress to about three quarters.
    fn noisy(n: usize) -> Vec<u8> {
        let mut x = 1u32;
        (0..n)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                b"abcdefghijklmnopqrstuvwxyz012345"[(x >> 16) as usize % 32]
            })
            .collect()
    }

    #[test]
    fn compressing_evicts_the_least_recently_used_others() {
        let body = noisy(10_000);
        let one = 10_000 + ENTRY_OVERHEAD;
        let mut c = OutputCache::new(3 * one + 100);
        c.insert(1, &body);
        c.insert(2, &body);
        c.insert(3, &body);
        assert!(c.get(3).is_some());
        let done = c.compress(3, Coding::Gzip, 9);
        assert!(done.is_some_and(|d| d.unused.is_none() && d.encoded_bytes > 5000));
        assert!(c.get(1).is_none(), "the oldest made room");
        assert!(c.get(2).is_some() && c.get(3).is_some_and(|o| o.gzip().is_some()));
        assert!(c.used() <= c.capacity());
        assert_eq!(c.evictions(), 1);
    }

    #[test]
    fn an_empty_body_is_not_worth_compressing() {
        let mut c = OutputCache::new(1000);
        c.insert(1, b"");
        for coding in [Coding::Gzip, Coding::Br] {
            let done = c.compress(1, coding, 6);
            assert_eq!(done.and_then(|d| d.unused), Some(Unused::NotSmaller));
        }
    }

    fn unbrotli(bytes: &[u8]) -> Vec<u8> {
        use std::io::Read;
        let mut out = Vec::new();
        brotli::Decompressor::new(bytes, 4096)
            .read_to_end(&mut out)
            .map(|_| out)
            .unwrap_or_default()
    }

    #[test]
    fn gzip_and_brotli_bytes_are_kept_side_by_side_each_once() {
        let body = page(10_000);
        let mut c = OutputCache::new(100_000);
        let kept = c.insert(1, &body);
        let gz = c
            .compress(1, Coding::Gzip, 6)
            .map_or(0, |d| d.encoded_bytes);
        let br = c.compress(1, Coding::Br, 6).map_or(0, |d| d.encoded_bytes);
        assert!(gz > 0 && br > 0);
        assert_eq!(c.used(), 10_000 + gz + br + ENTRY_OVERHEAD);
        assert_eq!(c.compress(1, Coding::Br, 6), None);
        let o = kept.as_deref();
        assert_eq!(
            o.and_then(|o| o.encoded(Coding::Br)).map(unbrotli),
            Some(body.clone())
        );
        assert_eq!(o.and_then(|o| o.gzip()).map(gunzip), Some(body));
    }
}
