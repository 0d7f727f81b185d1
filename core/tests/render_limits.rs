//! Nesting limits, the compile stack and the render budget, through compile and both renderers.

use std::time::{Duration, Instant};

use dynpage_core::limits::{
    Exceeded, Limits, COMPILE_STACK_BYTES, MAX_BLOCK_NESTING, MAX_EXPR_NESTING, MAX_INCLUDES,
    MAX_STEPS,
};
use dynpage_core::render::{
    build_context, compile, engine, one_line, render_into, render_limited,
    render_skipping_failed_modules, render_with_upon, CompiledTemplate, PageInfo, RenderError,
    Scope, TemplateError, Value,
};

fn ctx_of(data: serde_json::Value) -> Value {
    build_context(
        data.as_object().expect("an object"),
        PageInfo {
            key: "/k",
            version: "1",
            variant: "production",
        },
        &[],
    )
}

fn on_stack<T: Send + 'static>(bytes: usize, f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(bytes)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("no panic")
}

/// Templates at both limits at once, in every shape upon's compiler recurses on.
fn at_the_limits() -> Vec<String> {
    let n = MAX_BLOCK_NESTING;
    let e = MAX_EXPR_NESTING;
    let parens = format!("{}x{}", "(".repeat(e), ")".repeat(e));
    // (After `for z in`, upon lexes a number as an index: a literal list of names.)
    let list = format!("{}y{}", "[".repeat(e), "]".repeat(e));
    vec![
        // Nested ifs, the deepest with the deepest condition.
        format!(
            "{}{{% if {parens} %}}y{{% endif %}}{}",
            "{% if a %}".repeat(n - 1),
            "{% endif %}".repeat(n - 1)
        ),
        // for and with, the deepest looping over a nested list literal.
        format!(
            "{}{{% for z in {list} %}}{{{{ z }}}}{{% endfor %}}{}",
            "{% for x in xs %}{% with x as y %}".repeat((n - 1) / 2),
            "{% endwith %}{% endfor %}".repeat((n - 1) / 2)
        ),
        // An else-if chain.
        format!(
            "{{% if a %}}1{}{{% else %}}{{{{ {parens} }}}}{{% endif %}}",
            "{% else if b %}2".repeat(n - 1)
        ),
        // Filters, and a map literal.
        format!(
            "{}{{{{ x{} }}}}{{{{ {}1{} | raw }}}}{}",
            "{% if a %}".repeat(n - 1),
            " | raw".repeat(e),
            "{\"k\": ".repeat(e - 2),
            " }".repeat(e - 2),
            "{% endif %}".repeat(n - 1)
        ),
    ]
}

#[test]
fn templates_at_the_limits_compile_on_a_quarter_of_the_compile_stack() {
    // Measured: a release build compiles these within 256 KiB; a debug build's frames are
    // about eight times larger, so it gets the whole stack the fetch threads get.
    let stack = if cfg!(debug_assertions) {
        COMPILE_STACK_BYTES
    } else {
        COMPILE_STACK_BYTES / 4
    };
    for src in at_the_limits() {
        let shown = src.chars().take(60).collect::<String>();
        let result = on_stack(stack, move || {
            compile(src)
                .map(|t| t.has_fast_path())
                .map_err(|e| e.to_string())
        });
        assert!(result.is_ok(), "{shown}...: {result:?}");
    }
}

#[test]
fn deeper_templates_are_refused_before_upon_without_recursing() {
    // The shapes of issue 12 D1, and far deeper: refused on a stack far too small for upon
    // to compile them, so nothing recursed.
    let cases = [
        (
            format!("{{{{ {}x{} }}}}", "(".repeat(1500), ")".repeat(1500)),
            false,
            (1, 104),
        ),
        (
            format!("{{{{ {}x{} }}}}", "(".repeat(10_000), ")".repeat(10_000)),
            false,
            (1, 104),
        ),
        (
            format!(
                "{}x{}",
                "{% if a %}".repeat(3000),
                "{% endif %}".repeat(3000)
            ),
            true,
            (1, 1001),
        ),
        (
            format!(
                "\n{}x{}",
                "{% if a %}\n".repeat(10_000),
                "{% endif %}".repeat(10_000)
            ),
            true,
            (102, 1),
        ),
        (
            format!(
                "{}1{}",
                "{{ [".to_string() + &"[".repeat(10_000),
                "]".repeat(10_001) + " }}"
            ),
            false,
            (1, 104),
        ),
        (
            format!("{{{{ x{} }}}}", " | raw".repeat(10_000)),
            false,
            (1, 6 + 6 * 100),
        ),
    ];
    for (src, blocks, (line, column)) in cases {
        let e = on_stack(128 << 10, move || compile(src).map(|_| ()));
        match e {
            Err(TemplateError::TooDeep(d)) => {
                assert_eq!((d.blocks, d.line, d.column), (blocks, line, column), "{d}");
            }
            other => panic!("refused as too deep expected, got {other:?}"),
        }
    }
    let e = compile(format!(
        "{}x{}",
        "{% if a %}".repeat(101),
        "{% endif %}".repeat(101)
    ))
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "template is nested too deep: blocks (if, else if, for, with) nest more than 100 \
         deep at line 1, column 1001"
    );
}

/// `n` templates `t0`..: each includes the next `per` times; the last writes `leaf`.
fn fan_out(n: usize, per: usize, leaf: &str) -> Vec<(String, CompiledTemplate)> {
    (0..n)
        .map(|i| {
            let src = if i + 1 == n {
                leaf.to_string()
            } else {
                format!("{{% include \"t{}\" %}}", i + 1).repeat(per)
            };
            (format!("t{i}"), compile(src).expect("compiles"))
        })
        .collect()
}

fn render_fan_out(leaf: &str, limits: &Limits) -> (Result<(), RenderError>, Vec<u8>, Duration) {
    let ts = fan_out(10, 8, leaf);
    let incs: Vec<(&str, &CompiledTemplate)> =
        ts.iter().skip(1).map(|(n, t)| (n.as_str(), t)).collect();
    let ctx = ctx_of(serde_json::json!({}));
    let mut out = Vec::new();
    let start = Instant::now();
    let r = render_limited(&ts[0].1, Scope::of(&ctx), &incs, limits, &mut out);
    (r, out, start.elapsed())
}

#[test]
fn an_include_fan_out_stops_at_the_include_budget() {
    // 8^9 expansions: hours without a budget. The leaf with a string literal is outside the
    // fast subset, so that one renders with upon.
    for leaf in ["x", "{{ \"x\" }}"] {
        let (r, out, took) = render_fan_out(leaf, &Limits::default());
        let e = r.unwrap_err();
        assert_eq!(e.exceeded, Some(Exceeded::Includes(MAX_INCLUDES)), "{leaf}");
        assert!(e.template.is_none());
        assert!(out.is_empty());
        assert!(took < Duration::from_secs(2), "{leaf}: {took:?}");
        assert!(e.to_string().contains("over 10000 includes"), "{e}");
    }
    // With includes to spare, the steps run out instead.
    let limits = Limits {
        max_includes: u32::MAX,
        max_steps: 50_000,
        ..Limits::default()
    };
    for leaf in ["x", "{{ \"x\" }}"] {
        let (r, _, _) = render_fan_out(leaf, &limits);
        assert_eq!(
            r.unwrap_err().exceeded,
            Some(Exceeded::Steps(50_000)),
            "{leaf}"
        );
    }
}

#[test]
fn output_stops_at_its_bound_in_both_renderers() {
    let data = serde_json::json!({"xs": vec![0; 1000], "s": "0123456789".repeat(10)});
    let ctx = ctx_of(data);
    for extra in ["", "{{ \"\" }}"] {
        // 100 MB of output without a bound.
        let t = compile(format!(
            "{{% for a in xs %}}{{% for b in xs %}}{{{{ s }}}}{{% endfor %}}{{% endfor %}}{extra}"
        ))
        .unwrap();
        assert_eq!(t.has_fast_path(), extra.is_empty());
        let mut out = Vec::new();
        let e = render_limited(
            &t,
            Scope::of(&ctx),
            &[],
            &Limits::with_max_output(1 << 20),
            &mut out,
        )
        .unwrap_err();
        assert_eq!(e.exceeded, Some(Exceeded::Output(1 << 20)), "{extra:?}");
        assert!(out.is_empty());
        // Exactly at the bound is fine, a byte over is not.
        let t = compile(format!("{{{{ s }}}}{extra}")).unwrap();
        let mut out = Vec::new();
        render_limited(
            &t,
            Scope::of(&ctx),
            &[],
            &Limits::with_max_output(100),
            &mut out,
        )
        .unwrap();
        assert_eq!(out.len(), 100);
        let mut out = b"before".to_vec();
        let e = render_limited(
            &t,
            Scope::of(&ctx),
            &[],
            &Limits::with_max_output(99),
            &mut out,
        )
        .unwrap_err();
        assert_eq!(e.exceeded, Some(Exceeded::Output(99)));
        assert_eq!(out, b"before");
    }
}

#[test]
fn loops_that_write_nothing_still_count_their_turns() {
    // 10^9 turns that write nothing: upon has no hook per turn, so its source counts them.
    let ctx = ctx_of(serde_json::json!({"xs": vec![0; 1000]}));
    for extra in ["", "{{ \"\" }}"] {
        let t = compile(format!(
            "{{% for a in xs %}}{{% for b in xs -%}}  {{%- for c in xs %}}{{%- endfor %}}\
             {{% endfor %}}{{% endfor %}}{extra}"
        ))
        .unwrap();
        let start = Instant::now();
        let e = render_into(&t, Scope::of(&ctx), &[], &mut Vec::new()).unwrap_err();
        assert_eq!(e.exceeded, Some(Exceeded::Steps(MAX_STEPS)), "{extra:?}");
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    }
}

#[test]
fn a_large_legitimate_page_is_within_the_default_budget() {
    // 100,000 loop turns, 20 includes per item of a 40-item list, 1.5 MB of output.
    let skus: Vec<serde_json::Value> = (0..40)
        .map(|i| serde_json::json!({"id": i, "name": format!("sku <{i}>")}))
        .collect();
    let ctx = ctx_of(serde_json::json!({"xs": vec![1; 100_000], "skus": skus}));
    let card = compile("<li>{{ id }}: {{ name }}</li>".to_string()).unwrap();
    for extra in ["", "{{ \"\" }}"] {
        let t = compile(format!(
            "{{% for x in xs %}}{{{{ x }}}},{{% endfor %}}\
             {{% for s in skus %}}{}{{% endfor %}}{extra}",
            "{% include \"card\" with s %}".repeat(20)
        ))
        .unwrap();
        let mut limited = Vec::new();
        render_limited(
            &t,
            Scope::of(&ctx),
            &[("card", &card)],
            &Limits::default(),
            &mut limited,
        )
        .unwrap();
        let unbounded = Limits {
            max_output: usize::MAX,
            max_includes: u32::MAX,
            max_steps: u64::MAX,
        };
        let mut reference = Vec::new();
        render_limited(
            &t,
            Scope::of(&ctx),
            &[("card", &card)],
            &unbounded,
            &mut reference,
        )
        .unwrap();
        assert_eq!(limited, reference);
        assert!(limited.len() > 200_000);
    }
}

#[test]
fn a_render_over_budget_is_the_page_failing_not_a_module() {
    let ts = fan_out(10, 8, "x");
    let mut incs: Vec<(&str, &CompiledTemplate)> =
        ts.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let main = compile("<{% include \"t0\" with page %}>".to_string()).unwrap();
    let ctx = ctx_of(serde_json::json!({}));
    let (mut out, mut skipped) = (Vec::new(), Vec::new());
    let e = render_skipping_failed_modules(
        &main,
        Scope::of(&ctx),
        &incs,
        &Limits::default(),
        &[],
        &mut out,
        &mut skipped,
    )
    .unwrap_err();
    assert!(e.exceeded.is_some());
    assert!(skipped.is_empty());
    // A module known to fail is left out from the start: one render, nothing reported.
    let bad = compile("{{ nope.deeper }}".to_string()).unwrap();
    incs.push(("bad", &bad));
    let main = compile("<{% include \"bad\" with page %}|{% include \"bad\" with page %}>".into())
        .unwrap();
    let known = vec!["bad".to_string()];
    render_skipping_failed_modules(
        &main,
        Scope::of(&ctx),
        &incs,
        &Limits::default(),
        &known,
        &mut out,
        &mut skipped,
    )
    .unwrap();
    assert_eq!(out, b"<|>");
    assert!(skipped.is_empty());
    // Not known: found, reported, left out.
    out.clear();
    render_skipping_failed_modules(
        &main,
        Scope::of(&ctx),
        &incs,
        &Limits::default(),
        &[],
        &mut out,
        &mut skipped,
    )
    .unwrap();
    assert_eq!(out, b"<|>");
    assert_eq!(skipped.len(), 1);
}

/// A tiny xorshift, for reproducible random templates.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// What plain upon (the author's source, no turn counting) says of `src`: its output or
/// its error on one line.
fn plain_upon(src: &str, inc: &str, ctx: &Value) -> Option<Result<String, String>> {
    let main = engine().compile(src.to_string()).ok()?;
    let inc = engine().compile(inc.to_string()).ok()?;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        main.render_from(engine(), ctx)
            .with_template_fn(|_| Ok(&inc))
            .to_string()
    }));
    Some(match result.ok()? {
        Ok(s) => Ok(s),
        Err(e) => Err(one_line(&e)),
    })
}

#[test]
fn counting_turns_changes_nothing_upon_does() {
    // Random fragments, loops and literals among them (outside the fast subset, so upon
    // renders): compiling and rendering the counting source gives exactly what upon gives
    // for the author's source, errors and their positions included.
    let pieces = [
        "{% for x in xs %}",
        "{% for k, v in m %}",
        "{%- for x in xs -%}",
        "{% endfor %}",
        "{%- endfor %}",
        "{% endfor -%}",
        "{{ x }}",
        "{{ k }}",
        "{{ v }}",
        "{{ nope }}",
        "{{ x.y }}",
        "{{ \"lit\" }}",
        "{{ loop.index }}",
        "{% if x %}",
        "{% else %}",
        "{% endif %}",
        "{% include \"inc\" %}",
        "{% include \"inc\" with x %}",
        " ",
        "\n",
        "  ",
        "a",
        "é",
        "世界",
        "{#",
        "#}",
        "{",
        "}",
        "-",
        "{{ [1, 2] }}",
        "{% with x as w %}",
        "{% endwith %}",
        "{{ xs }}",
    ];
    let ctx = ctx_of(serde_json::json!({"xs": [1, 2, 3], "m": {"a": 1, "b": 2}}));
    let inc_src = "<{% for i in xs %}{{ i }}{% endfor %}{{ nope2 }}>";
    let inc = compile(inc_src.to_string()).unwrap();
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let (mut same_output, mut same_error) = (0, 0);
    for _ in 0..30_000 {
        let n = 1 + rng.below(12);
        let src: String = (0..n).map(|_| pieces[rng.below(pieces.len())]).collect();
        let ours = compile(src.clone());
        let plain = engine().compile(src.clone());
        match (&ours, &plain) {
            (Ok(_), Ok(_)) => {}
            (Err(TemplateError::Syntax(a)), Err(b)) => {
                assert_eq!(a, &one_line(b), "{src:?}");
                continue;
            }
            // Refused (see include_in_with_error), though upon compiles it.
            (Err(TemplateError::Syntax(a)), Ok(_)) if a.contains("inside a with block") => continue,
            _ => panic!("{src:?}: ours {:?}, upon's {:?}", ours.err(), plain.err()),
        }
        let Some(expected) = plain_upon(&src, inc_src, &ctx) else {
            continue;
        };
        let Ok(t) = ours else { continue };
        let mut out = Vec::new();
        let got = render_with_upon(&t, Scope::of(&ctx), &[("inc", &inc)], &mut out)
            .map(|()| String::from_utf8(out).unwrap())
            .map_err(|e| e.message);
        match (&got, &expected) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a, b, "{src:?}");
                same_output += 1;
            }
            (Err(a), Err(b)) => {
                assert_eq!(a, b, "{src:?}");
                same_error += 1;
            }
            _ => panic!("{src:?}: ours {got:?}, upon's {expected:?}"),
        }
    }
    assert!(
        same_output > 1000 && same_error > 1000,
        "{same_output} {same_error}"
    );
}
