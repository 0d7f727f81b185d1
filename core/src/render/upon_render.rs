//! Rendering with upon alone, within a budget: a bounded output, includes counted where upon
//! asks for them, loop turns counted by the formatter each loop ends with, panics caught.

use std::cell::Cell;

use super::compile::CompiledTemplate;
use super::context::Scope;
use super::engine::engine;
use super::error::RenderError;
use super::steps::{charge_steps, Metered};
use crate::limits::{Exceeded, Limits};

/// Renders like [`render_into`], always with upon: the reference the fast renderer must match.
///
/// [`render_into`]: super::render_into
pub fn render_with_upon<'a>(
    template: &'a CompiledTemplate,
    ctx: Scope<'a>,
    includes: &'a [(&'a str, &'a CompiledTemplate)],
    out: &mut Vec<u8>,
) -> Result<(), RenderError> {
    render_with_upon_limited(template, ctx, includes, &Limits::default(), out)
}

/// An output that refuses to grow past a length.
struct Bounded<'o> {
    out: &'o mut Vec<u8>,
    limit: usize,
    over: &'o Cell<Option<Exceeded>>,
    max_output: usize,
}

impl std::io::Write for Bounded<'_> {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_all(buf).map(|()| buf.len())
    }

    #[inline]
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if self.out.len().saturating_add(buf.len()) > self.limit {
            self.over.set(Some(Exceeded::Output(self.max_output)));
            return Err(std::io::Error::other("the output is over its bound"));
        }
        self.out.extend_from_slice(buf);
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Renders like [`render_limited`], always with upon. Its budget: the output goes through a
/// bounded writer, includes are counted where upon asks for them (with their steps), and loop
/// turns by the formatter each loop ends with (see [`limits::instrument`]).
///
/// [`render_limited`]: super::render_limited
/// [`limits::instrument`]: crate::limits::instrument
pub fn render_with_upon_limited<'a>(
    template: &'a CompiledTemplate,
    ctx: Scope<'a>,
    includes: &'a [(&'a str, &'a CompiledTemplate)],
    limits: &Limits,
    out: &mut Vec<u8>,
) -> Result<(), RenderError> {
    let start = out.len();
    let meter = Metered::start(limits.max_steps);
    if !charge_steps(template.steps) {
        return Err(RenderError::over(Exceeded::Steps(limits.max_steps)));
    }
    let over: Cell<Option<Exceeded>> = Cell::new(None);
    let includes_left = Cell::new(limits.max_includes);
    let ctx = ctx.to_value();
    let renderer = template
        .template
        .render_from(engine(), &ctx)
        .with_template_fn(|name| {
            let (_, t) = includes
                .iter()
                .find(|(n, _)| *n == name)
                .ok_or_else(|| format!("included template \"{name}\" is not in the store"))?;
            let exceeded = match includes_left.get().checked_sub(1) {
                None => Some(Exceeded::Includes(limits.max_includes)),
                Some(_) if !charge_steps(t.steps) => Some(Exceeded::Steps(limits.max_steps)),
                Some(left) => {
                    includes_left.set(left);
                    None
                }
            };
            if let Some(exceeded) = exceeded {
                over.set(Some(exceeded));
                return Err(exceeded.to_string());
            }
            Ok(&t.template)
        });
    let mut writer = Bounded {
        out: &mut *out,
        limit: start.saturating_add(limits.max_output),
        over: &over,
        max_output: limits.max_output,
    };
    // upon 0.11 can panic (the cases known are refused at compile, see `unreliable_error`):
    // a render error, never a panic that would cross into nginx.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        renderer.to_writer(&mut writer)
    }));
    let steps_over = meter.went_over();
    drop(meter);
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            let exceeded = over
                .get()
                .or(steps_over.then_some(Exceeded::Steps(limits.max_steps)));
            match exceeded {
                Some(exceeded) => {
                    out.truncate(start);
                    Err(RenderError::over(exceeded))
                }
                None => Err(RenderError::from_upon(&e, template, includes)),
            }
        }
        Err(_) => {
            out.truncate(start);
            Err(RenderError {
                message: "the template engine failed on this template".into(),
                template: None,
                too_deep: false,
                exceeded: None,
            })
        }
    }
}
