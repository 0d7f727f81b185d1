//! Runs a harness case by case, each case from its own seed, within a time or iteration budget.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use crate::rng::{mix, Rng};

/// Counters a harness keeps about what its cases exercised (printed after a run).
pub type Counts = BTreeMap<&'static str, u64>;

/// One case: its random source, and whether to print what it generates.
pub struct Case<'a> {
    pub rng: Rng,
    /// Print what the case generates (see [`Case::show`]).
    pub verbose: bool,
    counts: &'a mut Counts,
}

impl Case<'_> {
    /// Prints `value` under `label` when the case is replayed verbosely (a reproducer).
    pub fn show(&self, label: &str, value: &dyn Debug) {
        if self.verbose {
            eprintln!("  {label}: {value:?}");
        }
    }

    /// Counts one occurrence of `what`.
    pub fn count(&mut self, what: &'static str) {
        *self.counts.entry(what).or_default() += 1;
    }
}

/// A property that failed: the message says what and shows the case.
pub type Check = Result<(), String>;

/// Fails the case with a formatted message unless `cond` holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err(format!($($arg)+));
        }
    };
}

/// One harness.
pub struct Harness {
    pub name: &'static str,
    pub about: &'static str,
    pub run: fn(&mut Case) -> Check,
}

/// The seed of case `i` of `harness` in a run seeded with `seed`.
pub fn case_seed(seed: u64, harness: &str, i: u64) -> u64 {
    let mut h = mix(seed);
    for b in harness.bytes() {
        h = mix(h ^ u64::from(b));
    }
    mix(h.wrapping_add(i))
}

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Keeps panic messages off stderr (the harnesses report them) and remembers the last one.
/// Panics that the core catches itself (upon's, in `render_with_upon`) pass through here too;
/// only those that reach [`run_case`] are failures.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let msg = match info.payload().downcast_ref::<&str>() {
            Some(s) => (*s).to_string(),
            None => match info.payload().downcast_ref::<String>() {
                Some(s) => s.clone(),
                None => "(no message)".to_string(),
            },
        };
        let at = info
            .location()
            .map(|l| format!(" at {}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_default();
        LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{msg}{at}")));
    }));
}

/// Runs one case; a panic is a failure like a broken property.
pub fn run_case(h: &Harness, seed: u64, verbose: bool, counts: &mut Counts) -> Check {
    let mut case = Case {
        rng: Rng::new(seed),
        verbose,
        counts,
    };
    match catch_unwind(AssertUnwindSafe(|| (h.run)(&mut case))) {
        Ok(result) => result,
        Err(_) => Err(format!(
            "panicked: {}",
            LAST_PANIC
                .with(|p| p.borrow_mut().take())
                .unwrap_or_else(|| "(unknown)".into())
        )),
    }
}

/// When a run stops.
#[derive(Clone, Copy, Debug)]
pub enum Budget {
    Until(Instant),
    Iterations(u64),
}

/// A failed case.
#[derive(Debug)]
pub struct Failure {
    /// Its index in the run.
    pub index: u64,
    pub case_seed: u64,
    pub message: String,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub iterations: u64,
    pub counts: Counts,
    pub failure: Option<Failure>,
}

/// Runs cases `from`, `from + 1`, ... of `h` until the budget is spent or a case fails.
/// `progress` is called now and then with the index of the next case (to locate a crash).
/// `verbose` prints each case's index and seed (and what it generates) before running it.
pub fn run_harness(
    h: &Harness,
    seed: u64,
    from: u64,
    budget: Budget,
    verbose: bool,
    progress: &mut dyn FnMut(u64),
) -> Outcome {
    let mut out = Outcome::default();
    let mut i = from;
    let mut last_progress = Instant::now();
    loop {
        match budget {
            Budget::Iterations(n) if out.iterations >= n => break,
            // Look at the clock every 16 cases; the cheap harnesses run millions.
            Budget::Until(t) if i.is_multiple_of(16) && Instant::now() >= t => break,
            _ => {}
        }
        if i.is_multiple_of(64) && last_progress.elapsed().as_millis() >= 200 {
            progress(i);
            last_progress = Instant::now();
        }
        let cs = case_seed(seed, h.name, i);
        if verbose {
            eprintln!("case {i} seed {cs:#018x}");
        }
        let result = run_case(h, cs, verbose, &mut out.counts);
        out.iterations += 1;
        if let Err(message) = result {
            out.failure = Some(Failure {
                index: i,
                case_seed: cs,
                message,
            });
            break;
        }
        i += 1;
    }
    out
}
