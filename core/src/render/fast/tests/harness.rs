//! The harness of the differential tests: the context most of them use, compiling a template,
//! and rendering both ways (fast alone, upon alone) with the results compared.

use upon::Value;

use crate::doc::Doc;
use crate::limits::Limits;
use crate::render::compile::{compile as compile_template, CompiledTemplate};
use crate::render::context::{build_context, page_value, request_value, PageInfo, Scope};
use crate::render::fast_or_upon::{render_fast_only, render_into};
use crate::render::upon_render::render_with_upon;

/// Context used by most tests: `data`'s fields plus `page` and `request`, held both ways the
/// renderer meets them: one upon value, and (as the worker holds a page) the data as a document
/// beside `page` and `request`.
pub(super) struct Ctx {
    pub(super) value: Value,
    doc: Doc,
    page: Value,
    request: Value,
}

pub(super) fn context(data: &str) -> Ctx {
    let json: serde_json::Value = serde_json::from_str(data).expect("test data is JSON");
    let page = PageInfo {
        key: "/k",
        version: "7",
        variant: "production",
    };
    let request = [("device".to_string(), "<m>".to_string())];
    Ctx {
        value: build_context(
            json.as_object().expect("test data is an object"),
            page,
            &request,
        ),
        doc: Doc::parse(data.as_bytes()).expect("test data is JSON"),
        page: page_value(page),
        request: request_value(request),
    }
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
    context: &Ctx,
    includes: &[(&str, &CompiledTemplate)],
) -> Result<String, String> {
    let ctx = Scope::of(&context.value);
    let named: [(&str, &Value); 2] = [("request", &context.request), ("page", &context.page)];
    let in_doc = Scope {
        named: &named,
        doc: Some(&context.doc),
        base: None,
    };
    let mut fast = Vec::new();
    let fast_result = render_fast_only(main, ctx, includes, &Limits::default(), &mut fast)
        .expect("template and includes have fast programs");
    let mut fast_doc = Vec::new();
    let fast_doc_result =
        render_fast_only(main, in_doc, includes, &Limits::default(), &mut fast_doc)
            .expect("template and includes have fast programs");
    let src = main.source();
    assert_eq!(
        fast_result.is_ok(),
        fast_doc_result.is_ok(),
        "fast with upon values and with a document disagree for {src:?}"
    );
    if fast_result.is_ok() {
        assert_eq!(
            String::from_utf8_lossy(&fast),
            String::from_utf8_lossy(&fast_doc),
            "fast with upon values and with a document differ for {src:?}"
        );
    }
    let mut upon = Vec::new();
    let upon_result = render_with_upon(main, ctx, includes, &mut upon);
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
    // The fallback from a document renders with upon from the document's values.
    let mut combined = b"prefix:".to_vec();
    assert_eq!(
        render_into(main, in_doc, includes, &mut combined),
        upon_result
    );
    assert_eq!(
        &combined[7..],
        &upon[..],
        "render_into from a document for {src:?}"
    );
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
