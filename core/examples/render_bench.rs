//! Renders the benchmark product page in a loop, with upon alone and with the fast path:
//! `cargo run --release -p dynpage-core --example render_bench -- [dir] [renders]`, where `dir`
//! was written by `bench/gen.py` (default /tmp/gen) and `renders` defaults to 20000.
//! Prints nanoseconds per render for each and checks both outputs are identical.
use std::time::Instant;

use dynpage_core::doc::Doc;
use dynpage_core::render::{
    build_context, compile, json_to_value, page_value, render_into, render_with_upon,
    CompiledTemplate, PageInfo, RenderError, Scope, EMPTY_MAP,
};
use upon::Value;

type RenderFn = for<'a> fn(
    &'a CompiledTemplate,
    Scope<'a>,
    &[(&str, &CompiledTemplate)],
    &mut Vec<u8>,
) -> Result<(), RenderError>;

/// Renders `n` times; returns the last output and nanoseconds per render.
fn time(render: RenderFn, t: &CompiledTemplate, ctx: Scope<'_>, n: u32) -> (Vec<u8>, f64) {
    let mut out = Vec::with_capacity(1 << 16);
    // Warm up caches and the allocator before timing.
    for _ in 0..n / 10 {
        out.clear();
        render(t, ctx, &[], &mut out).expect("renders");
    }
    let start = Instant::now();
    for _ in 0..n {
        out.clear();
        render(t, ctx, &[], &mut out).expect("renders");
    }
    (out, start.elapsed().as_nanos() as f64 / f64::from(n))
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| "/tmp/gen".into());
    let n: u32 = args
        .next()
        .map_or(20_000, |s| s.parse().expect("render count"));
    let src = std::fs::read_to_string(format!("{dir}/page.upon.html")).expect("template");
    let data_text = std::fs::read_to_string(format!("{dir}/data.json")).expect("data");
    let data: serde_json::Value = serde_json::from_str(&data_text).expect("json");
    let t = compile(src).expect("compiles");
    assert!(
        t.has_fast_path(),
        "the benchmark page should have a fast program"
    );
    let page = PageInfo {
        key: "/item/1001.html",
        version: "1",
        variant: "production",
    };
    let ctx = build_context(data.as_object().expect("object"), page, &[]);

    let (upon_out, upon_ns) = time(render_with_upon, &t, Scope::of(&ctx), n);
    let (fast_out, fast_ns) = time(render_into, &t, Scope::of(&ctx), n);
    assert!(upon_out == fast_out, "fast and upon outputs differ");
    // Dimension mode: each top-level field its own value, looked up through the scope's layers.
    let fields: Vec<(String, Value)> = data
        .as_object()
        .expect("object")
        .iter()
        .map(|(k, v)| (k.clone(), json_to_value(v)))
        .collect();
    let page_info = page_value(page);
    let mut named: Vec<(&str, &Value)> = vec![("page", &page_info)];
    named.extend(fields.iter().map(|(k, v)| (k.as_str(), v)));
    let layered = Scope {
        named: &named,
        doc: None,
        base: None,
    };
    let (dim_out, dim_ns) = time(render_into, &t, layered, n);
    assert!(dim_out == fast_out, "dimension-mode output differs");
    // Page mode as the worker renders it: the snapshot's data as a document.
    let doc = Doc::parse(data_text.as_bytes()).expect("json");
    let page_named: [(&str, &Value); 2] = [("request", &EMPTY_MAP), ("page", &page_info)];
    let in_doc = Scope {
        named: &page_named,
        doc: Some(&doc),
        base: None,
    };
    let (doc_out, doc_ns) = time(render_into, &t, in_doc, n);
    assert!(doc_out == fast_out, "page-mode (document) output differs");

    println!(
        "{} bytes, {n} renders each, identical output",
        fast_out.len()
    );
    println!("upon only: {upon_ns:>8.0} ns per render");
    println!("fast path: {fast_ns:>8.0} ns per render");
    println!("fast path, dimension layers: {dim_ns:>8.0} ns per render");
    println!("fast path, data as a document (page mode): {doc_ns:>8.0} ns per render");
    println!("speedup:   {:>8.2}x", upon_ns / fast_ns);
}
