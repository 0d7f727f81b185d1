//! What preparing one cold page costs a fetch thread: the benchmark's product snapshot
//! (core/tests/fixtures/product.json, gen.py's data) parsed into upon values and weighed, then
//! dropped. `cargo run --release -p dynpage-core --example prepare_cost`.

use std::time::Instant;

use dynpage_core::layout::DocRef;
use dynpage_core::prepare::prepare;
use dynpage_core::store::{Fetch, Raw};
use dynpage_core::version::Field;

fn main() {
    let data = include_str!("../tests/fixtures/product.json");
    let snapshot = format!("{{\"template\":{{\"name\":\"item\"}},\"data\":{data}}}");
    let fetch = Fetch::Field(DocRef::Page("/p/1.html".into()), Field::Version(1000));
    let rounds = 2000;
    let mut prepared = Vec::with_capacity(rounds);
    let start = Instant::now();
    for _ in 0..rounds {
        prepared.push(prepare(
            &fetch,
            Raw::Field(Some(snapshot.clone().into_bytes())),
        ));
    }
    let parse = start.elapsed() / rounds as u32;
    let start = Instant::now();
    drop(prepared);
    let free = start.elapsed() / rounds as u32;
    let start = Instant::now();
    for _ in 0..rounds {
        let parsed = dynpage_core::json_value::parse_snapshot(&snapshot);
        assert!(parsed.is_ok());
    }
    let parse_only = start.elapsed() / rounds as u32;
    let start = Instant::now();
    for _ in 0..rounds {
        let v: serde_json::Value = serde_json::from_str(&snapshot).unwrap_or_default();
        assert!(v.is_object());
    }
    let serde_value = start.elapsed() / rounds as u32;
    println!(
        "snapshot of {} bytes: prepared in {parse:?} (parsing {parse_only:?} of it, dropping \
         included; serde_json::Value alone {serde_value:?}), dropped in {free:?} (mean of {rounds})",
        snapshot.len()
    );
}
