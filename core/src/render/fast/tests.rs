//! The fast renderer against upon: every template here renders with the fast renderer alone
//! and with upon alone, and the two must agree (the same bytes, or both failing); hand-written
//! cases here, generated ones in [`generated`]. They need the crate's fast-only render, so they
//! stay inside the crate.

use super::compile::{compile, MAX_NESTING};
use crate::limits::Limits;
use crate::render::compile::{compile as compile_template, CompiledTemplate};
use crate::render::context::Scope;
use crate::render::fast_or_upon::{render_fast_only, render_into};
use crate::render::upon_render::render_with_upon;

mod generated;
mod harness;

use harness::{context, diff, differential, template, DATA};

#[test]
fn raw_text_comments_and_trims() {
    let cases = [
        ("", ""),
        ("plain ✓ text\n", "plain ✓ text\n"),
        ("a {# c #} b", "a  b"),
        ("a {#- c #} b", "a b"),
        ("a {# c -#} b", "a b"),
        ("a \n{#- c -#}\n b", "ab"),
        ("x{#}y", "xy"),
        ("{{i}}{#-#}z", "42z"),
        ("a \t\n{{- i -}} \n b", "a42b"),
        ("a  {{- i }}  b", "a42  b"),
        ("a  {{ i -}}  b", "a  42b"),
        ("a {{ i -}} {{ i }} b", "a 4242 b"),
        ("a {{ i -}}{{ i }}  b", "a 4242  b"),
        ("a {%- if t -%} y {%- endif -%} b", "ayb"),
        ("a {% if t -%} y {%- endif %} b", "a y b"),
        ("a {% if f -%} y {%- else -%} z {%- endif %} b", "a z b"),
        (
            "\u{a0}x\u{3000} {{- i -}} \u{2003}y\u{a0}",
            "\u{a0}x42y\u{a0}",
        ),
        ("  {{- i -}}  ", "42"),
        ("{{\ni\n}}|{{\tu\r\n}}", "42|héllo ✓ 世界"),
        ("{%if t%}y{%endif%}{{s|raw}}", "ya&b<c>\"d'e"),
        ("a{# {  } % # - #}b", "ab"),
    ];
    for (src, want) in cases {
        assert_eq!(diff(src, DATA).as_deref(), Ok(want), "{src:?}");
    }
}

#[test]
fn values_and_escaping() {
    let cases = [
        (
            "{{ s }}|{{ s | raw }}",
            "a&amp;b&lt;c&gt;&quot;d&#x27;e|a&b<c>\"d'e",
        ),
        ("{{ u }}", "héllo ✓ 世界"),
        ("[{{ n }}][{{ n | raw }}][{{ empty }}]", "[][][]"),
        ("{{ t }} {{ f }} {{ t | raw }}", "true false true"),
        (
            "{{ i }} {{ neg }} {{ zero }} {{ imax }} {{ imin }}",
            "42 -7 0 9223372036854775807 -9223372036854775808",
        ),
        (
            "{{ fl }} {{ big }} {{ tiny }} {{ sum }} {{ fz }} {{ nfz }} {{ huge }}",
            "1.5 1000000000000000000000 0.0000001 0.30000000000000004 0 -0 18446744073709552000",
        ),
        (
            "{{ xs.0 }} {{ xs.1 }} {{ xs.2 }} {{ xs.3 }} {{ xs.4 }} {{ xs.5.a }}",
            "1 two 3.25  true x",
        ),
        (
            "{{ xs.01 }} {{ m.a }} {{ m.c.d.1 }} {{ users.0.name }}",
            "two &lt;1&gt; 20 Ann &amp; Bo",
        ),
        (
            "{{ page.key }}@{{ page.version }} {{ page.variant }} {{ request.device }}",
            "/k@7 production &lt;m&gt;",
        ),
    ];
    for (src, want) in cases {
        assert_eq!(diff(src, DATA).as_deref(), Ok(want), "{src:?}");
    }
}

#[test]
fn errors_fall_back_to_upon() {
    for src in [
        "{{ missing }}",
        "a{{ m.zz }}",
        "ok {{ xs.9 }}",
        "{{ xs }}",
        "{{ m }}",
        "{{ m | raw }}",
        "{{ i.x }}",
        "{{ s.0 }}",
        "{{ m.0 }}",
        "{{ xs.a }}",
        "{{ n.a }}",
        "{% for x in i %}{% endfor %}",
        "{% for x in s %}{% endfor %}",
        "{% for k, v in xs %}{% endfor %}",
        "{% for x in m %}{% endfor %}",
        "before {% for x in xs %}{{ x }}{% endfor %}",
        "{% for x in users %}{{ loop }}{% endfor %}",
        "{% for x in users %}{{ loop.nope }}{% endfor %}",
        "{% for x in users %}{{ loop.index.x }}{% endfor %}",
        "{% for x in users %}{{ loop.0 }}{% endfor %}",
        "{% for k, v in m %}{{ k.x }}{% endfor %}",
        "{% if missing %}{% endif %}",
        "{% with missing as w %}{% endwith %}",
        "{% include \"nowhere\" %}",
    ] {
        assert!(diff(src, DATA).is_err(), "{src:?} should fail");
    }
}

#[test]
fn conditions() {
    let cases = [
        ("{% if t %}T{% endif %}{% if f %}F{% endif %}", "T"),
        ("{% if not f %}nf{% else %}x{% endif %}", "nf"),
        (
            "{% if n %}1{% else if not zero %}2{% else %}3{% endif %}",
            "2",
        ),
        (
            "{% if f %}1{% else if empty %}2{% else if e %}3{% else if em %}4{% else %}5{% endif %}",
            "5",
        ),
        ("{% if fz %}a{% endif %}{% if nfz %}b{% endif %}{% if fl %}c{% endif %}", "c"),
        ("{% if xs %}a{% endif %}{% if m %}b{% endif %}{% if s %}c{% endif %}", "abc"),
        ("{% if i %}a{% else if missing %}b{% endif %}", "a"),
        ("{% if not t %}a{% else if not n %}b{% endif %}", "b"),
        (
            "{% if t %}{% if f %}x{% else %}{% if not f %}y{% endif %}{% endif %}{% endif %}",
            "y",
        ),
    ];
    for (src, want) in cases {
        assert_eq!(diff(src, DATA).as_deref(), Ok(want), "{src:?}");
    }
}

#[test]
fn loops() {
    let cases = [
        ("{% for x in xs %}{% if x %}{{ loop.index }}{% endif %}{% endfor %}", None),
        (
            "{% for u in users %}{{ loop.index }}:{{ u.name }}{% if loop.first %}F{% endif %}{% if loop.last %}L{% endif %};{% endfor %}",
            Some("0:Ann &amp; BoF;1:CyL;"),
        ),
        (
            "{% for u in users %}{% for t in u.tags %}{{ u.name }}/{{ t }}/{{ loop.index }}/{{ loop.last }} {% endfor %}{{ loop.index }}|{% endfor %}",
            None,
        ),
        ("{% for k, v in m %}{{ k }}={% if v %}y{% endif %},{% endfor %}", Some("a=y,b=y,c=y,")),
        ("{% for k, v in m.c %}{{ k }}{{ v.0 }}{% endfor %}", Some("d10")),
        ("{% for k, k in m %}{{ k }}{% endfor %}", Some("abc")),
        ("{% for x in e %}never{% endfor %}{% for k, v in em %}never{% endfor %}", Some("")),
        ("{% for loop in xs %}{% if loop.first %}{{ loop.index }}{% endif %}{% endfor %}", Some("0")),
        ("{% for s in users %}{{ s.age }}{% endfor %}{{ s }}", None),
        ("{% for u in users %}{% if loop %}{{ u.age }}{% endif %}{% endfor %}", Some("300")),
        (
            "{% for u in users %}{% for k, v in loop %}{{ k }}={{ v }} {% endfor %}|{% endfor %}",
            Some("first=true index=0 last=false |first=false index=1 last=true |"),
        ),
        (
            "{% for u in users %}{% with loop as l %}{{ l.index }}{{ l.last }}{% endwith %}{% endfor %}",
            Some("0false1true"),
        ),
        ("{% for x in xs.6 %}{{ x }}{% endfor %}", Some("12")),
        ("{% for k, v in m %}{% if k %}{{ k | raw }}{% endif %}{% endfor %}", Some("abc")),
    ];
    for (src, want) in cases {
        let got = diff(src, DATA).unwrap_or_else(|e| panic!("{src:?}: {e}"));
        if let Some(want) = want {
            assert_eq!(got, want, "{src:?}");
        }
    }
}

#[test]
fn with_blocks() {
    let cases = [
        ("{% with m.c as w %}{{ w.d.0 }}{% endwith %}", "10"),
        ("{% with s as i %}{{ i }}{% endwith %}{{ i }}", "a&amp;b&lt;c&gt;&quot;d&#x27;e42"),
        (
            "{% for u in users %}{% with u.name as u %}{{ u }}{% endwith %}{% endfor %}",
            "Ann &amp; BoCy",
        ),
        ("{% with i as loop %}{{ loop }}{% endwith %}", "42"),
        (
            "{% for x in e %}{% endfor %}{% for u in users %}{% with i as loop %}{{ loop }}{% endwith %}{% endfor %}",
            "4242",
        ),
    ];
    for (src, want) in cases {
        assert_eq!(diff(src, DATA).as_deref(), Ok(want), "{src:?}");
    }
    // A `with` variable's members are looked up in it, never past it.
    assert!(diff("{% with m as i %}{{ i.zz }}{% endwith %}", DATA).is_err());
}

#[test]
fn includes() {
    let ctx = context(DATA);
    let banner = template("<{{ s }}{% if u %}!{% endif %}>");
    let item = template("[{{ it.name }}#{{ loop.index }}{% if loop.last %}.{% endif %}]");
    let key = template("({{ key }}|{{ version }})");
    let scoped = template("{{ name }}:{{ age }};");
    let nested = template("{{ name }}:{% include \"item\" %}");
    let lone = template("{{ s }}");
    let meta = template("{{ index }}{% if first %}F{% endif %}{{ last }};");
    let outer = template("<{% include \"item\" %}>");
    let me = template("x{% include \"me\" %}");
    let deep: Vec<CompiledTemplate> = (0..20)
        .map(|i| template(&format!("{i}{{% include \"d{}\" %}}", i + 1)))
        .collect();
    let names: Vec<String> = (0..20).map(|i| format!("d{i}")).collect();
    let mut incs: Vec<(&str, &CompiledTemplate)> = vec![
        ("banner", &banner),
        ("item", &item),
        ("key", &key),
        ("scoped", &scoped),
        ("nested", &nested),
        ("lone", &lone),
        ("meta", &meta),
        ("outer", &outer),
        ("me", &me),
    ];
    incs.extend(names.iter().map(|n| n.as_str()).zip(deep.iter()));
    let end = template("end");
    incs.push(("d20", &end));

    let ok = |src: &str, want: &str| {
        let t = template(src);
        assert_eq!(
            differential(&t, &ctx, &incs).as_deref(),
            Ok(want),
            "{src:?}"
        );
    };
    ok(
        "{% include \"banner\" %}-{%- include \"key\" with page -%}-",
        "<a&amp;b&lt;c&gt;&quot;d&#x27;e!>-(/k|7)-",
    );
    // Without `with`, an include sees the whole stack, loop variables included.
    ok(
        "{% for it in users %}{% include \"item\" %}{% endfor %}",
        "[Ann &amp; Bo#0][Cy#1.]",
    );
    // ...also through another include.
    ok(
        "{% for it in users %}{% include \"outer\" %}{% endfor %}",
        "<[Ann &amp; Bo#0]><[Cy#1.]>",
    );
    // The loop map as an include's globals.
    ok(
        "{% for it in users %}{% include \"meta\" with loop %}{% endfor %}",
        "0Ffalse;1true;",
    );
    // With `with`, only the new globals: `it` and `loop` are behind the boundary.
    ok(
        "{% for it in users %}{% include \"scoped\" with it %}{% endfor %}",
        "Ann &amp; Bo:30;Cy:0;",
    );
    let t = template("{% for it in users %}{% include \"nested\" with it %}{% endfor %}");
    assert!(differential(&t, &ctx, &incs).is_err());
    let t = template("{% for it in users %}{% include \"lone\" with it %}{% endfor %}");
    assert!(differential(&t, &ctx, &incs).is_err());
    // Globals that are not a map: every lookup passes to the boundary and fails.
    let t = template("{% include \"lone\" with s %}");
    assert!(differential(&t, &ctx, &incs).is_err());
    let t = template("{% include \"banner\" with i %}");
    assert!(differential(&t, &ctx, &incs).is_err());
    // upon's depth counting: the main template plus 15 nested includes is fine, 16 is not.
    ok("{% include \"d6\" %}", "678910111213141516171819end");
    let t = template("{% include \"d5\" %}");
    assert!(differential(&t, &ctx, &incs).is_err());
    let t = template("{% include \"me\" %}");
    assert!(differential(&t, &ctx, &incs).is_err());
    // A missing include fails only when reached.
    ok("{% if f %}{% include \"nowhere\" %}{% endif %}ok", "ok");
}

#[test]
fn include_of_a_template_without_fast_program_uses_upon() {
    let ctx = context(DATA);
    let slow = template("{{ s | upper }}");
    assert!(!slow.has_fast_path());
    let main = template("<{% if t %}{% include \"slow\" %}{% endif %}>");
    assert!(main.has_fast_path());
    let incs = [("slow", &slow)];
    let mut out = Vec::new();
    assert!(render_fast_only(
        &main,
        Scope::of(&ctx.value),
        &incs,
        &Limits::default(),
        &mut out
    )
    .is_none());
    let mut upon = Vec::new();
    let upon_result = render_with_upon(&main, Scope::of(&ctx.value), &incs, &mut upon);
    let mut out = Vec::new();
    assert_eq!(
        render_into(&main, Scope::of(&ctx.value), &incs, &mut out),
        upon_result
    );
    assert_eq!(out, upon);
}

#[test]
fn include_inside_with_is_refused() {
    // upon resolves `with` variables against the included template's source at the
    // including template's offsets: such a template does not compile (render::compile).
    let ctx = context(DATA);
    let inc = template("no lookups");
    let e =
        compile_template("{% with s as w %}{% include \"inc\" %}{% endwith %}".into()).unwrap_err();
    assert!(
        e.to_string()
            .contains("an include without `with` inside a with block at line 1, column 18"),
        "{e}"
    );
    // Behind a boundary the outer `with` is invisible, so that is fine.
    let main = template("{% with s as w %}{% include \"inc\" with m %}{% endwith %}");
    assert_eq!(
        differential(&main, &ctx, &[("inc", &inc)]).unwrap(),
        "no lookups"
    );
}

#[test]
fn which_templates_get_a_fast_program() {
    for src in [
        "{{ a?.b }}",
        "{{ a.b?.c }}",
        "{{ \"lit\" }}",
        "{{ 1 }}",
        "{{ -1 }}",
        "{{ true }}",
        "{{ a | upper }}",
        "{{ a | raw | raw }}",
        "{{ a | raw: 1 }}",
        "{{ a . b }}",
        "{{ a. b }}",
        "{{ .a }}",
        "{{ f() }}",
        "{{ (a) }}",
        "{{ héllo }}",
        "{{ aé }}",
        "{% if a | raw %}{% endif %}",
        "{% if a == b %}{% endif %}",
        "{% for x in [1, 2] %}{% endfor %}",
        "{% with \"x\" as y %}{% endwith %}",
        "{% include \"a\\\"b\" %}",
        "{% include \"a\\nb\" %}",
        "{% include \"a\" with {} %}",
    ] {
        if let Ok(t) = compile_template(src.to_string()) {
            assert!(!t.has_fast_path(), "{src:?} should be left to upon");
        }
    }
    let chain = format!(
        "{{% if f %}}{}{{% else %}}last{{% endif %}}",
        "{% else if f %}".repeat(40)
    );
    assert_eq!(diff(&chain, DATA).unwrap(), "last");
    let deep = "{% if t %}".repeat(MAX_NESTING + 1) + &"{% endif %}".repeat(MAX_NESTING + 1);
    assert!(!template(&deep).has_fast_path());
    let deep = "{% if t %}".repeat(MAX_NESTING) + &"{% endif %}".repeat(MAX_NESTING);
    assert!(template(&deep).has_fast_path());
    for src in [
        "",
        "{{ a }}",
        "{{a.b.0|raw}}",
        "{{- a.b.c -}}",
        "{% if not a %}{% else if b %}{% else %}{% endif %}",
        "{% for k,v in m %}{% endfor %}",
        "{% with a.b as c %}{% endwith %}",
        "{% include \"x-y z\" %}{% include \"é\" with a.0 %}",
        "{# anything ?. \"x\" | upper() #}",
    ] {
        assert!(template(src).has_fast_path(), "{src:?} should be fast");
    }
    let t = template("{% include \"a\" %}{% include \"b\" with c %}{% include \"a\" %}");
    let p = compile(t.source()).unwrap();
    assert_eq!(p.include_names().collect::<Vec<_>>(), ["a", "b"]);
}

/// The template from ../shared/bench/gen.py, with data of the same shape.
const BENCH_PAGE: &str = r#"<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{{ product.title }} - {{ shop.name }}</title></head>
<body>
<nav>{% for c in breadcrumbs %}<a href="/c/{{ c.id }}">{{ c.name }}</a> &gt; {% endfor %}</nav>
<h1>{{ product.title }}</h1>
<div class="brand">{{ product.brand }}</div>
<div class="price">{{ product.price }}</div>
<ul class="gallery">{% for img in product.images %}<li><img src="{{ img }}"></li>{% endfor %}</ul>
<table class="skus">{% for s in skus %}<tr><td>{{ s.id }}</td><td>{{ s.name }}</td><td>{{ s.price }}</td><td>{% if s.in_stock %}in stock{% else %}sold out{% endif %}</td></tr>
{% endfor %}</table>
<div class="desc">{{ description_html | raw }}</div>
<ol class="reviews">{% for r in reviews %}<li><b>{{ r.user }}</b> {{ r.stars }} stars<p>{{ r.text }}</p></li>
{% endfor %}</ol>
<footer>{{ shop.name }} ({{ shop.score }})</footer>
</body></html>
"#;

#[test]
fn bench_page_is_fast_and_identical() {
    let data = r#"{
            "product": {"id": 1001, "title": "Phone X <Pro> & Max \"2026\"", "price": "5999.00",
                        "brand": "Acme", "images": ["//img/0.jpg", "//img/1.jpg"]},
            "skus": [{"id": 100100, "name": "Color 0 / 64GB", "price": "5999.00", "in_stock": false},
                     {"id": 100101, "name": "Color 1 / 128GB", "price": "6099.00", "in_stock": true}],
            "breadcrumbs": [{"id": 0, "name": "Phones"}, {"id": 1, "name": "Smart & Mobile"}],
            "shop": {"name": "Acme Official <Store>", "score": "9.8"},
            "description_html": "<p class=\"d0\">Feature 0: lorem</p>\n",
            "reviews": [{"user": "user0", "stars": 1, "text": "Great! <script>alert(1)</script>"},
                        {"user": "user1", "stars": 2, "text": "Great phone! Great phone! "}]
        }"#;
    let out = diff(BENCH_PAGE, data).unwrap();
    for want in [
        "Phone X &lt;Pro&gt; &amp; Max",
        "&lt;script&gt;alert(1)",
        "<p class=\"d0\">Feature 0",
        "Acme Official &lt;Store&gt; (9.8)",
        "sold out",
        "<td>100101</td>",
    ] {
        assert!(out.contains(want), "{want:?} missing from {out}");
    }
}
