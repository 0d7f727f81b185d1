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

/// What determines a page's production output, apart from the versions: the page key (page
/// mode) or the template name and URI (dimension mode), every dimension's data key, and every
/// `dynpage_var` value. Never 0.
pub fn identity<'a>(
    template: Option<&str>,
    key: &[u8],
    data_keys: impl IntoIterator<Item = &'a [u8]>,
    vars: impl IntoIterator<Item = &'a [u8]>,
) -> u64 {
    let mut h = Fnv::default();
    match template {
        Some(t) => h.write(b"T").write(t.as_bytes()).write(&[0]),
        None => h.write(b"P"),
    };
    h.write(key).write(&[0]);
    for k in data_keys {
        h.write(b"D").write(k).write(&[0]);
    }
    for v in vars {
        h.write(b"V").write(v).write(&[0]);
    }
    h.finish().max(1)
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

/// The oldest occupied slot of the whole table (what goes when memory runs out).
pub fn oldest(slots: &[Slot]) -> Option<usize> {
    (0..slots.len())
        .filter(|&i| slots[i].hash != 0)
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
    pub version: u64,
    pub last_modified_secs: Option<i64>,
    pub etag: [u8; 18],
    /// What `identity` hashed first (the page key or URI), to tell a collision apart.
    pub key: &'a [u8],
    pub body: &'a [u8],
}

const HEADER: usize = 8 + 8 + 1 + 18 + 4 + 4;

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
    fn identity_separates_modes_keys_dimensions_and_vars() {
        let none: [&[u8]; 0] = [];
        let a = identity(None, b"/a", none, none);
        assert_eq!(a, identity(None, b"/a", none, none));
        assert_ne!(a, identity(None, b"/b", none, none));
        assert_ne!(a, identity(Some("item"), b"/a", none, none));
        let d1 = identity(Some("item"), b"/p", [&b"item:1"[..]], none);
        let d2 = identity(Some("item"), b"/p", [&b"item:2"[..]], none);
        assert_ne!(d1, d2);
        let v1 = identity(None, b"/a", none, [&b"pc"[..]]);
        let v2 = identity(None, b"/a", none, [&b"mobile"[..]]);
        assert_ne!(v1, v2);
        // A data key is not a var with the same bytes.
        assert_ne!(
            identity(None, b"/a", [&b"x"[..]], none),
            identity(None, b"/a", none, [&b"x"[..]])
        );
        assert_ne!(a, 0);
    }

    #[test]
    fn blob_round_trip_and_refusals() {
        let s = Stored {
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
        assert_eq!(oldest(&slots), Some(10));
        // Windows wrap around the end; an empty table places nothing.
        assert_eq!(place(&vec![Slot::default(); 4], 7), Some(3));
        assert_eq!(place(&[], 7), None);
        assert_eq!(oldest(&[]), None);
    }
}
