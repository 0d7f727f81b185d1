//! `render`: a template and data rendered to stdout, through the store when it includes
//! templates, writing nothing.

use serde_json::Value;

use dynpage_core::render::{build_context, compile, render_limited, PageInfo, Scope};
use dynpage_core::snapshot::{Snapshot, TemplateSpec};
use dynpage_core::version::Field;

use crate::args::Args;
use crate::check::{check_render, render_limits};
use crate::context::{fail, now_ms, usage, Ctx, Result};
use crate::input::{read_data, read_file, template_spec};

pub(crate) fn render(ctx: &Ctx, args: &Args) -> Result<()> {
    args.only(&["template", "template-file", "data"])?;
    let Some(data_file) = args.opt("data") else {
        return usage("render needs --data <file>");
    };
    let data = read_data(data_file)?;
    let out = match (args.opt("template-file"), args.opt("template")) {
        (Some(file), None) => {
            let src = read_file(file)?;
            let t = compile(src.clone()).or_else(|e| fail(format!("{file}: {e}")))?;
            if t.includes().is_empty() {
                let page = PageInfo {
                    key: "(preview)",
                    version: "0",
                    variant: "production",
                };
                let mut out = Vec::new();
                render_limited(
                    &t,
                    Scope::of(&build_context(&data, page, &[])),
                    &[],
                    &render_limits()?,
                    &mut out,
                )
                .or_else(|e| fail(e.to_string()))?;
                out
            } else {
                // Includes come from the store: render through it.
                preview(ctx, TemplateSpec::Inline(src), data)?
            }
        }
        (None, Some(spec)) => preview(ctx, template_spec(spec)?, data)?,
        _ => return usage("render needs one of --template-file <file> or --template <name>"),
    };
    use std::io::Write;
    std::io::stdout()
        .write_all(&out)
        .or_else(|e| fail(format!("stdout: {e}")))
}

/// Renders `data` with `template` through the store, as a page that is not stored.
fn preview(
    ctx: &Ctx,
    template: TemplateSpec,
    data: serde_json::Map<String, Value>,
) -> Result<Vec<u8>> {
    let json = Snapshot { template, data }.to_json();
    let mut con = ctx.connect()?;
    check_render(
        ctx,
        &mut con,
        "(preview)",
        Field::Version(0),
        now_ms(),
        &json,
    )
}
