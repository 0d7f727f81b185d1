//! A JSON document held for rendering in two blocks: its values in one array, its strings and
//! keys in one string. A page's data is read into this form once, on a fetch thread, and the
//! fast renderer reads it in place; upon's value tree (a block per string, a B-tree node per
//! map) is built from it only when upon renders.
//!
//! Parsing the benchmark's 13 KB product snapshot into upon's values took about 450 heap
//! blocks (68 KB); freeing them was as costly as making them. A document is read into blocks
//! each thread keeps for the next one, then copied out into two blocks of its size (21 KB).
//!
//! It reads JSON exactly as [`crate::json_value::parse_value`] does (numbers, the last of equal
//! keys, serde_json's nesting limit), and a map's members are in upon's order (sorted by key),
//! so a loop over a map visits them as upon would; `json_value`'s tests check both ways agree.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use upon::Value;

/// Maps up to this size are searched linearly (most keys are told apart by length alone); larger
/// ones by binary search over their sorted keys.
const SMALL_MAP: usize = 12;

/// One value. A container's members are consecutive slots of the document: a list's items; a
/// map's keys (each a `Str`) and values alternating, sorted by key, one per key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Slot {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// `len` bytes of the document's text from `at`.
    Str {
        at: u32,
        len: u32,
    },
    /// `len` items from slot `first`.
    List {
        first: u32,
        len: u32,
    },
    /// `len` entries (`2 * len` slots) from slot `first`.
    Map {
        first: u32,
        len: u32,
    },
}

/// A parsed JSON document.
#[derive(Debug, Clone, PartialEq)]
pub struct Doc {
    slots: Vec<Slot>,
    text: String,
    root: Slot,
}

/// A value inside a document: what the renderer holds while it looks at one. Two words.
#[derive(Debug, Clone, Copy)]
pub struct DocRef<'a> {
    doc: &'a Doc,
    slot: &'a Slot,
}

impl Doc {
    /// A document that is an empty map (a snapshot without `data`).
    pub fn empty_map() -> Doc {
        Doc {
            slots: Vec::new(),
            text: String::new(),
            root: Slot::Map { first: 0, len: 0 },
        }
    }

    /// Reads `bytes`, one JSON value.
    pub fn parse(bytes: &[u8]) -> Result<Doc, serde_json::Error> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let doc = DocSeed.deserialize(&mut de)?;
        de.end()?;
        Ok(doc)
    }

    /// The whole document.
    pub fn root(&self) -> DocRef<'_> {
        DocRef {
            doc: self,
            slot: &self.root,
        }
    }

    /// Whether the document is a map (what a snapshot's `data` must be).
    pub fn is_map(&self) -> bool {
        matches!(self.root, Slot::Map { .. })
    }

    /// Heap bytes held, each block with the allocator's overhead (see [`crate::weight`]).
    pub fn heap_bytes(&self) -> usize {
        crate::weight::bytes(self.slots.capacity() * std::mem::size_of::<Slot>())
            + crate::weight::bytes(self.text.capacity())
    }

    /// The document as an upon value (for upon, which renders from its own values).
    pub fn to_value(&self) -> Value {
        self.root().to_value()
    }

    fn str_at(&self, at: u32, len: u32) -> Option<&str> {
        let at = at as usize;
        self.text.get(at..at.checked_add(len as usize)?)
    }

    fn slots(&self, first: u32, n: usize) -> &[Slot] {
        let first = first as usize;
        first
            .checked_add(n)
            .and_then(|end| self.slots.get(first..end))
            .unwrap_or(&[])
    }
}

impl<'a> DocRef<'a> {
    pub fn slot(self) -> &'a Slot {
        self.slot
    }

    /// The string this is, if it is one.
    pub fn as_str(self) -> Option<&'a str> {
        match *self.slot {
            Slot::Str { at, len } => self.doc.str_at(at, len),
            _ => None,
        }
    }

    /// Member `key` of a map.
    #[inline]
    pub fn get(self, key: &str) -> Option<DocRef<'a>> {
        let Slot::Map { first, len } = *self.slot else {
            return None;
        };
        let entries = self.doc.slots(first, 2 * len as usize);
        let text = self.doc.text.as_bytes();
        let key_of = |i: usize| match entries.get(2 * i) {
            Some(&Slot::Str { at, len }) => {
                let at = at as usize;
                text.get(at..at + len as usize).unwrap_or(&[])
            }
            _ => &[],
        };
        let n = entries.len() / 2;
        let key = key.as_bytes();
        let found = if n <= SMALL_MAP {
            // The lengths first, from the slots: most keys differ in length.
            (0..n).find(|&i| match entries.get(2 * i) {
                Some(&Slot::Str { len, .. }) => len as usize == key.len() && key_of(i) == key,
                _ => false,
            })
        } else {
            let (mut lo, mut hi) = (0, n);
            let mut found = None;
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                match key_of(mid).cmp(key) {
                    Ordering::Less => lo = mid + 1,
                    Ordering::Greater => hi = mid,
                    Ordering::Equal => {
                        found = Some(mid);
                        break;
                    }
                }
            }
            found
        };
        let slot = entries.get(2 * found? + 1)?;
        Some(DocRef {
            doc: self.doc,
            slot,
        })
    }

    /// Item `i` of a list.
    #[inline]
    pub fn index(self, i: usize) -> Option<DocRef<'a>> {
        let Slot::List { first, len } = *self.slot else {
            return None;
        };
        let slot = self.doc.slots(first, len as usize).get(i)?;
        Some(DocRef {
            doc: self.doc,
            slot,
        })
    }

    /// A list's items (none if this is not a list).
    pub fn items(self) -> impl ExactSizeIterator<Item = DocRef<'a>> {
        let items = match *self.slot {
            Slot::List { first, len } => self.doc.slots(first, len as usize),
            _ => &[],
        };
        let doc = self.doc;
        items.iter().map(move |slot| DocRef { doc, slot })
    }

    /// A map's entries in key order (none if this is not a map).
    pub fn entries(self) -> impl ExactSizeIterator<Item = (&'a str, DocRef<'a>)> {
        let entries = match *self.slot {
            Slot::Map { first, len } => self.doc.slots(first, 2 * len as usize),
            _ => &[],
        };
        let doc = self.doc;
        entries.chunks_exact(2).map(move |pair| {
            let key = match pair.first() {
                Some(&Slot::Str { at, len }) => doc.str_at(at, len).unwrap_or(""),
                _ => "",
            };
            let slot = pair.get(1).unwrap_or(&Slot::Null);
            (key, DocRef { doc, slot })
        })
    }

    /// upon's `as_bool`.
    pub fn truthy(self) -> bool {
        match *self.slot {
            Slot::Null => false,
            Slot::Bool(b) => b,
            Slot::Int(n) => n != 0,
            Slot::Float(x) => x != 0.0,
            Slot::Str { len, .. } | Slot::List { len, .. } | Slot::Map { len, .. } => len != 0,
        }
    }

    /// This value as an upon value (a copy).
    pub fn to_value(self) -> Value {
        match *self.slot {
            Slot::Null => Value::None,
            Slot::Bool(b) => Value::Bool(b),
            Slot::Int(n) => Value::Integer(n),
            Slot::Float(x) => Value::Float(x),
            Slot::Str { .. } => Value::String(self.as_str().unwrap_or("").to_owned()),
            Slot::List { .. } => Value::List(self.items().map(DocRef::to_value).collect()),
            Slot::Map { .. } => Value::Map(
                self.entries()
                    .map(|(k, v)| (k.to_owned(), v.to_value()))
                    .collect::<BTreeMap<_, _>>(),
            ),
        }
    }
}

/// What a document is built in: its slots and text, and the members of the containers being
/// read, innermost last (a container's members move into `slots` together once it is read).
/// Filled by serde (below) or by [`crate::json_reader`].
#[derive(Default)]
pub(crate) struct Builder {
    slots: Vec<Slot>,
    text: String,
    items: Vec<Slot>,
    /// A map's members: key (offset, length) and value.
    members: Vec<(u32, u32, Slot)>,
}

fn too_large<E: de::Error>() -> E {
    E::custom("the document is too large")
}

impl Builder {
    /// Reads one document into the builder (emptied first) and copies it out at its size.
    fn read<'de, D: Deserializer<'de>>(&mut self, d: D) -> Result<Doc, D::Error> {
        self.clear();
        let root = ValueSeed(self).deserialize(d)?;
        Ok(self.finish(root))
    }

    /// Empties the builder for the next document (its blocks are kept).
    pub(crate) fn clear(&mut self) {
        self.slots.clear();
        self.text.clear();
        self.items.clear();
        self.members.clear();
    }

    /// The document read, whose value is `root`, copied out at its size.
    pub(crate) fn finish(&self, root: Slot) -> Doc {
        Doc {
            slots: self.slots.clone(),
            text: self.text.clone(),
            root,
        }
    }

    /// Where the next text goes (see [`Builder::text_since`]).
    pub(crate) fn text_len(&self) -> usize {
        self.text.len()
    }

    /// Appends `s` to the text.
    pub(crate) fn push_text(&mut self, s: &str) {
        self.text.push_str(s);
    }

    /// Appends `c` to the text.
    pub(crate) fn push_char(&mut self, c: char) {
        self.text.push(c);
    }

    /// The text appended since `at` (a [`Builder::text_len`]): offset and length, if they fit.
    pub(crate) fn text_since(&self, at: usize) -> Option<(u32, u32)> {
        let len = self.text.len().checked_sub(at)?;
        Some((u32::try_from(at).ok()?, u32::try_from(len).ok()?))
    }

    /// Where the items of the list being read start (see [`Builder::close_list`]).
    pub(crate) fn items_len(&self) -> usize {
        self.items.len()
    }

    pub(crate) fn push_item(&mut self, item: Slot) {
        self.items.push(item);
    }

    /// Where the members of the map being read start (see [`Builder::close_map`]).
    pub(crate) fn members_len(&self) -> usize {
        self.members.len()
    }

    /// A member of the map being read: its key (text offset and length) and value.
    pub(crate) fn push_member(&mut self, at: u32, len: u32, value: Slot) {
        self.members.push((at, len, value));
    }

    /// Lets go of the blocks if a large document grew them.
    fn release_if_large(&mut self) {
        let bytes = self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.text.capacity()
            + self.items.capacity() * std::mem::size_of::<Slot>()
            + self.members.capacity() * std::mem::size_of::<(u32, u32, Slot)>();
        if bytes > SCRATCH_KEPT_BYTES {
            *self = Builder::default();
        }
    }

    fn string<E: de::Error>(&mut self, s: &str) -> Result<(u32, u32), E> {
        let at = self.text.len();
        self.text.push_str(s);
        self.text_since(at).ok_or_else(too_large)
    }

    /// Moves `items[base..]` to the end of `slots`: a list's items, consecutive. `None` if the
    /// document is too large to count.
    pub(crate) fn close_list(&mut self, base: usize) -> Option<Slot> {
        let first = u32::try_from(self.slots.len()).ok()?;
        let len = u32::try_from(self.items.len().saturating_sub(base)).ok()?;
        self.slots.extend(self.items.drain(base..));
        Some(Slot::List { first, len })
    }

    /// Moves `members[base..]` to the end of `slots`, sorted by key, the last of equal keys
    /// kept (what collecting them into a `BTreeMap` keeps). `None` if the document is too
    /// large to count.
    pub(crate) fn close_map(&mut self, base: usize) -> Option<Slot> {
        let text = self.text.as_bytes();
        let key = |&(at, len, _): &(u32, u32, Slot)| {
            let at = at as usize;
            text.get(at..at + len as usize).unwrap_or(&[])
        };
        let members = self.members.get_mut(base..).unwrap_or(&mut []);
        // Stable: equal keys stay in the order they came, so the last of each run is the last.
        members.sort_by(|a, b| key(a).cmp(key(b)));
        let first = u32::try_from(self.slots.len()).ok()?;
        let mut len = 0u32;
        let mut i = 0;
        while let Some(m) = members.get(i) {
            let next_same = members.get(i + 1).is_some_and(|n| key(n) == key(m));
            if !next_same {
                self.slots.push(Slot::Str { at: m.0, len: m.1 });
                self.slots.push(m.2);
                len += 1;
            }
            i += 1;
        }
        self.members.truncate(base);
        Some(Slot::Map { first, len })
    }
}

/// Runs `read` with this thread's builder (its blocks kept from one document to the next, let
/// go of when a large document grew them).
pub(crate) fn with_scratch<R>(read: impl FnOnce(&mut Builder) -> R) -> R {
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut b) => {
            let r = read(&mut b);
            b.release_if_large();
            r
        }
        // Not reached (a document is never read inside another); read apart if it is.
        Err(_) => read(&mut Builder::default()),
    })
}

/// Reads a whole document (also one inside a larger JSON text: a snapshot's `data`).
pub(crate) struct DocSeed;

impl<'de> DeserializeSeed<'de> for DocSeed {
    type Value = Doc;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Doc, D::Error> {
        // Read into the thread's builder, whose blocks are kept from one document to the next,
        // then copied out at their size: two blocks allocated per document, none grown.
        with_scratch(|b| b.read(d))
    }
}

/// Builders above this many bytes (a large snapshot's) are not kept for the next document.
const SCRATCH_KEPT_BYTES: usize = 256 * 1024;

thread_local! {
    /// Each fetch thread's builder.
    static SCRATCH: RefCell<Builder> = RefCell::new(Builder::default());
}

/// Reads one value into the builder, returning its slot.
struct ValueSeed<'b>(&'b mut Builder);

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Slot;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Slot, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Slot;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Slot, E> {
        Ok(Slot::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Slot, E> {
        Ok(Slot::Int(n))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Slot, E> {
        // As `json_to_value`: an integer while it fits an i64, else the nearest float.
        Ok(i64::try_from(n).map_or(Slot::Float(n as f64), Slot::Int))
    }

    fn visit_f64<E>(self, x: f64) -> Result<Slot, E> {
        Ok(Slot::Float(x))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Slot, E> {
        let (at, len) = self.0.string(s)?;
        Ok(Slot::Str { at, len })
    }

    fn visit_unit<E>(self) -> Result<Slot, E> {
        Ok(Slot::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Slot, A::Error> {
        let b = self.0;
        let base = b.items.len();
        while let Some(item) = seq.next_element_seed(ValueSeed(&mut *b))? {
            b.items.push(item);
        }
        b.close_list(base).ok_or_else(too_large)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Slot, A::Error> {
        let b = self.0;
        let base = b.members.len();
        while let Some((at, len)) = map.next_key_seed(KeySeed(&mut *b))? {
            let value = map.next_value_seed(ValueSeed(&mut *b))?;
            b.members.push((at, len, value));
        }
        b.close_map(base).ok_or_else(too_large)
    }
}

/// Reads a map's key into the builder's text.
struct KeySeed<'b>(&'b mut Builder);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = (u32, u32);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(u32, u32), D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = (u32, u32);

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<(u32, u32), E> {
        self.0.string(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_find_what_upon_maps_hold() {
        let mut text = String::from("{");
        for i in (0..40).rev() {
            text.push_str(&format!("\"k{i}\":{i},"));
        }
        text.push_str("\"k7\":\"last\",\"list\":[10,[20,30]]}");
        let doc = Doc::parse(text.as_bytes()).expect("JSON");
        let Value::Map(upon) = doc.to_value() else {
            panic!("a map")
        };
        let root = doc.root();
        for (k, v) in &upon {
            let got = root.get(k).map(DocRef::to_value);
            assert_eq!(got.as_ref(), Some(v), "{k}");
        }
        assert!(root.get("k40").is_none() && root.get("").is_none());
        let keys: Vec<&str> = root.entries().map(|(k, _)| k).collect();
        let upon_keys: Vec<&str> = upon.keys().map(String::as_str).collect();
        assert_eq!(keys, upon_keys);
        let list = root.get("list").expect("list");
        assert_eq!(
            list.index(1).and_then(|l| l.index(0)).map(|v| *v.slot()),
            Some(Slot::Int(20))
        );
        assert!(list.index(2).is_none() && root.index(0).is_none());
        let small = Doc::parse(br#"{"b":1,"a":2}"#).expect("JSON");
        assert_eq!(small.root().get("a").map(|v| *v.slot()), Some(Slot::Int(2)));
    }

    #[test]
    fn a_document_is_two_blocks_sized_to_what_it_holds() {
        let text = include_str!("../tests/fixtures/product.json");
        let doc = Doc::parse(text.as_bytes()).expect("JSON");
        assert_eq!(doc.slots.len(), doc.slots.capacity());
        assert_eq!(doc.text.len(), doc.text.capacity());
        assert!(doc.heap_bytes() < 2 * text.len(), "{}", doc.heap_bytes());
    }

    #[test]
    fn the_threads_builder_is_bounded_and_reused_after_a_failure() {
        let big = format!("{{\"s\":\"{}\"}}", "x".repeat(SCRATCH_KEPT_BYTES));
        let doc = Doc::parse(big.as_bytes()).expect("JSON");
        let s = doc.root().get("s").and_then(DocRef::as_str).map(str::len);
        assert_eq!(s, Some(SCRATCH_KEPT_BYTES));
        let kept = SCRATCH.with(|b| b.borrow().text.capacity());
        assert!(kept < SCRATCH_KEPT_BYTES, "{kept} bytes kept");
        assert!(Doc::parse(br#"{"a":[1,{"b":"#).is_err());
        let doc = Doc::parse(br#"{"z":[true],"a":"x"}"#).expect("JSON");
        assert_eq!(doc.to_value(), {
            let mut m = BTreeMap::new();
            m.insert("a".to_string(), Value::String("x".into()));
            m.insert("z".to_string(), Value::List(vec![Value::Bool(true)]));
            Value::Map(m)
        });
    }
}
