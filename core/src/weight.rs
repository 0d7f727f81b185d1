//! What a value really costs in memory, for the worker cache's byte bound: the heap blocks of an
//! upon value tree (strings, lists, B-tree nodes), each with the allocator's own overhead.
//! `core/tests/weights.rs` checks these estimates against a counting allocator.

use std::collections::BTreeMap;
use std::mem::size_of;

use upon::Value;

/// What the allocator adds to each block (glibc malloc: a 16-byte header, rounded to 16).
const BLOCK_OVERHEAD: usize = 16;
/// Entries of a `BTreeMap` node (std's `B` = 6: 2B - 1).
const NODE_CAPACITY: usize = 11;
/// A leaf node: its keys and values, the parent link, its index and length.
const LEAF_BYTES: usize = NODE_CAPACITY * (size_of::<String>() + size_of::<Value>()) + 16;
/// An internal node: a leaf plus its edges.
const INTERNAL_BYTES: usize = LEAF_BYTES + (NODE_CAPACITY + 1) * size_of::<usize>();

/// One heap block of `n` bytes as the allocator hands it out.
pub fn block(n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    (n + BLOCK_OVERHEAD).div_ceil(16) * 16
}

/// Heap bytes held by `v` (not counting `v` itself, which lives in its parent).
pub fn heap_bytes(v: &Value) -> usize {
    match v {
        Value::None | Value::Bool(_) | Value::Integer(_) | Value::Float(_) => 0,
        Value::String(s) => block(s.capacity()),
        Value::List(items) => {
            block(items.capacity() * size_of::<Value>())
                + items.iter().map(heap_bytes).sum::<usize>()
        }
        Value::Map(map) => {
            map_nodes(map)
                + map
                    .iter()
                    .map(|(k, v)| block(k.capacity()) + heap_bytes(v))
                    .sum::<usize>()
        }
    }
}

/// The nodes of a map built by `collect` (a bulk build from sorted entries: full nodes, each
/// level's separators taken out of the level below).
fn map_nodes<K, V>(map: &BTreeMap<K, V>) -> usize {
    let mut n = map.len();
    if n == 0 {
        return 0;
    }
    let mut bytes = 0;
    let mut node = LEAF_BYTES;
    loop {
        // `n` entries in nodes of up to NODE_CAPACITY, with one separator between two nodes.
        let nodes = (n + 1).div_ceil(NODE_CAPACITY + 1);
        bytes += nodes * block(node);
        if nodes == 1 {
            return bytes;
        }
        n = nodes - 1;
        node = INTERNAL_BYTES;
    }
}

/// A heap block holding a `T` behind an `Arc` (its two counts beside it).
pub fn arc_of<T>() -> usize {
    block(size_of::<T>() + 2 * size_of::<usize>())
}

/// A heap block of `n` bytes (a string's or a buffer's).
pub fn bytes(n: usize) -> usize {
    block(n)
}
