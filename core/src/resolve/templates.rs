//! Choosing and loading templates: a page's main template ([`template_step`]) and the templates
//! it includes, transitively ([`resolve_includes`]).

use std::sync::Arc;

use super::identity::Identity;
use super::inputs::{Inputs, Slot};
use super::page::UsedTemplate;
use crate::layout::DocRef;
use crate::render::{empty_template, CompiledTemplate, SkippedModule};
use crate::store::Fetch;
use crate::version::{Ask, Field, Variant};

pub(super) enum TemplateStep {
    Ready(Arc<CompiledTemplate>, Field, Variant),
    Need(Fetch),
    /// Why not, and the version chosen if it got that far.
    Broken(String, Option<Field>),
}

pub(super) fn template_step(
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

/// What [`resolve_includes`] found.
pub(super) enum Includes {
    /// Every include, and the modules left out.
    Ready(Vec<UsedTemplate>, Vec<SkippedModule>),
    Need(Vec<Fetch>),
    Broken(String),
}

/// The templates `main` includes, transitively, breadth first; each level's missing pieces are
/// fetched together. A module (included `with` a value) that is missing or broken is replaced by
/// nothing and reported; any other include that is, fails the page.
pub(super) fn resolve_includes(
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
                    id.template(&name, f, v, t.source_hash());
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
