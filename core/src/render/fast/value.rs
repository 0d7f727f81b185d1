//! The values a fast render looks at, never copied: upon's values and a document's by reference,
//! stand-ins for what upon would copy (a map key, the loop map and its members), and a loop's
//! current turn.

use upon::Value;

use crate::doc::DocRef;

use super::program::{LoopVars, Member};

/// Maps up to this size are searched linearly (the capacity of one std B-tree node).
const SMALL_MAP: usize = 11;

/// The keys of upon's loop map, in its (BTreeMap) order.
pub(super) static LOOP_KEYS: [&str; 3] = ["first", "index", "last"];

/// A value during rendering. upon copies some values (map keys, loop info) into owned values;
/// these variants stand for those copies without allocating. Three words, cheap to copy.
#[derive(Debug, Clone, Copy)]
pub(super) enum Val<'a> {
    Ref(&'a Value),
    /// A value of a document (a page's data).
    Doc(DocRef<'a>),
    /// A map key in a `k, v` loop, or a key of the loop map in `{% for k, v in loop %}`: a
    /// string.
    Str(&'a str),
    /// `loop.index`.
    Int(i64),
    /// `loop.first` / `loop.last`.
    Bool(bool),
    /// The bare `loop`: upon's map `{first, index, last}`.
    LoopMap {
        index: u32,
        len: u32,
    },
}

impl<'a> Val<'a> {
    /// Member `k` of a map (upon's key access); `None` where upon errors.
    #[inline(always)]
    pub(super) fn key(self, k: &str) -> Option<Val<'a>> {
        match self {
            // Scanning a small map, where most keys are told apart by length alone, beats `get`'s
            // ordered string comparisons (a `memcmp` call each); keys are unique, so it finds
            // the same entry.
            Val::Ref(Value::Map(map)) if map.len() <= SMALL_MAP => map
                .iter()
                .find(|(key, _)| key.as_str() == k)
                .map(|(_, v)| Val::Ref(v)),
            Val::Ref(Value::Map(map)) => map.get(k).map(Val::Ref),
            Val::Doc(d) => d.get(k).map(Val::Doc),
            Val::LoopMap { index, len } => match k {
                "index" => Some(Val::Int(i64::from(index))),
                "first" => Some(Val::Bool(index == 0)),
                "last" => Some(Val::Bool(index.checked_add(1) == Some(len))),
                _ => None,
            },
            _ => None,
        }
    }

    /// upon's `lookup` along direct members; `None` where upon errors.
    #[inline(always)]
    pub(super) fn members(mut self, rest: &[Member]) -> Option<Val<'a>> {
        for m in rest {
            self = match (m, self) {
                (Member::Key(k), _) => self.key(k)?,
                (Member::Index(i), Val::Ref(Value::List(list))) => Val::Ref(list.get(*i)?),
                (Member::Index(i), Val::Doc(d)) => Val::Doc(d.index(*i)?),
                (Member::Index(_), _) => return None,
            };
        }
        Some(self)
    }

    /// upon's `as_bool`.
    pub(super) fn truthy(self) -> bool {
        match self {
            Val::Ref(v) => match v {
                Value::None => false,
                Value::Bool(b) => *b,
                Value::Integer(n) => *n != 0,
                Value::Float(n) => *n != 0.0,
                Value::String(s) => !s.is_empty(),
                Value::List(l) => !l.is_empty(),
                Value::Map(m) => !m.is_empty(),
            },
            Val::Doc(d) => d.truthy(),
            Val::Str(s) => !s.is_empty(),
            Val::Int(n) => n != 0,
            Val::Bool(b) => b,
            Val::LoopMap { .. } => true,
        }
    }
}

/// The current iteration of a loop.
pub(super) struct LoopFrame<'a> {
    pub(super) vars: &'a LoopVars,
    pub(super) index: usize,
    pub(super) len: usize,
    pub(super) item: Val<'a>,
    /// The key in a `k, v` loop over a map.
    pub(super) key: &'a str,
    /// Set when looping over a loop map (`{% for k, v in loop %}`): `(index, len)` of that
    /// map; the key and item then come from it rather than from `key` and `item`.
    pub(super) over_loop_map: Option<(u32, u32)>,
}

/// `LoopFrame::key` in list loops, where it is never read.
pub(super) const NO_KEY: &str = "";

impl<'a> LoopFrame<'a> {
    #[inline(always)]
    pub(super) fn item(&self) -> Option<Val<'a>> {
        match self.over_loop_map {
            None => Some(self.item),
            Some((index, len)) => Val::LoopMap { index, len }.key(LOOP_KEYS.get(self.index)?),
        }
    }

    #[inline(always)]
    pub(super) fn key(&self) -> Option<Val<'a>> {
        match self.over_loop_map {
            None => Some(Val::Str(self.key)),
            Some(_) => LOOP_KEYS.get(self.index).map(|k| Val::Str(k)),
        }
    }

    /// The bare `loop` map.
    #[inline(always)]
    pub(super) fn meta(&self) -> Option<Val<'a>> {
        Some(Val::LoopMap {
            index: u32::try_from(self.index).ok()?,
            len: u32::try_from(self.len).ok()?,
        })
    }

    /// upon's `LoopState::lookup_var` for a first path segment: `loop` first, then the key,
    /// then the item. (The compiler's `Builder::resolve` mirrors this.)
    pub(super) fn lookup(&self, name: &str) -> Option<Val<'a>> {
        if name == "loop" {
            return self.meta();
        }
        match self.vars {
            LoopVars::Item(i) if **i == *name => self.item(),
            LoopVars::KeyValue(k, _) if **k == *name => self.key(),
            LoopVars::KeyValue(_, v) if **v == *name => self.item(),
            _ => None,
        }
    }
}
