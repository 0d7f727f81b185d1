//! From a request to everything its render needs: page version, snapshot (or dimensions),
//! template, includes.
//!
//! `resolve` (page mode) and `resolve_dimensions` (dimension mode) ask an [`Inputs`] (the
//! worker cache) for each piece. When pieces are missing they answer [`Outcome::Need`] with
//! every piece they can name at that point, so the caller fetches them in one round trip and
//! calls again.

use std::sync::Arc;

use upon::Value;

use crate::layout::DocRef;
use crate::prepare::{PreparedData, PreparedSnapshot, PreparedTemplate};
use crate::render::{
    empty_template, page_value, render_limited, render_skipping_failed_modules, CompiledTemplate,
    PageInfo, RenderError, RenderOptions, Scope, SkippedModule,
};
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
    /// One dimension's data key.
    fn data(&mut self, key: &str) -> Slot<Loaded<PreparedData>>;
}

/// One template used by a render.
#[derive(Debug, Clone)]
pub struct UsedTemplate {
    pub name: String,
    pub field: Field,
    pub compiled: Arc<CompiledTemplate>,
}

/// Where a page's data comes from.
#[derive(Debug)]
pub enum Body {
    /// Page mode: the snapshot, whose context holds `data`'s fields and `page`.
    Snapshot(Arc<PreparedSnapshot>),
    /// Dimension mode: `page`, and each dimension under its name (`None`: null).
    Dimensions {
        page: Value,
        values: Vec<(String, Option<Arc<PreparedData>>)>,
    },
}

/// One dimension of a dimension-mode page.
#[derive(Debug, Clone, Copy)]
pub struct Dimension<'a> {
    /// Its name in the template.
    pub name: &'a str,
    /// Its data key (empty: the request gave none, so it is missing).
    pub key: &'a str,
    /// Whether the page is a 404 without it.
    pub required: bool,
}

/// Everything a render needs.
#[derive(Debug)]
pub struct Page {
    pub variant: Variant,
    /// The version served: the page's (page mode) or the template's (dimension mode).
    pub field: Field,
    pub body: Body,
    /// The main template: the snapshot's inline one, or a template document's version.
    pub template: Arc<CompiledTemplate>,
    pub template_field: Option<(String, Field)>,
    /// Included templates, transitively (allocated only when there are any).
    pub includes: Vec<UsedTemplate>,
    /// Modules that could not be loaded (missing, broken): they render as nothing.
    pub skipped_modules: Vec<SkippedModule>,
    /// Dimensions that could not be used and render as null, with why (for one log line).
    pub bad_dimensions: Vec<String>,
    /// Activation time of the newest production version involved (production page-mode pages
    /// only: a dimension changes without a version).
    pub last_modified_ms: Option<u64>,
    /// Identifies the inputs: page key (or template and dimensions), chosen versions, variant.
    pub etag: u64,
}

/// A dimension that is missing.
static NULL: Value = Value::None;

impl Page {
    /// The page document's version (page mode).
    pub fn page_field(&self) -> Option<Field> {
        match self.body {
            Body::Snapshot(_) => Some(self.field),
            Body::Dimensions { .. } => None,
        }
    }

    /// Renders the page into `out`, appending, within the default limits. `request` is the
    /// `request` value (`dynpage_var`), if the location declares any. With
    /// `skip_failed_modules`, a module that fails is left out and added to `skipped` instead of
    /// failing the render.
    pub fn render_into(
        &self,
        request: Option<&Value>,
        skip_failed_modules: bool,
        out: &mut Vec<u8>,
        skipped: &mut Vec<SkippedModule>,
    ) -> Result<(), RenderError> {
        let options = RenderOptions {
            skip_failed_modules,
            ..RenderOptions::default()
        };
        self.render_with(request, &options, out, skipped)
    }

    /// Renders the page into `out`, appending, as `options` say.
    pub fn render_with(
        &self,
        request: Option<&Value>,
        options: &RenderOptions<'_>,
        out: &mut Vec<u8>,
        skipped: &mut Vec<SkippedModule>,
    ) -> Result<(), RenderError> {
        let includes: Vec<(&str, &CompiledTemplate)> = self
            .includes
            .iter()
            .map(|u| (u.name.as_str(), &*u.compiled))
            .collect();
        let mut named: Vec<(&str, &Value)> = Vec::new();
        if let Some(req) = request {
            named.push(("request", req));
        }
        let base = match &self.body {
            Body::Snapshot(snapshot) => Some(&snapshot.context),
            Body::Dimensions { page, values } => {
                named.push(("page", page));
                named.extend(
                    values
                        .iter()
                        .map(|(name, v)| (name.as_str(), v.as_ref().map_or(&NULL, |d| &d.value))),
                );
                None
            }
        };
        let scope = Scope {
            named: &named,
            base,
        };
        if options.skip_failed_modules {
            render_skipping_failed_modules(
                &self.template,
                scope,
                &includes,
                &options.limits,
                options.known_failed_modules,
                out,
                skipped,
            )
        } else {
            render_limited(&self.template, scope, &includes, &options.limits, out)
        }
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

/// What identifies a page's inputs, built as they are chosen.
struct Identity {
    etag: Fnv,
    newest: Option<u64>,
    variant: Variant,
}

impl Identity {
    fn new(variant: Variant) -> Identity {
        Identity {
            etag: Fnv::default(),
            newest: None,
            variant,
        }
    }

    /// Adds a document version used by the page.
    fn version(&mut self, field: Field) {
        match field {
            Field::Version(n) => {
                self.etag.write_u64(n);
                self.newest = self.newest.max(Some(n));
            }
            other => {
                self.etag.write(other.to_string().as_bytes());
            }
        }
    }

    /// Adds a template version.
    fn template(&mut self, name: &str, field: Field, variant: Variant) {
        self.etag.write(&[0]).write(name.as_bytes()).write(&[0]);
        self.version(field);
        self.variant = stronger(self.variant, variant);
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

/// What [`resolve_includes`] found.
enum Includes {
    /// Every include, and the modules left out.
    Ready(Vec<UsedTemplate>, Vec<SkippedModule>),
    Need(Vec<Fetch>),
    Broken(String),
}

/// The templates `main` includes, transitively, breadth first; each level's missing pieces are
/// fetched together. A module (included `with` a value) that is missing or broken is replaced by
/// nothing and reported; any other include that is, fails the page.
fn resolve_includes(
    main: &CompiledTemplate,
    now_ms: u64,
    ask: &Ask,
    inputs: &mut impl Inputs,
    id: &mut Identity,
) -> Includes {
    let mut includes: Vec<UsedTemplate> = Vec::new();
    let mut skipped: Vec<SkippedModule> = Vec::new();
    let mut frontier: Vec<String> = main.includes().to_vec();
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
                    let is_module = main.modules().contains(&name)
                        || includes
                            .iter()
                            .any(|u| u.compiled.modules().contains(&name));
                    let empty = empty_template().filter(|_| is_module);
                    let Some(empty) = empty else {
                        return Includes::Broken(format!("include failed: {cause}"));
                    };
                    skipped.push(SkippedModule {
                        name: name.clone(),
                        cause,
                    });
                    includes.push(UsedTemplate {
                        name,
                        field: Field::Version(0),
                        compiled: empty,
                    });
                }
                TemplateStep::Ready(t, f, v) => {
                    id.template(&name, f, v);
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
            return Includes::Need(need);
        }
        frontier = next;
    }
    Includes::Ready(includes, skipped)
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

    let mut id = Identity::new(choice.variant);
    id.etag
        .write(key.as_bytes())
        .write(&[0])
        .write(choice.variant.as_str().as_bytes());
    id.etag.write(field.to_string().as_bytes());
    id.newest = field.version();

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
                    id.template(name, f, v);
                    (t, Some((name.clone(), f)))
                }
            }
        }
    };

    let (includes, skipped_modules) =
        match resolve_includes(&template, now_ms, ask, inputs, &mut id) {
            Includes::Ready(includes, skipped) => (includes, skipped),
            Includes::Need(need) => return Outcome::Need(need),
            Includes::Broken(cause) => return broken(cause, template_field),
        };

    let variant = id.variant;
    Outcome::Ready(Page {
        variant,
        field,
        body: Body::Snapshot(snapshot),
        template,
        template_field,
        includes,
        skipped_modules,
        bad_dimensions: Vec::new(),
        last_modified_ms: if variant == Variant::Production {
            id.newest
        } else {
            None
        },
        etag: id.etag.finish(),
    })
}

/// Resolves a dimension-mode page: template `name` (rules 1–3 of its own document) and the
/// dimensions' data keys, all fetched in the same round trip.
pub fn resolve_dimensions(
    name: &str,
    dimensions: &[Dimension<'_>],
    now_ms: u64,
    ask: &Ask,
    inputs: &mut impl Inputs,
) -> Outcome {
    let mut need = Vec::new();
    let step = template_step(inputs, name, None, ask.before_template, now_ms, ask);
    let ready = match step {
        TemplateStep::Need(f) => {
            need.push(f);
            None
        }
        // No such template, or none live: like a page that does not exist.
        TemplateStep::Broken(cause, None) => return Outcome::NotFound(cause),
        TemplateStep::Broken(cause, Some(f)) => {
            return Outcome::Broken {
                version: None,
                template: Some((name.to_string(), f)),
                cause,
            }
        }
        TemplateStep::Ready(t, f, v) => Some((t, f, v)),
    };
    let mut values = Vec::with_capacity(dimensions.len());
    let mut bad_dimensions = Vec::new();
    for d in dimensions {
        let what = || {
            format!(
                "dimension \"{}\" (key \"{}\")",
                d.name,
                d.key.escape_debug()
            )
        };
        let slot = if d.key.is_empty() {
            Slot::Have(None)
        } else {
            inputs.data(d.key)
        };
        let value = match slot {
            Slot::Missing => {
                need.push(Fetch::Data(d.key.to_string()));
                None
            }
            Slot::Have(None) if d.required => {
                return Outcome::NotFound(format!("required {} does not exist", what()))
            }
            Slot::Have(None) => {
                if d.key.is_empty() {
                    bad_dimensions.push(format!("{}: the key is empty, rendered as null", what()));
                }
                None
            }
            Slot::Have(Some(Err(e))) if d.required => {
                return Outcome::Broken {
                    version: None,
                    template: None,
                    cause: format!("required {}: {e}", what()),
                }
            }
            Slot::Have(Some(Err(e))) => {
                bad_dimensions.push(format!("{}: {e}, rendered as null", what()));
                None
            }
            Slot::Have(Some(Ok(v))) => Some(v),
        };
        values.push((d.name.to_string(), value));
    }
    let Some((template, field, variant)) = ready.filter(|_| need.is_empty()) else {
        return Outcome::Need(need);
    };

    let mut id = Identity::new(Variant::Production);
    id.etag.write(b"dimensions\0");
    id.template(name, field, variant);
    for (d, (_, v)) in dimensions.iter().zip(&values) {
        id.etag.write(&[0]).write(d.name.as_bytes()).write(&[0]);
        id.etag.write(d.key.as_bytes()).write(&[0]);
        match v {
            Some(data) => id.etag.write_u64(data.hash),
            None => id.etag.write(b"null"),
        };
    }
    let (includes, skipped_modules) =
        match resolve_includes(&template, now_ms, ask, inputs, &mut id) {
            Includes::Ready(includes, skipped) => (includes, skipped),
            Includes::Need(need) => return Outcome::Need(need),
            Includes::Broken(cause) => {
                return Outcome::Broken {
                    version: None,
                    template: Some((name.to_string(), field)),
                    cause,
                }
            }
        };
    let version = field.to_string();
    let page = page_value(PageInfo {
        key: name,
        version: &version,
        variant: id.variant.as_str(),
    });
    Outcome::Ready(Page {
        variant: id.variant,
        field,
        body: Body::Dimensions { page, values },
        template,
        template_field: Some((name.to_string(), field)),
        includes,
        skipped_modules,
        bad_dimensions,
        last_modified_ms: None,
        etag: id.etag.finish(),
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
        data: HashMap<String, String>,
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
                Fetch::Data(k) => Raw::Data(Ok(self.data.get(k).map(|v| v.clone().into_bytes()))),
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
        fn data(&mut self, key: &str) -> Slot<Loaded<PreparedData>> {
            match self.cache.get(&Fetch::Data(key.into()).cache_key()) {
                Some(Prepared::Data(d)) => Slot::Have(d.clone()),
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
        let (Outcome::Ready(p), _) = run_dims(&mut f, "item", &dims(&[("base", "bad", false)]))
        else {
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
        let req = crate::render::request_value([("city".into(), "<Bj>".into())]);
        let mut out = Vec::new();
        p.render_into(Some(&req), true, &mut out, &mut Vec::new())
            .unwrap();
        assert_eq!(out, b"&lt;Bj&gt;");
    }
}
