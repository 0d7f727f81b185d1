//! The last good production output of each page, kept where a reload or a worker crash does not
//! lose it (the module's shared memory zone), so `dynpage_stale_ttl` still serves when a new
//! worker starts with an empty cache while every source is down.
//!
//! This file is the pure part: the identity of an output, the slot table's probing and victim
//! choice, and the byte layout of a stored output. The nginx edge (`src/zone.rs`) holds the
//! memory, the lock and the allocations.

use crate::version::Fnv;

/// How many slots a lookup or an insert looks at from the hashed position.
pub const PROBE: usize = 8;

/// One slot of the table (plain data, as laid out in shared memory).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Slot {
    /// The output's identity; 0 means empty.
    pub hash: u64,
    /// When it was stored (wall clock, ms).
    pub stored_ms: u64,
    /// Where its blob is (an address in the zone) and how long it is.
    pub blob: usize,
    pub blob_len: usize,
}

/// Which output a slot holds: `hash` places it in the table, `check` (an independent hash of
/// the same material) tells a collision of `hash` apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    pub hash: u64,
    pub check: u64,
}

/// What determines a page's production output, apart from the versions: the location's settings
/// that change an output (`location`, a fingerprint taken when the configuration is read), the
/// page key (page mode) or the template name and URI (dimension mode), every dimension's data
/// key, and every `dynpage_var` value. Each part is length-prefixed.
pub fn identity<'a>(
    location: u64,
    template: Option<&str>,
    key: &[u8],
    data_keys: impl IntoIterator<Item = &'a [u8]>,
    vars: impl IntoIterator<Item = &'a [u8]>,
) -> Identity {
    use std::hash::Hasher;
    let mut fnv = Fnv::default();
    let mut sip = std::hash::DefaultHasher::new();
    let mut part = |tag: u8, bytes: &[u8]| {
        let len = (bytes.len() as u64).to_le_bytes();
        fnv.write(&[tag]).write(&len).write(bytes);
        sip.write_u8(tag);
        sip.write(&len);
        sip.write(bytes);
    };
    part(b'L', &location.to_le_bytes());
    if let Some(t) = template {
        part(b'T', t.as_bytes());
    }
    part(b'K', key);
    for k in data_keys {
        part(b'D', k);
    }
    for v in vars {
        part(b'V', v);
    }
    Identity {
        hash: fnv.finish().max(1),
        check: sip.finish(),
    }
}

/// The slot holding `hash`, if any.
pub fn find(slots: &[Slot], hash: u64) -> Option<usize> {
    window(slots.len(), hash).find(|&i| slots[i].hash == hash)
}

/// Where to store `hash`: its own slot, else an empty one, else the oldest in its window.
pub fn place(slots: &[Slot], hash: u64) -> Option<usize> {
    if let Some(i) = find(slots, hash) {
        return Some(i);
    }
    if let Some(i) = window(slots.len(), hash).find(|&i| slots[i].hash == 0) {
        return Some(i);
    }
    window(slots.len(), hash).min_by_key(|&i| slots[i].stored_ms)
}

/// The oldest occupied slot of the whole table but `keep` (what goes when memory runs out
/// while `keep` is being written).
pub fn oldest(slots: &[Slot], keep: usize) -> Option<usize> {
    (0..slots.len())
        .filter(|&i| i != keep && slots[i].hash != 0)
        .min_by_key(|&i| slots[i].stored_ms)
}

fn window(len: usize, hash: u64) -> impl Iterator<Item = usize> {
    let start = if len == 0 {
        0
    } else {
        (hash % len as u64) as usize
    };
    (0..PROBE.min(len)).map(move |k| (start + k) % len)
}

/// What is kept with an output's bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored<'a> {
    /// `Identity::check` of the output.
    pub check: u64,
    pub version: u64,
    pub last_modified_secs: Option<i64>,
    pub etag: [u8; 18],
    /// The page key or URI, for log lines.
    pub key: &'a [u8],
    pub body: &'a [u8],
}

const HEADER: usize = 8 + 8 + 1 + 18 + 4 + 4 + 8;

impl<'a> Stored<'a> {
    /// The bytes `encode` writes.
    pub fn encoded_len(&self) -> usize {
        HEADER + self.key.len() + self.body.len()
    }

    /// Writes the blob into `out` (exactly `encoded_len` bytes); false if it does not fit.
    pub fn encode(&self, out: &mut [u8]) -> bool {
        let (Ok(key_len), Ok(body_len)) = (
            u32::try_from(self.key.len()),
            u32::try_from(self.body.len()),
        ) else {
            return false;
        };
        if out.len() != self.encoded_len() {
            return false;
        }
        let (head, rest) = out.split_at_mut(HEADER);
        head[0..8].copy_from_slice(&self.version.to_le_bytes());
        head[8..16].copy_from_slice(&self.last_modified_secs.unwrap_or(0).to_le_bytes());
        head[16] = u8::from(self.last_modified_secs.is_some());
        head[17..35].copy_from_slice(&self.etag);
        head[35..39].copy_from_slice(&key_len.to_le_bytes());
        head[39..43].copy_from_slice(&body_len.to_le_bytes());
        head[43..51].copy_from_slice(&self.check.to_le_bytes());
        rest[..self.key.len()].copy_from_slice(self.key);
        rest[self.key.len()..].copy_from_slice(self.body);
        true
    }

    /// Reads a blob back; `None` if it is not one `encode` wrote.
    pub fn decode(blob: &'a [u8]) -> Option<Stored<'a>> {
        let head = blob.get(..HEADER)?;
        let word = |at: usize| -> Option<[u8; 8]> { head.get(at..at + 8)?.try_into().ok() };
        let half = |at: usize| -> Option<usize> {
            let b: [u8; 4] = head.get(at..at + 4)?.try_into().ok()?;
            usize::try_from(u32::from_le_bytes(b)).ok()
        };
        let key_len = half(35)?;
        let body_len = half(39)?;
        let rest = &blob[HEADER..];
        if rest.len() != key_len.checked_add(body_len)? {
            return None;
        }
        let mut etag = [0u8; 18];
        etag.copy_from_slice(head.get(17..35)?);
        Some(Stored {
            check: u64::from_le_bytes(word(43)?),
            version: u64::from_le_bytes(word(0)?),
            last_modified_secs: (head[16] == 1)
                .then(|| i64::from_le_bytes(word(8).unwrap_or_default())),
            etag,
            key: &rest[..key_len],
            body: &rest[key_len..],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_separates_locations_modes_keys_dimensions_and_vars() {
        let none: [&[u8]; 0] = [];
        let id = |loc, t, k: &[u8], d: &[&[u8]], v: &[&[u8]]| {
            identity(loc, t, k, d.iter().copied(), v.iter().copied())
        };
        let a = identity(7, None, b"/a", none, none);
        assert_eq!(a, id(7, None, b"/a", &[], &[]));
        let others = [
            id(8, None, b"/a", &[], &[]),
            id(7, None, b"/b", &[], &[]),
            id(7, Some("item"), b"/a", &[], &[]),
            id(7, None, b"/a", &[b"x"], &[]),
            id(7, None, b"/a", &[], &[b"x"]),
            id(7, None, b"/a", &[b"x", b""], &[]),
            id(7, None, b"/a", &[b"", b"x"], &[]),
            id(7, None, b"/a", &[b"ab"], &[]),
            id(7, None, b"/a", &[b"a", b"b"], &[]),
        ];
        for (i, o) in others.iter().enumerate() {
            assert_ne!(a.hash, o.hash, "{i}");
            assert_ne!(a.check, o.check, "{i}");
            for p in &others[i + 1..] {
                assert_ne!(o.hash, p.hash);
            }
        }
        assert_ne!(a.hash, 0);
    }

    #[test]
    fn blob_round_trip_and_refusals() {
        let s = Stored {
            check: 0xfeed_beef,
            version: 1_700_000_000_000,
            last_modified_secs: Some(1_700_000_000),
            etag: *b"\"0123456789abcdef\"",
            key: b"/item/1.html",
            body: b"<html>ok</html>",
        };
        let mut buf = vec![0u8; s.encoded_len()];
        assert!(s.encode(&mut buf));
        assert_eq!(Stored::decode(&buf), Some(s.clone()));
        assert!(!s.encode(&mut vec![0u8; s.encoded_len() + 1]));
        assert_eq!(Stored::decode(&buf[..buf.len() - 1]), None);
        assert_eq!(Stored::decode(&buf[..10]), None);
        let empty = Stored {
            last_modified_secs: None,
            body: b"",
            ..s
        };
        let mut buf = vec![0u8; empty.encoded_len()];
        assert!(empty.encode(&mut buf));
        assert_eq!(Stored::decode(&buf), Some(empty));
    }

    #[test]
    fn placing_finds_own_then_empty_then_oldest_in_window() {
        let mut slots = vec![Slot::default(); 16];
        let h = 3u64; // window 3..11
        assert_eq!(place(&slots, h), Some(3));
        slots[3] = Slot {
            hash: 99,
            stored_ms: 5,
            ..Slot::default()
        };
        assert_eq!(place(&slots, h), Some(4));
        for (k, i) in (3..11).enumerate() {
            slots[i] = Slot {
                hash: 100 + i as u64,
                stored_ms: 50 - k as u64,
                ..Slot::default()
            };
        }
        assert_eq!(find(&slots, h), None);
        assert_eq!(place(&slots, h), Some(10), "the oldest of the window");
        slots[7].hash = h;
        assert_eq!(find(&slots, h), Some(7));
        assert_eq!(place(&slots, h), Some(7));
        assert_eq!(oldest(&slots, usize::MAX), Some(10));
        assert_eq!(oldest(&slots, 10), Some(9), "never the slot being written");
        // Windows wrap around the end; an empty table places nothing.
        assert_eq!(place(&[Slot::default(); 4], 7), Some(3));
        assert_eq!(place(&[], 7), None);
        assert_eq!(oldest(&[], 0), None);
    }
}
