//! Every harness runs a few hundred cases (seconds in all), so that they keep compiling and
//! keep passing; `make fuzz` runs them for minutes.

use dynpage_fuzz::driver::{install_panic_hook, run_harness, Budget};
use dynpage_fuzz::HARNESSES;

#[test]
fn every_harness_passes_a_few_hundred_cases() {
    install_panic_hook();
    let mut failures = Vec::new();
    for h in HARNESSES {
        let outcome = run_harness(h, 0x5eed, 0, Budget::Iterations(300), false, &mut |_| {});
        match outcome.failure {
            Some(f) => failures.push(format!(
                "{} case {} fails (replay: cargo run --profile fuzz -p dynpage-fuzz -- --repro \
                 {} {:#018x}): {}",
                h.name, f.index, h.name, f.case_seed, f.message
            )),
            None => assert_eq!(outcome.iterations, 300, "{}", h.name),
        }
    }
    // The harnesses' hook keeps panics quiet: the test's own must show.
    drop(std::panic::take_hook());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
