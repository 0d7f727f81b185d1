//! A bounded least-recently-used map from string keys to values, weighed in bytes.
//!
//! Lookups take `&str`, so a caller can probe with a reused buffer and allocate nothing.
//! An entry may belong to a group (for the worker cache: the document or data key it came
//! from), so that what one event invalidates is found in O(the group), not O(the cache).
//!
//! An entry is either private to few users (a page's snapshot) or shared by many (a template
//! every product page renders with): shared entries are kept in an LRU list of their own, up to
//! a quarter of the capacity, so a long tail of private entries does not evict what every page
//! needs (which would cost each cold page another round trip).

use std::collections::{HashMap, HashSet};
use std::mem::size_of;

use crate::weight::block;

/// The hasher of maps on the request path: keys come from requests (page keys), so it is
/// seeded per process, as SipHash is, but several times faster on short keys.
pub type Seeded = foldhash::fast::RandomState;

const NIL: usize = usize::MAX;

struct Node<V> {
    key: Box<str>,
    group: Option<Box<str>>,
    value: V,
    weight: usize,
    /// Its list: [`PRIVATE`] or [`SHARED`].
    list: usize,
    prev: usize,
    next: usize,
}

const PRIVATE: usize = 0;
const SHARED: usize = 1;

/// The LRU. `capacity` bounds the sum of entry weights (each entry weighs at least 1).
pub struct Lru<V> {
    index: HashMap<Box<str>, usize, Seeded>,
    /// Group → the slots of its entries.
    groups: HashMap<Box<str>, HashSet<usize>>,
    nodes: Vec<Option<Node<V>>>,
    free: Vec<usize>,
    /// Per list (private, shared): most and least recently used.
    head: [usize; 2],
    tail: [usize; 2],
    used: usize,
    /// The weight of the shared list's entries.
    shared_used: usize,
    capacity: usize,
    /// Entries dropped to make room.
    evictions: u64,
    /// The weight of every entry dropped (evicted, replaced, removed, refused as too heavy)
    /// and of every shrinking, in all: about what the cache gave back to the allocator (as
    /// weighed: an entry's own cost counts, though the tables it took room in do not shrink).
    let_go: u64,
    /// Values evicted or replaced by inserts, not dropped yet: see [`Lru::take_evicted`].
    evicted: Vec<V>,
    /// Whether an entry's weight includes what it costs the LRU itself ([`Lru::entry_cost`]).
    own_cost: bool,
}

/// What an [`Lru`] holds, for `dynpage_status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LruStats {
    pub entries: usize,
    /// Sum of the weights held.
    pub used: usize,
    pub capacity: usize,
    pub evictions: u64,
    /// Bytes let go of in all (see [`crate::memory_release`]).
    pub let_go: u64,
}

impl<V> Lru<V> {
    pub fn new(capacity: usize) -> Lru<V> {
        Lru {
            index: HashMap::default(),
            groups: HashMap::new(),
            nodes: Vec::new(),
            free: Vec::new(),
            head: [NIL; 2],
            tail: [NIL; 2],
            used: 0,
            shared_used: 0,
            capacity: capacity.max(1),
            evictions: 0,
            let_go: 0,
            evicted: Vec::new(),
            own_cost: false,
        }
    }

    /// An LRU whose bound counts, beside each value's weight, what the entry costs the LRU
    /// itself ([`Lru::entry_cost`]): with many small entries (a long tail of page metas) that
    /// is most of their memory.
    pub fn counting_own_cost(capacity: usize) -> Lru<V> {
        Lru {
            own_cost: true,
            ..Lru::new(capacity)
        }
    }

    /// The bytes an entry under `key` (in `group`) costs the LRU beside its value: its node and
    /// its index bucket (each in a table that may have twice the room the entries need, as
    /// tables grow by doubling and do not shrink), its slot in the free list, its key twice
    /// (the node's and the index's) and, for a group, the group's key twice, its bucket and its
    /// set of slots (counted for each entry of the group, as most groups have one or two).
    pub fn entry_cost(key: &str, group: Option<&str>) -> usize {
        let node = size_of::<Option<Node<V>>>() + size_of::<usize>();
        let bucket = size_of::<(Box<str>, usize)>() + 1;
        let mut n = 2 * (node + bucket) + 2 * block(key.len());
        if let Some(g) = group {
            let group_bucket = size_of::<(Box<str>, HashSet<usize>)>() + 1;
            // A set of a few slots: four buckets and their control bytes.
            let set = block(4 * (size_of::<usize>() + 1) + 16);
            n += 2 * group_bucket + 2 * block(g.len()) + set;
        }
        n
    }

    fn own_cost_of(&self, key: &str, group: Option<&str>) -> usize {
        if self.own_cost {
            Self::entry_cost(key, group)
        } else {
            0
        }
    }

    pub fn stats(&self) -> LruStats {
        LruStats {
            entries: self.index.len(),
            used: self.used,
            capacity: self.capacity,
            evictions: self.evictions,
            let_go: self.let_go,
        }
    }

    fn node(&self, i: usize) -> &Node<V> {
        self.nodes[i]
            .as_ref()
            .expect("lru: linked slot is occupied")
    }

    fn node_mut(&mut self, i: usize) -> &mut Node<V> {
        self.nodes[i]
            .as_mut()
            .expect("lru: linked slot is occupied")
    }

    fn unlink(&mut self, i: usize) {
        let (prev, next, list) = {
            let n = self.node(i);
            (n.prev, n.next, n.list)
        };
        if prev == NIL {
            self.head[list] = next;
        } else {
            self.node_mut(prev).next = next;
        }
        if next == NIL {
            self.tail[list] = prev;
        } else {
            self.node_mut(next).prev = prev;
        }
    }

    fn push_front(&mut self, i: usize) {
        let list = self.node(i).list;
        let head = self.head[list];
        {
            let n = self.node_mut(i);
            n.prev = NIL;
            n.next = head;
        }
        if head != NIL {
            self.node_mut(head).prev = i;
        }
        self.head[list] = i;
        if self.tail[list] == NIL {
            self.tail[list] = i;
        }
    }

    /// The value for `key`, marking it recently used.
    pub fn get(&mut self, key: &str) -> Option<&V> {
        let i = *self.index.get(key)?;
        if self.head[self.node(i).list] != i {
            self.unlink(i);
            self.push_front(i);
        }
        Some(&self.node(i).value)
    }

    /// Whether `key` has an entry (its recency untouched).
    pub fn contains(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    /// Most the shared list holds while private entries could be evicted instead.
    fn shared_bound(&self) -> usize {
        self.capacity / 4
    }

    /// Which list gives up its least recently used entry to make room for `incoming` more
    /// shared weight: the shared list when it would be over its bound (or is all there is).
    fn evict_from(&self, incoming_shared: usize) -> usize {
        if self.tail[PRIVATE] == NIL
            || (self.tail[SHARED] != NIL
                && self.shared_used + incoming_shared > self.shared_bound())
        {
            SHARED
        } else {
            PRIVATE
        }
    }

    /// Inserts or replaces, then evicts least recently used entries until within capacity.
    /// An entry heavier than the whole capacity is not stored.
    pub fn insert(&mut self, key: &str, value: V, weight: usize) {
        self.insert_in(key, None, value, weight);
    }

    /// `insert`, the entry belonging to `group` (see `update_group`).
    pub fn insert_in(&mut self, key: &str, group: Option<&str>, value: V, weight: usize) {
        self.insert_as(key, group, value, weight, false);
    }

    /// `insert_in`, `shared` saying whether the entry is shared by many users (see the module's
    /// comment). An entry that replaces a shared one is shared too (a kept page's meta fetched
    /// again when its TTL ran out stays apart from the tail, see [`Lru::share`]).
    pub fn insert_as(
        &mut self,
        key: &str,
        group: Option<&str>,
        value: V,
        weight: usize,
        shared: bool,
    ) {
        let weight = weight.max(1) + self.own_cost_of(key, group);
        let shared = shared
            || self
                .index
                .get(key)
                .is_some_and(|&i| self.node(i).list == SHARED);
        if let Some(old) = self.remove(key) {
            self.evicted.push(old);
        }
        if weight > self.capacity {
            self.let_go += weight as u64;
            self.evicted.push(value);
            return;
        }
        let incoming_shared = if shared { weight } else { 0 };
        while self.used + weight > self.capacity
            || (shared
                && self.shared_used + weight > self.shared_bound()
                && self.tail[SHARED] != NIL)
        {
            let t = self.tail[self.evict_from(incoming_shared)];
            if t == NIL {
                break;
            }
            let k = self.node(t).key.clone();
            if let Some(old) = self.remove(&k) {
                self.evicted.push(old);
            }
            self.evictions += 1;
        }
        let list = if shared { SHARED } else { PRIVATE };
        let node = Node {
            key: key.into(),
            group: group.map(Into::into),
            value,
            weight,
            list,
            prev: NIL,
            next: NIL,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.nodes[i] = Some(node);
                i
            }
            None => {
                self.nodes.push(Some(node));
                self.nodes.len() - 1
            }
        };
        self.index.insert(key.into(), i);
        if let Some(g) = group {
            self.groups.entry(g.into()).or_default().insert(i);
        }
        self.used += weight;
        if shared {
            self.shared_used += weight;
        }
        self.push_front(i);
    }

    /// Moves the entry under `key` to the shared list (as its most recently used): what many
    /// requests need, kept apart from the long tail of private entries (see the module's
    /// comment). `false` when there is no such entry. The shared list over its bound gives up
    /// its least recently used at the next insert.
    pub fn share(&mut self, key: &str) -> bool {
        let Some(&i) = self.index.get(key) else {
            return false;
        };
        if self.node(i).list == SHARED {
            return true;
        }
        self.unlink(i);
        let weight = {
            let n = self.node_mut(i);
            n.list = SHARED;
            n.weight
        };
        self.shared_used += weight;
        self.push_front(i);
        true
    }

    /// Changes the value under `key` in place with `change`, which gives its new weight, without
    /// touching its recency; `false` when there is no such entry. For shrinking an entry (a
    /// heavier one is not evicted for).
    pub fn reweigh(&mut self, key: &str, change: impl FnOnce(&mut V) -> usize) -> bool {
        let Some(&i) = self.index.get(key) else {
            return false;
        };
        let own = {
            let n = self.node(i);
            self.own_cost_of(&n.key, n.group.as_deref())
        };
        let node = self.node_mut(i);
        let before = node.weight;
        let after = change(&mut node.value).max(1) + own;
        node.weight = after;
        let shared = node.list == SHARED;
        self.let_go += before.saturating_sub(after) as u64;
        self.used = self.used - before + after;
        if shared {
            self.shared_used = self.shared_used - before + after;
        }
        true
    }

    /// The values inserts evicted or replaced since the last call: the caller drops them where
    /// it likes (the worker cache: on a fetch thread, since dropping a parsed snapshot frees
    /// thousands of blocks, which the event loop should not spend its time on).
    pub fn take_evicted(&mut self) -> Vec<V> {
        std::mem::take(&mut self.evicted)
    }

    pub fn remove(&mut self, key: &str) -> Option<V> {
        let i = self.index.remove(key)?;
        self.unlink(i);
        let node = self.nodes[i].take().expect("lru: indexed slot is occupied");
        if let Some(g) = &node.group {
            if let Some(slots) = self.groups.get_mut(g) {
                slots.remove(&i);
                if slots.is_empty() {
                    self.groups.remove(g);
                }
            }
        }
        self.used -= node.weight;
        self.let_go += node.weight as u64;
        if node.list == SHARED {
            self.shared_used -= node.weight;
        }
        self.free.push(i);
        Some(node.value)
    }

    /// Applies `update` to every entry of `group`, without touching recency; returns how many.
    /// Costs O(the group's size): a group nobody holds costs one hash lookup.
    pub fn update_group(&mut self, group: &str, mut update: impl FnMut(&mut V)) -> usize {
        let Some(slots) = self.groups.get(group) else {
            return 0;
        };
        let mut n = 0;
        for &i in slots {
            if let Some(node) = self.nodes.get_mut(i).and_then(Option::as_mut) {
                update(&mut node.value);
                n += 1;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the tests look at.
    impl<V> Lru<V> {
        fn len(&self) -> usize {
            self.index.len()
        }

        /// Sum of the weights held.
        fn used(&self) -> usize {
            self.used
        }

        /// The value for `key`, without touching its recency.
        fn peek(&self, key: &str) -> Option<&V> {
            self.index.get(key).map(|&i| &self.node(i).value)
        }

        /// How many groups have entries.
        fn group_count(&self) -> usize {
            self.groups.len()
        }
    }

    #[test]
    fn counts_every_byte_let_go() {
        let mut l = Lru::new(10);
        l.insert("a", 1, 4);
        l.insert("b", 2, 4);
        assert_eq!(l.stats().let_go, 0);
        l.insert("a", 3, 3); // replaced: 4
        l.insert("c", 4, 5); // evicts b: 4
        assert_eq!(l.stats().let_go, 8);
        l.reweigh("c", |_| 2); // shrunk: 3
        l.remove("a"); // removed: 3
        l.insert("d", 5, 11); // refused: 11
        assert_eq!(l.stats().let_go, 8 + 3 + 3 + 11);
        l.reweigh("c", |_| 4); // grows: nothing let go of
        assert_eq!(l.stats().let_go, 25);
    }

    #[test]
    fn evicts_least_recently_used_by_weight() {
        let mut l = Lru::new(10);
        l.insert("a", 1, 4);
        l.insert("b", 2, 4);
        assert_eq!(l.get("a"), Some(&1)); // a is now the most recent
        l.insert("c", 3, 4); // evicts b
        assert_eq!(l.stats().evictions, 1);
        assert!(l.contains("a") && l.contains("c") && !l.contains("b"));
        assert_eq!(l.used(), 8);
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn replace_updates_weight_and_too_heavy_is_refused() {
        let mut l = Lru::new(10);
        l.insert("a", 1, 4);
        l.insert("a", 2, 6);
        assert_eq!(l.used(), 6);
        assert_eq!(l.peek("a"), Some(&2));
        l.insert("big", 3, 11);
        assert!(!l.contains("big"));
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn removal_and_slot_reuse() {
        let mut l = Lru::new(100);
        for i in 0..10 {
            l.insert(&format!("p:{i}"), i, 1);
        }
        l.insert("t:x", 99, 1);
        for i in 0..10 {
            assert_eq!(l.remove(&format!("p:{i}")), Some(i));
        }
        assert_eq!(l.len(), 1);
        assert_eq!(l.used(), 1);
        l.insert("p:new", 1, 1);
        assert_eq!(l.nodes.len(), 11, "freed slots are reused");
        assert_eq!(l.get("t:x"), Some(&99));
    }

    #[test]
    fn groups_follow_inserts_replacements_removals_and_evictions() {
        let mut l = Lru::new(6);
        l.insert_in("a1", Some("a"), 1, 1);
        l.insert_in("a2", Some("a"), 2, 1);
        l.insert_in("b1", Some("b"), 3, 1);
        l.insert("x", 4, 1);
        assert_eq!(l.update_group("a", |v| *v += 10), 2);
        assert_eq!(l.peek("a1"), Some(&11));
        assert_eq!(l.peek("b1"), Some(&3));
        assert_eq!(l.update_group("nobody", |v| *v += 10), 0);
        // Replacing moves an entry to its new group.
        l.insert_in("a2", Some("b"), 5, 1);
        assert_eq!(l.update_group("a", |v| *v += 100), 1);
        assert_eq!(l.update_group("b", |_| {}), 2);
        l.remove("a1");
        assert_eq!(l.update_group("a", |_| {}), 0);
        assert_eq!(l.group_count(), 1, "an emptied group is dropped");
        // Evictions leave no slot behind in a group, even when the slot is reused.
        for i in 0..20 {
            l.insert_in(&format!("c{i}"), Some("c"), i, 1);
        }
        assert_eq!(l.update_group("b", |_| {}), 0);
        assert_eq!(l.update_group("c", |_| {}), 6);
        assert_eq!(l.group_count(), 1);
    }

    #[test]
    fn a_long_tail_of_private_entries_does_not_evict_the_shared_ones() {
        let mut l = Lru::new(100);
        l.insert_as("tpl", None, 0, 20, true);
        for i in 0..1000usize {
            l.insert(&format!("p{i}"), i, 10);
            assert!(l.used() <= 100);
        }
        assert!(
            l.contains("tpl"),
            "the shared entry outlives 1,000 private ones"
        );
        assert_eq!(l.len(), 1 + 8);
        // Shared entries beyond a quarter of the capacity go, least recently used first,
        // before any private one.
        l.insert_as("tpl2", None, 0, 10, true);
        assert!(!l.contains("tpl") && l.contains("tpl2") && l.contains("p999"));
        l.insert_as("tpl3", None, 0, 10, true);
        assert!(l.contains("tpl2") && l.contains("tpl3"));
        assert_eq!(l.peek("tpl3"), Some(&0));
        l.insert_as("tpl4", None, 0, 10, true);
        assert!(!l.contains("tpl2") && l.contains("tpl3") && l.contains("tpl4"));
        // A shared entry replaced stays shared; shared entries may be removed.
        l.insert("tpl4", 1, 5);
        assert_eq!(l.shared_used, 15);
        assert_eq!(l.remove("tpl3"), Some(0));
        assert_eq!(l.remove("tpl4"), Some(1));
        assert_eq!(l.shared_used, 0);
        // Only shared entries left: they are evicted like any.
        let mut l = Lru::new(10);
        for i in 0..10usize {
            l.insert_as(&i.to_string(), None, i, 4, true);
            assert!(l.used() <= 10);
        }
    }

    #[test]
    fn a_shared_private_entry_outlives_the_long_tail_and_leaves_within_the_shared_bound() {
        let mut l = Lru::new(100);
        l.insert("hot-meta", 1, 10);
        l.insert("hot-snapshot", 2, 10);
        assert!(l.share("hot-meta") && l.share("hot-snapshot"));
        assert!(l.share("hot-meta"), "sharing twice changes nothing");
        assert!(!l.share("nobody"));
        assert_eq!(l.shared_used, 20);
        for i in 0..1000usize {
            l.insert(&format!("p{i}"), i, 10);
            assert!(l.used() <= 100);
        }
        assert!(l.contains("hot-meta") && l.contains("hot-snapshot"));
        // Over a quarter of the bound, the shared list gives up its least recently used at
        // the next insert.
        l.insert("warm", 3, 10);
        assert!(l.share("warm"));
        assert_eq!(l.shared_used, 30);
        assert!(l.get("hot-meta").is_some());
        l.insert("p-next", 4, 10);
        assert!(
            !l.contains("hot-snapshot"),
            "the least recently used shared entry went"
        );
        assert!(l.contains("hot-meta") && l.contains("warm"));
        assert_eq!(l.shared_used, 20);
        // Fetched again (its TTL ran out), a shared entry stays shared.
        l.insert("hot-meta", 5, 10);
        assert_eq!(l.shared_used, 20);
        for i in 0..1000usize {
            l.insert(&format!("q{i}"), i, 10);
        }
        assert_eq!(l.peek("hot-meta"), Some(&5));
    }

    #[test]
    fn an_entry_reweighed_in_place_keeps_its_recency() {
        let mut l = Lru::new(10);
        l.insert("a", 1, 6);
        l.insert("b", 2, 4);
        assert!(l.reweigh("a", |v| {
            *v = 10;
            1
        }));
        assert!(!l.reweigh("nobody", |_| 1));
        assert_eq!((l.used(), l.peek("a")), (5, Some(&10)));
        l.insert("c", 3, 5); // room for it without evicting anything
        assert!(l.contains("a") && l.contains("b") && l.contains("c"));
        l.insert("d", 4, 1); // a is the least recently used still
        assert!(!l.contains("a"));
    }

    #[test]
    fn evicted_and_replaced_values_are_handed_back() {
        let mut l = Lru::new(10);
        l.insert("a", 1, 5);
        l.insert("b", 2, 5);
        l.insert("a", 3, 5); // replaces 1
        l.insert("c", 4, 5); // evicts b
        l.insert("huge", 5, 11); // refused
        let mut got = l.take_evicted();
        got.sort();
        assert_eq!(got, vec![1, 2, 5]);
        assert!(l.take_evicted().is_empty());
    }

    #[test]
    fn many_inserts_stay_within_capacity() {
        let mut l = Lru::new(1000);
        for i in 0..10_000usize {
            l.insert(&i.to_string(), i, 1 + i % 7);
            assert!(l.used() <= 1000);
        }
        assert_eq!(l.get("9999"), Some(&9999));
    }
}
