//! The two resolutions: [`resolve`] (page mode) and [`resolve_dimensions`] (dimension mode),
//! what they answer ([`Outcome`]), and what to try after a render failed ([`fallback_stages`]).

use super::identity::Identity;
use super::inputs::{Inputs, Slot};
use super::page::{Body, Page};
use super::templates::{resolve_includes, template_step, Includes, TemplateStep};
use crate::layout::DocRef;
use crate::prepare::PreparedTemplate;
use crate::render::{page_value, PageInfo};
use crate::store::Fetch;
use crate::version::{Ask, Field, Variant};

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

    let mut id = Identity::new(choice.variant);
    id.etag
        .write(key.as_bytes())
        .write(&[0])
        .write(choice.variant.as_str().as_bytes());
    id.etag.write(field.to_string().as_bytes());
    id.content(field, snapshot.hash);
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
                    id.template(name, f, v, t.source_hash());
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
    id.template(name, field, variant, template.source_hash());
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
