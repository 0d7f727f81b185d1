//! What counting costs one hot-page request (a kept output served from the worker cache): the
//! same counter updates the module makes for it, timed over many rounds on one block of
//! counters. `make bench` divides it by the time of one request it measured.
//!
//! cargo run --release -p dynpage-core --example metrics_cost

use std::time::Instant;

use dynpage_core::metrics::{Counters, Lookup};
use dynpage_core::serve::{Source, Transition};
use dynpage_core::version::Variant;

fn main() {
    let counters = Box::<Counters>::default();
    counters.init(0);
    let slot = counters.worker(1, |_| true).expect("a slot");
    let c = std::hint::black_box(&slot.tally);
    let rounds = 20_000_000u64;
    let start = Instant::now();
    for _ in 0..rounds {
        // A kept-output hit: three cache lookups (meta, snapshot, template), the transition, the
        // output lookup and the request.
        for _ in 0..3 {
            c.lookup(Lookup::Hit);
        }
        c.transition(Transition::Kept);
        c.output_lookup(true);
        c.request(Some((Variant::Production, Source::L1)), 200);
    }
    let ns = start.elapsed().as_nanos() as f64 / rounds as f64;
    let v = counters.read(|_| true);
    assert_eq!(v.requests_total(), rounds);
    println!("{ns:.1}");
}
