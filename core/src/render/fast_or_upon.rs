//! Rendering a template: with the fast renderer when it and every include it reaches have a
//! fast program, with upon otherwise and whenever the fast renderer cannot vouch for a render.

use super::compile::CompiledTemplate;
use super::context::Scope;
use super::error::RenderError;
use super::fast::{self as render_fast, Stop};
use super::upon_render::render_with_upon_limited;
use crate::limits::Limits;

/// Renders `template` with `ctx` into `out` (appending), within the default [`Limits`].
/// `includes` resolves included names.
pub fn render_into<'a>(
    template: &'a CompiledTemplate,
    ctx: Scope<'a>,
    includes: &'a [(&'a str, &'a CompiledTemplate)],
    out: &mut Vec<u8>,
) -> Result<(), RenderError> {
    render_limited(template, ctx, includes, &Limits::default(), out)
}

/// Renders `template` with `ctx` into `out` (appending), within `limits`. `includes` resolves
/// included names.
///
/// Uses the fast renderer when the template and every include it reaches have a fast program;
/// if that fails for any reason but its budget, the output is rolled back and upon renders it
/// (so errors are always upon's). Over budget, the output is rolled back and the render fails.
pub fn render_limited<'a>(
    template: &'a CompiledTemplate,
    ctx: Scope<'a>,
    includes: &'a [(&'a str, &'a CompiledTemplate)],
    limits: &Limits,
    out: &mut Vec<u8>,
) -> Result<(), RenderError> {
    let start = out.len();
    match render_fast_only(template, ctx, includes, limits, out) {
        Some(Ok(())) => return Ok(()),
        Some(Err(Stop::Over(over))) => {
            out.truncate(start);
            return Err(RenderError::over(over.exceeded(limits)));
        }
        Some(Err(Stop::ToUpon)) => out.truncate(start),
        None => {}
    }
    render_with_upon_limited(template, ctx, includes, limits, out)
}

/// Renders with the fast renderer alone: `None` if `template` or an include it reaches has no
/// fast program, `Some(Err(_))` if the render failed (leaving partial output in `out`).
pub(super) fn render_fast_only<'a>(
    template: &'a CompiledTemplate,
    ctx: Scope<'a>,
    includes: &'a [(&'a str, &'a CompiledTemplate)],
    limits: &Limits,
    out: &mut Vec<u8>,
) -> Option<Result<(), Stop>> {
    let program = fast_program(template, includes)?;
    let resolve = |name: &str| {
        let (_, t) = includes.iter().find(|(n, _)| *n == name)?;
        Some((t.fast.as_ref()?, t.source_text()))
    };
    Some(render_fast::render(
        program,
        template.source_text(),
        ctx,
        &resolve,
        limits,
        out,
    ))
}

/// `template`'s fast program if it and every template it can reach through `includes` have one.
///
/// Names missing from `includes` do not matter here: upon fails only if such an include is
/// actually reached, and then so does the fast renderer, which falls back to upon.
fn fast_program<'a>(
    template: &'a CompiledTemplate,
    includes: &'a [(&'a str, &'a CompiledTemplate)],
) -> Option<&'a render_fast::Program> {
    let main = template.fast.as_ref()?;
    let mut seen: Vec<&str> = Vec::new();
    let mut todo = vec![main];
    while let Some(program) = todo.pop() {
        for name in program.include_names() {
            if seen.contains(&name) {
                continue;
            }
            seen.push(name);
            if let Some((_, t)) = includes.iter().find(|(n, _)| *n == name) {
                todo.push(t.fast.as_ref()?);
            }
        }
    }
    Some(main)
}
