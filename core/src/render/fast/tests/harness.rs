//! The harness of the differential tests: the context most of them use, compiling a template,
//! and rendering both ways (fast alone, upon alone) with the results compared.

use upon::Value;

use crate::limits::Limits;
use crate::render::compile::{compile as compile_template, CompiledTemplate};
use crate::render::context::{build_context, PageInfo, Scope};
use crate::render::fast_or_upon::{render_fast_only, render_into};
use crate::render::upon_render::render_with_upon;

/// Context used by most tests: `data`'s fields plus `page` and `request`, as in production.
pub(super) fn context(data: &str) -> Value {
    let data: serde_json::Value = serde_json::from_str(data).expect("test data is JSON");
    build_context(
        data.as_object().expect("test data is an object"),
        PageInfo {
            key: "/k",
            version: "7",
            variant: "production",
        },
        &[("device".into(), "<m>".into())],
    )
}

pub(super) fn template(src: &str) -> CompiledTemplate {
    compile_template(src.to_string()).unwrap_or_else(|e| panic!("{src:?}: {e}"))
}

/// Renders with the fast renderer alone and with upon alone and checks they agree: the same
/// bytes, or both failing. Also checks that `render_into` (fast path plus fallback) appends
/// exactly what upon does, partial output and error message included. Returns upon's result.
#[track_caller]
pub(super) fn differential(
    main: &CompiledTemplate,
    ctx: &Value,
    includes: &[(&str, &CompiledTemplate)],
) -> Result<String, String> {
    let ctx = Scope::of(ctx);
    let mut fast = Vec::new();
    let fast_result = render_fast_only(main, ctx, includes, &Limits::default(), &mut fast)
        .expect("template and includes have fast programs");
    let mut upon = Vec::new();
    let upon_result = render_with_upon(main, ctx, includes, &mut upon);
    let src = main.source();
    match (&fast_result, &upon_result) {
        (Ok(()), Ok(())) => assert_eq!(
            String::from_utf8_lossy(&fast),
            String::from_utf8_lossy(&upon),
            "fast and upon differ for {src:?}"
        ),
        (Err(_), Err(_)) => {}
        (Ok(()), Err(e)) => panic!("fast rendered {src:?} but upon failed: {e}"),
        (Err(_), Ok(())) => panic!(
            "fast failed on {src:?} but upon rendered {:?}",
            String::from_utf8_lossy(&upon)
        ),
    }
    let mut combined = b"prefix:".to_vec();
    let combined_result = render_into(main, ctx, includes, &mut combined);
    assert_eq!(combined_result, upon_result);
    assert_eq!(&combined[7..], &upon[..], "render_into output for {src:?}");
    match upon_result {
        Ok(()) => Ok(String::from_utf8(upon).expect("utf-8 output")),
        Err(e) => Err(e.message),
    }
}

/// [`differential`] for a template with no includes.
#[track_caller]
pub(super) fn diff(src: &str, data: &str) -> Result<String, String> {
    let t = template(src);
    assert!(t.has_fast_path(), "no fast program for {src:?}");
    differential(&t, &context(data), &[])
}

pub(super) const DATA: &str = r#"{
        "s": "a&b<c>\"d'e", "u": "héllo ✓ 世界", "empty": "", "n": null, "t": true, "f": false,
        "i": 42, "neg": -7, "zero": 0, "fl": 1.5, "big": 1e21, "tiny": 1e-7,
        "sum": 0.30000000000000004, "fz": 0.0, "nfz": -0.0, "huge": 18446744073709551615,
        "imax": 9223372036854775807, "imin": -9223372036854775808,
        "xs": [1, "two", 3.25, null, true, {"a": "x"}, [1, 2]],
        "e": [], "em": {},
        "m": {"b": 2, "a": "<1>", "c": {"d": [10, 20]}},
        "users": [
            {"name": "Ann & Bo", "tags": ["x", "y"], "admin": true, "age": 30},
            {"name": "Cy", "tags": [], "admin": false, "age": 0}
        ]
    }"#;
