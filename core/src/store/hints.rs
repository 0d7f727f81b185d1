//! [`VersionHints`]: which production version of a document this worker last read, within the
//! limits, kept after the document itself has left the cache. A cold document whose hint is
//! known is read with plain commands in one round trip (its field names, rollback and gray
//! entries, and the hinted version's value, see [`super::fetch_batch_scripted`]) instead of
//! through the read script, which costs Redis ten times as much CPU for the same answer.
//!
//! A hint is only a guess: what is served is chosen again from the meta read with it, and a
//! wrong one costs a second round trip. A production version never changes once written, so a
//! value read within the limits once is within them again; a value rewritten since (against
//! the layout's rules) that has grown over them fails as its item, like any value that grows
//! between a size and a read.
//!
//! One fixed table of 64-bit slots per worker, shared by its fetch threads without a lock
//! (each slot is one atomic word), direct-mapped by a hash of the document's key: a document
//! whose slot another took is read through the script again. Its bytes are counted in
//! `dynpage_cache_size`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::version::Fnv;

/// The part of `dynpage_cache_size` (`cache_size` bytes) the hints take: a sixteenth (at 2m,
/// 16,384 documents, far more than the cache holds whole), 8 MB at most.
pub fn hint_bytes(cache_size: usize) -> usize {
    (cache_size / 16).min(8 << 20)
}

/// Bits of a slot that hold the version: every version the layout allows fits.
const VERSION_BITS: u32 = 48;
const VERSION_MASK: u64 = (1 << VERSION_BITS) - 1;
/// The slot's document's gray share was over 0 when it was read (its reads go through the
/// script, which brings the gray version's value with the meta).
const GRAY: u64 = 1 << VERSION_BITS;
/// Bits above: a tag of the document's key hash, never 0 (an empty slot is 0).
const TAG_SHIFT: u32 = VERSION_BITS + 1;

/// What the table says about one document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hint {
    pub version: u64,
    /// Its gray share was over 0.
    pub gray: bool,
}

/// The table (see the module's documentation).
#[derive(Debug)]
pub struct VersionHints {
    slots: Box<[AtomicU64]>,
}

impl VersionHints {
    /// A table of at most `bytes` (a power of two number of slots, at least one).
    pub fn within(bytes: usize) -> VersionHints {
        let most = (bytes / std::mem::size_of::<AtomicU64>()).max(1);
        let count = if most.is_power_of_two() {
            most
        } else {
            most.next_power_of_two() / 2
        };
        VersionHints {
            slots: (0..count).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The bytes it holds.
    pub fn bytes(&self) -> usize {
        std::mem::size_of_val(&*self.slots)
    }

    /// The hint for the document stored at `key`, if its slot holds one.
    pub fn get(&self, key: &[u8]) -> Option<Hint> {
        let (slot, tag) = self.place(key);
        let word = slot.load(Relaxed);
        (word >> TAG_SHIFT == tag).then_some(Hint {
            version: word & VERSION_MASK,
            gray: word & GRAY != 0,
        })
    }

    /// `hint` is now the document's (it takes the slot of whichever document held it).
    pub fn put(&self, key: &[u8], hint: Hint) {
        if hint.version > VERSION_MASK {
            return self.forget(key);
        }
        let (slot, tag) = self.place(key);
        let gray = if hint.gray { GRAY } else { 0 };
        slot.store(tag << TAG_SHIFT | gray | hint.version, Relaxed);
    }

    /// The document has no hint any more (its slot is left alone if another holds it).
    pub fn forget(&self, key: &[u8]) {
        let (slot, tag) = self.place(key);
        let word = slot.load(Relaxed);
        if word >> TAG_SHIFT == tag {
            // Lost to a racing `put` at worst: a hint is a guess either way.
            let _ = slot.compare_exchange(word, 0, Relaxed, Relaxed);
        }
    }

    fn place(&self, key: &[u8]) -> (&AtomicU64, u64) {
        // FNV-1a: keys are short, and the table needs spread, not resistance to an adversary
        // (a collision costs a script call).
        let hash = Fnv::default().write(key).finish();
        let hash = hash ^ (hash >> 29);
        let index = (hash as usize) & (self.slots.len() - 1);
        let tag = (hash >> TAG_SHIFT) | 1;
        (&self.slots[index], tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::MAX_VERSION;

    #[test]
    fn a_hint_comes_back_for_its_document_only() {
        let hints = VersionHints::within(64 * 1024);
        assert_eq!(hints.bytes(), 64 * 1024);
        let hint = Hint {
            version: MAX_VERSION,
            gray: true,
        };
        hints.put(b"dynpage:page:/a", hint);
        assert_eq!(hints.get(b"dynpage:page:/a"), Some(hint));
        assert_eq!(hints.get(b"dynpage:page:/b"), None);
        hints.forget(b"dynpage:page:/a");
        assert_eq!(hints.get(b"dynpage:page:/a"), None);
    }

    #[test]
    fn version_zero_is_a_hint_and_an_empty_slot_is_none() {
        let hints = VersionHints::within(8);
        assert_eq!(hints.get(b"k"), None);
        let zero = Hint {
            version: 0,
            gray: false,
        };
        hints.put(b"k", zero);
        assert_eq!(hints.get(b"k"), Some(zero));
    }

    #[test]
    fn one_slot_holds_the_last_document_put() {
        let hints = VersionHints::within(8);
        let one = |version| Hint {
            version,
            gray: false,
        };
        hints.put(b"a", one(1));
        hints.put(b"b", one(2));
        assert_eq!(hints.get(b"b"), Some(one(2)));
        // `a`'s tag differs from `b`'s (or the two keys would be one document to the table).
        assert_eq!(hints.get(b"a"), None);
        // Forgetting `a` leaves `b`'s hint.
        hints.forget(b"a");
        assert_eq!(hints.get(b"b"), Some(one(2)));
    }

    #[test]
    fn the_table_stays_within_its_bytes() {
        for bytes in [0, 7, 8, 9, 100, 4096, 5000] {
            let hints = VersionHints::within(bytes);
            assert!(hints.bytes() <= bytes.max(8), "{bytes}: {}", hints.bytes());
            assert!(hints.bytes() * 2 > bytes, "{bytes}: {}", hints.bytes());
        }
    }
}
