//! Resolution through the public API: page mode, dimension mode, fallbacks, includes and modules,
//! against a fake Redis behind [`Inputs`].

use std::collections::HashMap;
use std::sync::Arc;

use dynpage_core::prepare::{Prepared, PreparedData, PreparedSnapshot};
use dynpage_core::render::CompiledTemplate;
use dynpage_core::resolve::{
    fallback_stages, resolve, resolve_dimensions, Dimension, Inputs, Loaded, Outcome, Page, Slot,
};
use dynpage_core::store::Fetch;
use dynpage_core::version::{Ask, DocMeta, Field, Variant};

mod common;
use common::{page, tpl, Cached, Store};

/// A fake Redis and a worker cache filled from it.
#[derive(Default)]
struct Fake {
    store: Store,
    cache: HashMap<String, Prepared>,
    fetched: Vec<Fetch>,
}

impl std::ops::Deref for Fake {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

impl std::ops::DerefMut for Fake {
    fn deref_mut(&mut self) -> &mut Store {
        &mut self.store
    }
}

impl Fake {
    fn load(&mut self, f: &Fetch) {
        self.fetched.push(f.clone());
        let value = self.store.fetch(f);
        self.cache.insert(f.cache_key(), value);
    }

    fn run(&mut self, key: &str, now: u64) -> Outcome {
        for _ in 0..10 {
            match resolve(key, now, &Ask::default(), self) {
                Outcome::Need(fs) => fs.iter().for_each(|f| self.load(f)),
                other => return other,
            }
        }
        panic!("did not converge")
    }
}

impl Inputs for Fake {
    fn meta(&mut self, page: bool, name: &str) -> Slot<Option<Arc<DocMeta>>> {
        Cached(&self.cache).meta(page, name)
    }
    fn snapshot(&mut self, key: &str, field: Field) -> Slot<Loaded<PreparedSnapshot>> {
        Cached(&self.cache).snapshot(key, field)
    }
    fn template(&mut self, name: &str, field: Field) -> Slot<Loaded<CompiledTemplate>> {
        Cached(&self.cache).template(name, field)
    }
    fn data(&mut self, key: &str) -> Slot<Loaded<PreparedData>> {
        Cached(&self.cache).data(key)
    }
}

fn render(p: &Page) -> String {
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    p.render_into(None, false, &mut out, &mut skipped).unwrap();
    assert!(skipped.is_empty());
    String::from_utf8(out).unwrap()
}

/// Renders with failed modules left out; returns the output and the modules left out.
fn render_skipping(p: &Page) -> (String, Vec<String>) {
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    p.render_into(None, true, &mut out, &mut skipped).unwrap();
    let names = p
        .skipped_modules
        .iter()
        .chain(&skipped)
        .map(|m| m.name.clone())
        .collect();
    (String::from_utf8(out).unwrap(), names)
}

fn run_with(f: &mut Fake, key: &str, now: u64, ask: &Ask) -> Outcome {
    for _ in 0..10 {
        match resolve(key, now, ask, f) {
            Outcome::Need(fs) => fs.iter().for_each(|x| f.load(x)),
            other => return other,
        }
    }
    panic!("did not converge")
}

#[test]
fn fallback_takes_the_version_before_the_broken_one() {
    let mut f = Fake::default();
    f.put(
        page("/a"),
        "100",
        r#"{"template":{"name":"t"},"data":{"x":1}}"#,
    );
    f.put(page("/a"), "200", r#"{"template":{"name":"t"},"data":"#);
    f.put(tpl("t"), "10", "good {{ x }}");
    f.put(tpl("t"), "20", "bad {{ x.y }}");
    // The newest page version is malformed: Broken, naming it.
    let Outcome::Broken { version, .. } = f.run("/a", 300) else {
        panic!()
    };
    assert_eq!(version, Some(Field::Version(200)));
    let stages = fallback_stages(Variant::Production, version, None);
    assert_eq!(stages, vec![(Some(200), None)]);
    let ask = Ask {
        before_page: Some(200),
        ..Ask::default()
    };
    let Outcome::Ready(p) = run_with(&mut f, "/a", 300, &ask) else {
        panic!()
    };
    assert_eq!(p.field, Field::Version(100));
    // Version 100 renders with template 20, which fails; its previous version renders.
    assert!(p
        .render_into(None, true, &mut Vec::new(), &mut Vec::new())
        .is_err());
    let stages = fallback_stages(p.variant, Some(p.field), Some(Field::Version(20)));
    assert_eq!(
        stages,
        vec![(None, Some(20)), (Some(100), None), (Some(100), Some(20))]
    );
    let ask = Ask {
        before_page: Some(200),
        before_template: Some(20),
        ..Ask::default()
    };
    let Outcome::Ready(p) = run_with(&mut f, "/a", 300, &ask) else {
        panic!()
    };
    assert_eq!(render(&p), "good 1");
    // Nothing before the oldest version.
    let ask = Ask {
        before_page: Some(100),
        ..Ask::default()
    };
    assert!(matches!(
        run_with(&mut f, "/a", 300, &ask),
        Outcome::NotFound(_)
    ));
    assert_eq!(
        fallback_stages(Variant::Gray, Some(Field::Ab), None),
        vec![(None, None)]
    );
}

#[test]
fn inline_page_production_version() {
    let mut f = Fake::default();
    f.put(
        page("/a"),
        "100",
        r#"{"template":"v1 {{ x }}","data":{"x":"<"}}"#,
    );
    f.put(
        page("/a"),
        "200",
        r#"{"template":"v2 {{ x }}","data":{"x":">"}}"#,
    );
    let Outcome::Ready(p) = f.run("/a", 150) else {
        panic!()
    };
    assert_eq!(render(&p), "v1 &lt;");
    assert_eq!(p.last_modified_ms, Some(100));
    let Outcome::Ready(p2) = f.run("/a", 250) else {
        panic!()
    };
    assert_eq!(render(&p2), "v2 &gt;");
    assert_ne!(p.etag, p2.etag);
}

#[test]
fn named_template_follows_release_exact_version_does_not() {
    let mut f = Fake::default();
    f.put(tpl("item"), "10", "old {{ n }}");
    f.put(tpl("item"), "20", "new {{ n }}");
    f.put(
        page("/follow"),
        "5",
        r#"{"template":{"name":"item"},"data":{"n":1}}"#,
    );
    f.put(
        page("/pinned"),
        "5",
        r#"{"template":{"name":"item","version":10},"data":{"n":2}}"#,
    );
    let Outcome::Ready(p) = f.run("/follow", 15) else {
        panic!()
    };
    assert_eq!(render(&p), "old 1");
    let Outcome::Ready(p) = f.run("/follow", 25) else {
        panic!()
    };
    assert_eq!(render(&p), "new 1");
    assert_eq!(p.last_modified_ms, Some(20));
    let Outcome::Ready(p) = f.run("/pinned", 25) else {
        panic!()
    };
    assert_eq!(render(&p), "old 2");
}

#[test]
fn includes_resolve_transitively_in_one_fetch_per_level() {
    let mut f = Fake::default();
    f.put(tpl("main"), "1", r#"[{% include "a" %}|{% include "b" %}]"#);
    f.put(tpl("a"), "1", r#"A{% include "c" %}"#);
    f.put(tpl("b"), "1", "B");
    f.put(tpl("c"), "1", "C");
    f.put(page("/p"), "1", r#"{"template":{"name":"main"},"data":{}}"#);
    let Outcome::Ready(p) = f.run("/p", 5) else {
        panic!()
    };
    assert_eq!(render(&p), "[AC|B]");
    // meta /p, field /p, meta main, field main, {meta a, meta b}, {a, b}, meta c, c
    assert_eq!(f.fetched.len(), 10);
}

#[test]
fn missing_and_broken_things() {
    let mut f = Fake::default();
    assert!(matches!(f.run("/none", 5), Outcome::NotFound(_)));
    f.put(page("/future"), "100", r#"{"template":"x"}"#);
    assert!(matches!(f.run("/future", 5), Outcome::NotFound(_)));
    f.put(page("/bad"), "1", "{oops");
    let Outcome::Broken { version, cause, .. } = f.run("/bad", 5) else {
        panic!()
    };
    assert_eq!(version, Some(Field::Version(1)));
    assert!(cause.contains("JSON"), "{cause}");
    f.put(
        page("/noinc"),
        "1",
        r#"{"template":"{% include \"gone\" %}"}"#,
    );
    let Outcome::Broken { cause, .. } = f.run("/noinc", 5) else {
        panic!()
    };
    assert!(
        cause.contains("gone") && cause.contains("does not exist"),
        "{cause}"
    );
    f.put(page("/notpl"), "1", r#"{"template":{"name":"nope"}}"#);
    let Outcome::Broken { cause, .. } = f.run("/notpl", 5) else {
        panic!()
    };
    assert!(cause.contains("nope"), "{cause}");
}

#[test]
fn rollback_pin_selects_older_version() {
    let mut f = Fake::default();
    f.put(page("/a"), "1", r#"{"template":"one"}"#);
    f.put(page("/a"), "2", r#"{"template":"two"}"#);
    f.pins.insert("page:/a".into(), "1".into());
    let Outcome::Ready(p) = f.run("/a", 5) else {
        panic!()
    };
    assert_eq!(render(&p), "one");
}

fn dims(spec: &[(&'static str, &'static str, bool)]) -> Vec<Dimension<'static>> {
    spec.iter()
        .map(|&(name, key, required)| Dimension {
            name,
            key,
            required,
        })
        .collect()
}

fn run_dims(f: &mut Fake, name: &str, d: &[Dimension<'_>]) -> (Outcome, usize) {
    for round in 1..10 {
        match resolve_dimensions(name, d, 5, &Ask::default(), f) {
            Outcome::Need(fs) => fs.iter().for_each(|x| f.load(x)),
            other => return (other, round - 1),
        }
    }
    panic!("did not converge")
}

#[test]
fn dimensions_are_fetched_together_and_rendered_under_their_names() {
    let mut f = Fake::default();
    f.put(
        tpl("item"),
        "1",
        "{{ base.title }}|{{ shop.name }}|{% if extra %}x{% else %}no extra{% endif %}|\
         {{ page.key }}@{{ page.version }}",
    );
    f.data
        .insert("item:1:base".into(), r#"{"title":"T<1>"}"#.into());
    f.data.insert("shop:9".into(), r#"{"name":"S"}"#.into());
    let d = dims(&[
        ("base", "item:1:base", true),
        ("shop", "shop:9", false),
        ("extra", "extra:1", false),
    ]);
    let first = resolve_dimensions("item", &d, 5, &Ask::default(), &mut f);
    let Outcome::Need(need) = first else {
        panic!("nothing cached yet")
    };
    assert_eq!(
        need.len(),
        4,
        "template meta and every dimension at once: {need:?}"
    );
    let (Outcome::Ready(p), rounds) = run_dims(&mut f, "item", &d) else {
        panic!()
    };
    // The template's meta and the three keys together, then the template's version.
    assert_eq!(rounds, 2);
    assert_eq!(render(&p), "T&lt;1&gt;|S|no extra|item@1");
    assert_eq!(p.page_field(), None);
    assert_eq!(p.last_modified_ms, None);
    assert!(p.bad_dimensions.is_empty());

    // A dimension changing changes the ETag; nothing else does.
    let etag = p.etag;
    let (Outcome::Ready(again), _) = run_dims(&mut f, "item", &d) else {
        panic!()
    };
    assert_eq!(again.etag, etag);
    f.data.insert("shop:9".into(), r#"{"name":"S2"}"#.into());
    f.load(&Fetch::Data("shop:9".into()));
    let (Outcome::Ready(p), _) = run_dims(&mut f, "item", &d) else {
        panic!()
    };
    assert_ne!(p.etag, etag);
    assert_eq!(render(&p), "T&lt;1&gt;|S2|no extra|item@1");
}

#[test]
fn missing_empty_and_broken_dimensions() {
    let mut f = Fake::default();
    f.put(tpl("item"), "1", "[{{ base }}]");
    f.data.insert("bad".into(), "{not json".into());
    // Missing and required: 404.
    let (out, _) = run_dims(&mut f, "item", &dims(&[("base", "nope", true)]));
    assert!(
        matches!(&out, Outcome::NotFound(c) if c.contains("\"base\"")),
        "{out:?}"
    );
    // An empty key: missing (404 if required, null with a note if not).
    let (out, _) = run_dims(&mut f, "item", &dims(&[("base", "", true)]));
    assert!(matches!(out, Outcome::NotFound(_)));
    let (Outcome::Ready(p), _) = run_dims(&mut f, "item", &dims(&[("base", "", false)])) else {
        panic!()
    };
    assert_eq!(render(&p), "[]");
    assert!(
        p.bad_dimensions[0].contains("empty"),
        "{:?}",
        p.bad_dimensions
    );
    // Not JSON: null with a note, or a broken page (500, no earlier version to try).
    let (Outcome::Ready(p), _) = run_dims(&mut f, "item", &dims(&[("base", "bad", false)])) else {
        panic!()
    };
    assert_eq!(render(&p), "[]");
    assert!(
        p.bad_dimensions[0].contains("not JSON"),
        "{:?}",
        p.bad_dimensions
    );
    let (out, _) = run_dims(&mut f, "item", &dims(&[("base", "bad", true)]));
    let Outcome::Broken {
        version, template, ..
    } = out
    else {
        panic!("{out:?}")
    };
    assert_eq!((version, template), (None, None));
    // No such template: 404.
    let (out, _) = run_dims(&mut f, "nope", &dims(&[]));
    assert!(matches!(out, Outcome::NotFound(_)));
}

#[test]
fn dimension_mode_renders_what_page_mode_renders() {
    let data = r#"{"product":{"name":"P & Q","price":12.5,"tags":["a","b"]},
        "shop":{"name":"S"},"html":"<b>x</b>"}"#;
    let src = "{{ product.name }} {{ product.price }} {% for t in product.tags %}{{ t }}\
               {% endfor %}{{ shop.name }}{{ html | raw }}{{ page.variant }}";
    let mut f = Fake::default();
    f.put(tpl("t"), "1", src);
    f.put(
        page("/p"),
        "1",
        &format!(r#"{{"template":{{"name":"t"}},"data":{data}}}"#),
    );
    let json: serde_json::Value = serde_json::from_str(data).unwrap();
    for (k, v) in json.as_object().unwrap() {
        f.data.insert(format!("p:{k}"), v.to_string());
    }
    let Outcome::Ready(page_mode) = f.run("/p", 5) else {
        panic!()
    };
    let d = dims(&[
        ("product", "p:product", true),
        ("shop", "p:shop", true),
        ("html", "p:html", true),
    ]);
    let (Outcome::Ready(dim_mode), _) = run_dims(&mut f, "t", &d) else {
        panic!()
    };
    assert_eq!(render(&page_mode), render(&dim_mode));
}

#[test]
fn failed_modules_render_as_nothing_plain_includes_fail_the_page() {
    let mut f = Fake::default();
    f.put(
        tpl("home"),
        "1",
        r#"<{% include "banner" with hero %}|{% include "gone" with hero %}|{% include "bad" with hero %}|{% include "loop" with hero %}>"#,
    );
    f.put(tpl("banner"), "1", "B:{{ title }}");
    f.put(tpl("bad"), "1", "{{ title.deeper }}");
    f.put(tpl("loop"), "1", r#"L{% include "loop" with self %}"#);
    f.put(
        page("/home"),
        "1",
        r#"{"template":{"name":"home"},"data":{"hero":{"title":"H","self":{}}}}"#,
    );
    let Outcome::Ready(p) = f.run("/home", 5) else {
        panic!()
    };
    // "gone" was left out when resolving; "bad" and the recursive "loop" when rendering.
    assert_eq!(p.skipped_modules.len(), 1);
    assert_eq!(p.skipped_modules[0].name, "gone");
    let (out, left_out) = render_skipping(&p);
    assert_eq!(out, "<B:H|||>");
    assert_eq!(left_out, vec!["gone", "bad", "loop"]);
    // When the location says otherwise, a failed module fails the render.
    assert!(p
        .render_into(None, false, &mut Vec::new(), &mut Vec::new())
        .is_err());
    // A plain include is part of the layout: missing, it breaks the page.
    f.put(tpl("plain"), "1", r#"{% include "gone" %}"#);
    f.put(page("/plain"), "1", r#"{"template":{"name":"plain"}}"#);
    assert!(matches!(f.run("/plain", 5), Outcome::Broken { .. }));
}

#[test]
fn request_values_override_and_are_visible() {
    let mut f = Fake::default();
    f.put(
        page("/r"),
        "1",
        r#"{"template":"{{ request.city }}","data":{}}"#,
    );
    let Outcome::Ready(p) = f.run("/r", 5) else {
        panic!()
    };
    let req = dynpage_core::render::request_value([("city".into(), "<Bj>".into())]);
    let mut out = Vec::new();
    p.render_into(Some(&req), true, &mut out, &mut Vec::new())
        .unwrap();
    assert_eq!(out, b"&lt;Bj&gt;");
}
