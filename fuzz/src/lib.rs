//! Fuzz harnesses for dynpage's core that run on stable Rust: each case is generated from a
//! 64-bit seed by a small generator (no libFuzzer), checked against properties (models,
//! round trips, the fast renderer against upon, redaction), and reproducible from its seed.
//!
//! `make fuzz MINUTES=n` runs every harness for its share of the time (see `src/main.rs`);
//! `cargo test -p dynpage-fuzz` runs a few hundred cases of each (the smoke test).

pub mod driver;
pub mod gen;
pub mod rng;

pub mod harness {
    pub mod cidr;
    pub mod cms;
    pub mod resp;
    pub mod snapshot;
    pub mod template;
    pub mod url;
    pub mod version;
}

use driver::Harness;

/// Every harness, in the order a run goes through them.
pub const HARNESSES: &[Harness] = &[
    Harness {
        name: "snapshot",
        about: "Snapshot::parse / from_value / to_json / TemplateSpec / prepare",
        run: harness::snapshot::run,
    },
    Harness {
        name: "template",
        about: "compile, fast renderer against upon, budgets, includes, modules",
        run: harness::template::run,
    },
    Harness {
        name: "resp",
        about: "Redis replies: fetch_batch_within and read_reply against a fake Redis, fetch_batch",
        run: harness::resp::run,
    },
    Harness {
        name: "url",
        about: "check_url / redact_url",
        run: harness::url::run,
    },
    Harness {
        name: "cidr",
        about: "Cidr::parse / contains, AllowList",
        run: harness::cidr::run,
    },
    Harness {
        name: "version",
        about: "canonical numbers, Field, DocMeta, key names",
        run: harness::version::run,
    },
    Harness {
        name: "cms",
        about: "CMS answers and URLs",
        run: harness::cms::run,
    },
];

pub fn harness(name: &str) -> Option<&'static Harness> {
    HARNESSES.iter().find(|h| h.name == name)
}
