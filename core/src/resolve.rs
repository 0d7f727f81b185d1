//! From a page key to everything its render needs: page version, snapshot, template, includes.
//!
//! `resolve` asks an [`Inputs`] (the worker cache) for each piece. When pieces are missing it
//! answers [`Outcome::Need`] with every piece it can name at that point, so the caller fetches
//! them in one round trip and calls again.

use std::sync::Arc;

use crate::layout::DocRef;
use crate::prepare::{PreparedSnapshot, PreparedTemplate};
use crate::render::CompiledTemplate;
use crate::store::Fetch;
use crate::version::{Ask, DocMeta, Field, Fnv, Variant};

/// Whether a cached piece is there. `Have(None)` means Redis said it does not exist.
pub enum Slot<T> {
    Have(T),
    Missing,
}

/// What a looked-up field holds.
pub type Loaded<T> = Option<Result<Arc<T>, Arc<str>>>;

/// Read access to the cache. `page` selects the page document space, else templates.
pub trait Inputs {
    fn meta(&mut self, page: bool, name: &str) -> Slot<Option<Arc<DocMeta>>>;
    fn snapshot(&mut self, key: &str, field: Field) -> Slot<Loaded<PreparedSnapshot>>;
    fn template(&mut self, name: &str, field: Field) -> Slot<Loaded<CompiledTemplate>>;
}

/// One template used by a render.
#[derive(Debug, Clone)]
pub struct UsedTemplate {
    pub name: String,
    pub field: Field,
    pub compiled: Arc<CompiledTemplate>,
}

/// Everything a render needs.
#[derive(Debug)]
pub struct Page {
    pub variant: Variant,
    pub field: Field,
    pub snapshot: Arc<PreparedSnapshot>,
    /// The main template: the snapshot's inline one, or a template document's version.
    pub template: Arc<CompiledTemplate>,
    pub template_field: Option<(String, Field)>,
    /// Included templates, transitively (allocated only when there are any).
    pub includes: Vec<UsedTemplate>,
    /// Activation time of the newest production version involved (production pages only).
    pub last_modified_ms: Option<u64>,
    /// Identifies the inputs: page key, chosen versions, variant.
    pub etag: u64,
}

impl Page {
    /// Renders the page (template, context, includes) into `out`, appending.
    pub fn render_into(&self, out: &mut Vec<u8>) -> Result<(), crate::render::RenderError> {
        let includes: Vec<(&str, &CompiledTemplate)> = self
            .includes
            .iter()
            .map(|u| (u.name.as_str(), &*u.compiled))
            .collect();
        crate::render::render_into(&self.template, &self.snapshot.context, &includes, out)
    }
}

/// The answer for one request.
#[derive(Debug)]
pub enum Outcome {
    Ready(Page),
    /// Fetch these (one round trip), then resolve again.
    Need(Vec<Fetch>),
    /// 404, with the cause for the log.
    NotFound(String),
    /// 500: stored data that cannot be used. `version` is the page field in use, `template`
    /// the main template's when it was chosen.
    Broken {
        version: Option<Field>,
        template: Option<(String, Field)>,
        cause: String,
    },
}

fn stronger(a: Variant, b: Variant) -> Variant {
    match (a, b) {
        (Variant::Predeploy, _) | (_, Variant::Predeploy) => Variant::Predeploy,
        (Variant::Gray, _) | (_, Variant::Gray) => Variant::Gray,
        _ => Variant::Production,
    }
}

enum TemplateStep {
    Ready(Arc<CompiledTemplate>, Field, Variant),
    Need(Fetch),
    /// Why not, and the version chosen if it got that far.
    Broken(String, Option<Field>),
}

fn template_step(
    inputs: &mut impl Inputs,
    name: &str,
    exact: Option<u64>,
    before: Option<u64>,
    now_ms: u64,
    ask: &Ask,
) -> TemplateStep {
    let (field, variant) = match exact {
        Some(v) => (Field::Version(v), Variant::Production),
        None => match inputs.meta(false, name) {
            Slot::Missing => return TemplateStep::Need(Fetch::Meta(DocRef::Template(name.into()))),
            Slot::Have(None) => {
                return TemplateStep::Broken(
                    format!("template \"{}\" does not exist", name.escape_debug()),
                    None,
                )
            }
            Slot::Have(Some(meta)) => {
                let choice = match before {
                    Some(v) => meta
                        .previous(v)
                        .map(|p| (Field::Version(p), Variant::Production)),
                    None => meta.choose(name, now_ms, ask).map(|c| (c.field, c.variant)),
                };
                match choice {
                    Some(c) => c,
                    None => {
                        return TemplateStep::Broken(
                            format!(
                                "template \"{}\" has no {} version",
                                name.escape_debug(),
                                if before.is_some() { "earlier" } else { "live" }
                            ),
                            None,
                        )
                    }
                }
            }
        },
    };
    match inputs.template(name, field) {
        Slot::Missing => TemplateStep::Need(Fetch::Field(DocRef::Template(name.into()), field)),
        Slot::Have(None) => TemplateStep::Broken(
            format!(
                "template \"{}\" version {field} does not exist",
                name.escape_debug()
            ),
            Some(field),
        ),
        Slot::Have(Some(Err(e))) => TemplateStep::Broken(
            format!("template \"{}\" version {field}: {e}", name.escape_debug()),
            Some(field),
        ),
        Slot::Have(Some(Ok(t))) => TemplateStep::Ready(t, field, variant),
    }
}

/// What to try, in order, after the render of a page failed: `(page before, template before)`
/// pairs for [`Ask`]. A gray or predeploy render falls back to plain production; a production
/// render first to the template's previous version (when a named, not exact, template is
/// involved), then to the page's previous version, then to both.
pub fn fallback_stages(
    variant: Variant,
    page: Option<Field>,
    template: Option<Field>,
) -> Vec<(Option<u64>, Option<u64>)> {
    if variant != Variant::Production {
        return vec![(None, None)];
    }
    let page = page.and_then(|f| f.version());
    let template = template.and_then(|f| f.version());
    let mut stages = Vec::new();
    if template.is_some() {
        stages.push((None, template));
    }
    if page.is_some() {
        stages.push((page, None));
    }
    if page.is_some() && template.is_some() {
        stages.push((page, template));
    }
    stages
}

/// Resolves page `key` at wall-clock time `now_ms`.
pub fn resolve(key: &str, now_ms: u64, ask: &Ask, inputs: &mut impl Inputs) -> Outcome {
    let meta = match inputs.meta(true, key) {
        Slot::Missing => return Outcome::Need(vec![Fetch::Meta(DocRef::Page(key.into()))]),
        Slot::Have(None) => return Outcome::NotFound("no such page".into()),
        Slot::Have(Some(m)) => m,
    };
    let choice = match ask.before_page {
        Some(v) => meta.previous(v).map(|p| crate::version::Choice {
            field: Field::Version(p),
            variant: Variant::Production,
        }),
        None => meta.choose(key, now_ms, ask),
    };
    let Some(choice) = choice else {
        return Outcome::NotFound(if ask.before_page.is_some() {
            "page has no earlier version".into()
        } else {
            "page has no live version".into()
        });
    };
    let field = choice.field;
    let snapshot = match inputs.snapshot(key, field) {
        Slot::Missing => return Outcome::Need(vec![Fetch::Field(DocRef::Page(key.into()), field)]),
        Slot::Have(None) => {
            return Outcome::NotFound(format!("page version {field} does not exist"))
        }
        Slot::Have(Some(Err(e))) => {
            return Outcome::Broken {
                version: Some(field),
                template: None,
                cause: e.to_string(),
            }
        }
        Slot::Have(Some(Ok(s))) => s,
    };
    let broken = |cause: String, template: Option<(String, Field)>| Outcome::Broken {
        version: Some(field),
        template,
        cause,
    };

    let mut variant = choice.variant;
    let mut etag = Fnv::default();
    etag.write(key.as_bytes())
        .write(&[0])
        .write(variant.as_str().as_bytes());
    etag.write(field.to_string().as_bytes());
    let mut newest = field.version();
    let mut note = |f: Field, v: Variant, etag: &mut Fnv, name: &str| {
        etag.write(&[0]).write(name.as_bytes()).write(&[0]);
        match f {
            Field::Version(n) => {
                etag.write_u64(n);
                newest = newest.max(Some(n));
            }
            other => {
                etag.write(other.to_string().as_bytes());
            }
        }
        variant = stronger(variant, v);
    };

    let (template, template_field) = match &snapshot.template {
        PreparedTemplate::Inline(t) => (t.clone(), None),
        PreparedTemplate::Named { name, version } => {
            let before = if version.is_none() {
                ask.before_template
            } else {
                None
            };
            match template_step(inputs, name, *version, before, now_ms, ask) {
                TemplateStep::Need(f) => return Outcome::Need(vec![f]),
                TemplateStep::Broken(cause, f) => {
                    return broken(cause, f.map(|f| (name.clone(), f)))
                }
                TemplateStep::Ready(t, f, v) => {
                    note(f, v, &mut etag, name);
                    (t, Some((name.clone(), f)))
                }
            }
        }
    };

    // Included templates, breadth first; each level's missing pieces are fetched together.
    let mut includes: Vec<UsedTemplate> = Vec::new();
    let mut frontier: Vec<String> = template.includes().to_vec();
    while !frontier.is_empty() {
        let mut need = Vec::new();
        let mut next = Vec::new();
        for name in frontier {
            if includes.iter().any(|u| u.name == name) {
                continue;
            }
            match template_step(inputs, &name, None, None, now_ms, ask) {
                TemplateStep::Need(f) => need.push(f),
                TemplateStep::Broken(cause, _) => {
                    return broken(format!("include failed: {cause}"), template_field.clone())
                }
                TemplateStep::Ready(t, f, v) => {
                    note(f, v, &mut etag, &name);
                    next.extend(t.includes().iter().cloned());
                    includes.push(UsedTemplate {
                        name,
                        field: f,
                        compiled: t,
                    });
                }
            }
        }
        if !need.is_empty() {
            return Outcome::Need(need);
        }
        frontier = next;
    }

    Outcome::Ready(Page {
        variant,
        field,
        snapshot,
        template,
        template_field,
        includes,
        last_modified_ms: if variant == Variant::Production {
            newest
        } else {
            None
        },
        etag: etag.finish(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prepare::{prepare, Prepared};
    use crate::store::{Raw, RawMeta};
    use std::collections::HashMap;

    /// A fake Redis: documents as field → value maps, plus pins.
    #[derive(Default)]
    struct Fake {
        docs: HashMap<DocRef, Vec<(String, String)>>,
        pins: HashMap<String, String>,
        cache: HashMap<String, Prepared>,
        fetched: Vec<Fetch>,
    }

    impl Fake {
        fn put(&mut self, doc: DocRef, field: &str, value: &str) {
            self.docs
                .entry(doc)
                .or_default()
                .push((field.into(), value.into()));
        }

        fn load(&mut self, f: &Fetch) {
            self.fetched.push(f.clone());
            let raw = match f {
                Fetch::Meta(d) => Raw::Meta(self.docs.get(d).map(|fields| RawMeta {
                    fields: fields.iter().map(|(k, _)| k.clone()).collect(),
                    pin: self.pins.get(&d.field_name()).cloned(),
                    gray: None,
                })),
                Fetch::Field(d, field) => Raw::Field(self.docs.get(d).and_then(|fs| {
                    fs.iter()
                        .find(|(k, _)| *k == field.name())
                        .map(|(_, v)| v.clone().into_bytes())
                })),
            };
            self.cache.insert(f.cache_key(), prepare(f, raw));
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
            let doc = if page {
                DocRef::Page(name.into())
            } else {
                DocRef::Template(name.into())
            };
            match self.cache.get(&Fetch::Meta(doc).cache_key()) {
                Some(Prepared::Meta(m)) => Slot::Have(m.clone()),
                _ => Slot::Missing,
            }
        }
        fn snapshot(&mut self, key: &str, field: Field) -> Slot<Loaded<PreparedSnapshot>> {
            match self
                .cache
                .get(&Fetch::Field(DocRef::Page(key.into()), field).cache_key())
            {
                Some(Prepared::Snapshot(s)) => Slot::Have(s.clone()),
                _ => Slot::Missing,
            }
        }
        fn template(&mut self, name: &str, field: Field) -> Slot<Loaded<CompiledTemplate>> {
            match self
                .cache
                .get(&Fetch::Field(DocRef::Template(name.into()), field).cache_key())
            {
                Some(Prepared::Template(t)) => Slot::Have(t.clone()),
                _ => Slot::Missing,
            }
        }
    }

    fn page(k: &str) -> DocRef {
        DocRef::Page(k.into())
    }
    fn tpl(k: &str) -> DocRef {
        DocRef::Template(k.into())
    }

    fn render(p: &Page) -> String {
        let mut out = Vec::new();
        p.render_into(&mut out).unwrap();
        String::from_utf8(out).unwrap()
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
        assert!(p.render_into(&mut Vec::new()).is_err());
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
}
