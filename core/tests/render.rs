//! Rendering through the public API: escaping, values, includes, errors.

use std::collections::BTreeMap;

use dynpage_core::render::{
    build_context, compile, include_names, render_into, PageInfo, Scope, Value,
};
use serde_json::Value as Json;

fn render(src: &str, data: &str) -> Result<String, String> {
    let t = compile(src.to_string()).map_err(|e| e.to_string())?;
    let data: Json = serde_json::from_str(data).unwrap();
    let ctx = build_context(
        data.as_object().unwrap(),
        PageInfo {
            key: "/k",
            version: "7",
            variant: "production",
        },
        &[],
    );
    let mut out = Vec::new();
    render_into(&t, Scope::of(&ctx), &[], &mut out).map_err(|e| e.to_string())?;
    Ok(String::from_utf8(out).unwrap())
}

#[test]
fn escapes_by_default_raw_opts_out() {
    assert_eq!(
        render("{{ x }}|{{ x | raw }}", r#"{"x":"<a href='1'>&\"</a>"}"#).unwrap(),
        "&lt;a href=&#x27;1&#x27;&gt;&amp;&quot;&lt;/a&gt;|<a href='1'>&\"</a>"
    );
}

#[test]
fn scalars_loops_and_page_info() {
    assert_eq!(
        render(
            "{% for i in xs %}{{ i }},{% endfor %}{{ b }} {{ f }} {{ page.key }}@{{ page.version }} {{ page.variant }}",
            r#"{"xs":[1,2],"b":true,"f":1.5}"#
        )
        .unwrap(),
        "1,2,true 1.5 /k@7 production"
    );
}

#[test]
fn null_renders_empty() {
    assert_eq!(render("[{{ n }}]", r#"{"n":null}"#).unwrap(), "[]");
}

#[test]
fn syntax_errors_name_the_position() {
    let e = compile("line one\n{{ x ".to_string())
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 2, column"), "{e}");
    assert!(!e.contains('\n'));
}

#[test]
fn missing_variable_is_a_render_error() {
    let e = render("{{ nope.deeper }}", "{}").unwrap_err();
    assert!(e.starts_with("render failed"), "{e}");
}

#[test]
fn includes_are_found_and_rendered() {
    let src = r#"<{% include "banner" %}>{%- include "foot" with page -%}{% include "banner" %}"#;
    assert_eq!(include_names(src), vec!["banner", "foot"]);
    let main = compile(src.to_string()).unwrap();
    let banner = compile("B{{ page.key }}".to_string()).unwrap();
    let foot = compile("F{{ key }}".to_string()).unwrap();
    let ctx = build_context(
        &serde_json::Map::new(),
        PageInfo {
            key: "/k",
            version: "1",
            variant: "production",
        },
        &[],
    );
    let mut out = Vec::new();
    render_into(
        &main,
        Scope::of(&ctx),
        &[("banner", &banner), ("foot", &foot)],
        &mut out,
    )
    .unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), "<B/k>F/kB/k");
    let mut out = Vec::new();
    let e = render_into(&main, Scope::of(&ctx), &[("banner", &banner)], &mut out).unwrap_err();
    assert!(e.message.contains("foot"), "{e}");
}

#[test]
fn recursive_include_fails_instead_of_looping() {
    let me = compile(r#"x{% include "me" %}"#.to_string()).unwrap();
    let ctx = Value::Map(BTreeMap::new());
    let mut out = Vec::new();
    assert!(render_into(&me, Scope::of(&ctx), &[("me", &me)], &mut out).is_err());
}

#[test]
fn request_values_are_visible() {
    let t = compile("{{ request.device }}".to_string()).unwrap();
    let ctx = build_context(
        &serde_json::Map::new(),
        PageInfo {
            key: "k",
            version: "1",
            variant: "gray",
        },
        &[("device".into(), "<m>".into())],
    );
    let mut out = Vec::new();
    render_into(&t, Scope::of(&ctx), &[], &mut out).unwrap();
    assert_eq!(out, b"&lt;m&gt;");
}
