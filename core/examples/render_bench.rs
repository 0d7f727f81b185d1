//! Renders the benchmark product page in a loop: `cargo run --release -p dynpage-core --example
//! render_bench -- <dir written by bench/gen.py>`. Prints microseconds per render.
use dynpage_core::render::{build_context, compile, render_into, PageInfo};

fn main() {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "/tmp/gen".into());
    let src = std::fs::read_to_string(format!("{dir}/page.upon.html")).expect("template");
    let data: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/data.json")).expect("data"))
            .expect("json");
    let t = compile(src).expect("compiles");
    let page = PageInfo {
        key: "/item/1001.html",
        version: "1",
        variant: "production",
    };
    let ctx = build_context(data.as_object().expect("object"), page, &[]);
    let mut out = Vec::with_capacity(1 << 16);
    let n = 20_000;
    let start = std::time::Instant::now();
    for _ in 0..n {
        out.clear();
        render_into(&t, &ctx, &[], &mut out).expect("renders");
    }
    let per = start.elapsed().as_secs_f64() * 1e6 / n as f64;
    println!("{} bytes, {per:.2} us per render", out.len());
}
