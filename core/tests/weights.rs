//! The worker cache's weights against what the values really hold: a counting allocator sums
//! every live heap block (with the allocator's overhead, as `dynpage_core::weight` counts it)
//! while a snapshot and a dimension of the benchmark's product page are prepared.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use dynpage_core::layout::DocRef;
use dynpage_core::lru::Lru;
use dynpage_core::prepare::{prepare, Prepared};
use dynpage_core::store::{Fetch, Raw};
use dynpage_core::version::Field;
use dynpage_core::weight;

struct Counting;

thread_local! {
    /// Per thread, so that tests running beside each other do not count each other's blocks
    /// (const-initialized, without a destructor: safe to touch from the allocator).
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn live() -> isize {
    LIVE.with(Cell::get)
}

fn add(n: isize) {
    LIVE.with(|l| l.set(l.get() + n));
}

/// As `weight::block`: the allocator's header, rounded to 16.
fn cost(size: usize) -> isize {
    ((size + 16).div_ceil(16) * 16) as isize
}

// SAFETY: every call is passed to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(cost(layout.size()));
        // SAFETY: as the caller's contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add(-cost(layout.size()));
        // SAFETY: as the caller's contract.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        add(cost(new_size) - cost(layout.size()));
        // SAFETY: as the caller's contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const PRODUCT: &str = include_str!("fixtures/product.json");

/// What `fetch` prepared from `bytes` (as `raw` wraps them) holds, and its weight. The bytes
/// are freed while preparing: their block is added back.
fn held_and_weight(fetch: &Fetch, bytes: Vec<u8>, raw: fn(Vec<u8>) -> Raw) -> (isize, usize) {
    // A thread reads documents into blocks it keeps for the next one (a fixed cost per fetch
    // thread, not per entry): made by a first read, before the count.
    drop(prepare(fetch, raw(bytes.clone())));
    let input = cost(bytes.capacity());
    let raw = raw(bytes);
    let before = live();
    let prepared = prepare(fetch, raw);
    let held = live() - before + input;
    let weight = prepared.weight();
    assert!(prepared.is_present());
    if let Prepared::Snapshot(Some(Err(e))) | Prepared::Data(Some(Err(e))) = &prepared {
        panic!("not prepared: {e}");
    }
    drop(prepared);
    (held, weight)
}

fn assert_close(what: &str, held: isize, weight: usize) {
    let ratio = weight as f64 / held as f64;
    println!("{what}: holds {held} bytes, weighs {weight} ({ratio:.2})");
    // The weight adds a fixed 128 for the value's own block; the rest must be what hangs from it.
    assert!(
        (0.9..=1.25).contains(&ratio),
        "{what}: holds {held} bytes but weighs {weight}"
    );
}

#[test]
fn a_product_snapshot_weighs_what_it_holds() {
    let snapshot = format!(r#"{{"template":{{"name":"item"}},"data":{PRODUCT}}}"#);
    let fetch = Fetch::Field(DocRef::Page("/p/1.html".into()), Field::Version(1_000));
    let (held, weight) = held_and_weight(&fetch, snapshot.into_bytes(), |b| Raw::Field(Some(b)));
    // Its data as a document: the strings (most of the 13 KB) and a slot per value.
    assert!(
        (15_000..30_000).contains(&held),
        "the product page's data is about 20 KB, not {held}"
    );
    assert_close("snapshot", held, weight);
}

#[test]
fn a_product_dimension_weighs_what_it_holds() {
    let fetch = Fetch::Data("item:1:base".into());
    let (held, weight) = held_and_weight(&fetch, PRODUCT.as_bytes().to_vec(), |b| {
        Raw::Data(Ok(Some(b)))
    });
    assert_close("dimension", held, weight);
}

/// Keys and groups as the worker cache makes them for a long tail of pages: a meta and a
/// snapshot per page, both in the page's group.
fn page_keys(i: usize) -> [(String, String); 2] {
    let group = format!("dynpage:page:/p/{i}.html");
    [
        (format!("meta\u{1}{group}"), group.clone()),
        (format!("field\u{1}{group}\u{1}1763720000000"), group),
    ]
}

#[test]
fn an_lru_of_small_entries_weighs_what_it_holds_its_tables_included() {
    const PAGES: usize = 3_000;
    let before = live();
    let mut lru: Lru<Vec<u8>> = Lru::counting_own_cost(usize::MAX / 2);
    for i in 0..PAGES {
        for (key, group) in page_keys(i) {
            let value = vec![0u8; 40];
            let weight = weight::block(value.capacity());
            lru.insert_in(&key, Some(&group), value, weight);
        }
    }
    let held = live() - before;
    let used = lru.stats().used;
    let ratio = used as f64 / held as f64;
    println!(
        "{} small entries: hold {held} bytes, weigh {used} ({ratio:.2})",
        2 * PAGES
    );
    // Never less than they hold; more by at most the tables' room to grow.
    assert!(
        (1.0..=1.6).contains(&ratio),
        "{} small entries hold {held} bytes but weigh {used}",
        2 * PAGES
    );
}

#[test]
fn an_lru_bounded_in_bytes_holds_no_more_than_its_bound_through_a_long_tail() {
    const BOUND: usize = 1 << 20;
    let before = live();
    let mut lru: Lru<Vec<u8>> = Lru::counting_own_cost(BOUND);
    let mut most = 0;
    for i in 0..40_000 {
        for (key, group) in page_keys(i) {
            // Metas and snapshots of many sizes, as the long tail's pages.
            let value = vec![0u8; 16 + (i * 7919) % 3000];
            let weight = weight::block(value.capacity());
            lru.insert_in(&key, Some(&group), value, weight);
            drop(lru.take_evicted());
            most = most.max(live() - before);
        }
    }
    println!("bounded at {BOUND}: held at most {most} bytes");
    assert!(
        most as f64 <= 1.05 * BOUND as f64,
        "an LRU bounded at {BOUND} bytes held {most}"
    );
}
