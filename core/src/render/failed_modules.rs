//! Rendering a page whose failing modules (templates included `with` a value) are left out,
//! as nginx SSI leaves out a failed include, instead of failing the page.

use super::compile::{empty_template, CompiledTemplate};
use super::context::Scope;
use super::error::RenderError;
use super::fast_or_upon::render_limited;
use crate::limits::Limits;

/// How a page is rendered.
#[derive(Debug, Clone, Copy, Default)]
pub struct RenderOptions<'a> {
    /// The render's budget.
    pub limits: Limits,
    /// Leave out a module that fails (`dynpage_module_errors skip`) instead of failing the page.
    pub skip_failed_modules: bool,
    /// Modules found failing for the same inputs before: left out from the first render on.
    pub known_failed_modules: &'a [String],
}

/// A module left out of a page because it failed to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedModule {
    pub name: String,
    pub cause: String,
}

/// Renders like [`render_limited`], except that a module (a template included `with` a value)
/// that fails is left out, rendering as nothing wherever it is included, and reported in
/// `skipped`, instead of failing the page: the way nginx SSI leaves out a failed include. The
/// page is rendered again without it; errors outside modules, and a render over its budget,
/// still fail the page. The modules named in `known_failed` (found failing for the same inputs
/// before) are left out from the first render on, and not reported again.
pub fn render_skipping_failed_modules<'a>(
    template: &'a CompiledTemplate,
    ctx: Scope<'a>,
    includes: &[(&'a str, &'a CompiledTemplate)],
    limits: &Limits,
    known_failed: &'a [String],
    out: &mut Vec<u8>,
    skipped: &mut Vec<SkippedModule>,
) -> Result<(), RenderError> {
    let start = out.len();
    let empty = empty_template();
    let mut current: Vec<(&str, &CompiledTemplate)> = includes.to_vec();
    let mut left_out: Vec<&str> = Vec::new();
    if let Some(empty) = empty.as_deref() {
        for name in known_failed {
            leave_out(&mut current, name, empty);
            left_out.push(name);
        }
    }
    loop {
        let err = match render_limited(template, ctx, &current, limits, out) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        out.truncate(start);
        let Some(empty) = empty.as_deref() else {
            return Err(err);
        };
        if err.exceeded.is_some() {
            return Err(err);
        }
        let Some(culprit) = failed_module(template, &current, &left_out, &err) else {
            return Err(err);
        };
        skipped.push(SkippedModule {
            name: culprit.to_string(),
            cause: err.message.clone(),
        });
        left_out.push(culprit);
        leave_out(&mut current, culprit, empty);
    }
}

/// Replaces the template included as `name` with `empty`.
fn leave_out<'t>(
    current: &mut Vec<(&'t str, &'t CompiledTemplate)>,
    name: &'t str,
    empty: &'t CompiledTemplate,
) {
    match current.iter_mut().find(|(n, _)| *n == name) {
        Some(slot) => slot.1 = empty,
        None => current.push((name, empty)),
    }
}

/// The module to leave out for `err`: the one it happened in, else one that includes where it
/// happened, else (includes too deep) one that includes itself. `None`: not a module's fault.
fn failed_module<'a>(
    main: &'a CompiledTemplate,
    includes: &[(&'a str, &'a CompiledTemplate)],
    left_out: &[&str],
    err: &RenderError,
) -> Option<&'a str> {
    let mut modules: Vec<&'a str> = Vec::new();
    for t in std::iter::once(main).chain(includes.iter().map(|(_, t)| *t)) {
        for m in t.modules() {
            if !left_out.contains(&m.as_str()) && !modules.contains(&m.as_str()) {
                modules.push(m.as_str());
            }
        }
    }
    let reaches = |from: &str, to: &str| -> bool {
        let mut seen: Vec<&str> = Vec::new();
        let mut todo: Vec<&str> = vec![from];
        while let Some(name) = todo.pop() {
            let Some((_, t)) = includes.iter().find(|(n, _)| *n == name) else {
                continue;
            };
            for inc in t.includes() {
                if inc == to {
                    return true;
                }
                if !seen.contains(&inc.as_str()) {
                    seen.push(inc.as_str());
                    todo.push(inc.as_str());
                }
            }
        }
        false
    };
    if let Some(at) = err.template.as_deref() {
        if let Some(m) = modules.iter().find(|m| **m == at) {
            return Some(m);
        }
        return modules.into_iter().find(|m| reaches(m, at));
    }
    if err.too_deep {
        return modules.into_iter().find(|m| reaches(m, m));
    }
    None
}
