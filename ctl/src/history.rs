//! A document's versions: `history` lists them, `rollback` pins one, `rollback clear` removes
//! the pin.

use dynpage_core::layout::{check_version, version_error, DocRef};
use dynpage_core::store;

use crate::args::Args;
use crate::context::{fail, load_meta, now_ms, redis_err, usage, Ctx, Result};
use crate::when::format_ms;

pub(crate) fn history(ctx: &Ctx, args: &Args, doc: DocRef) -> Result<()> {
    args.only(&["template"])?;
    let mut con = ctx.connect()?;
    let meta = load_meta(ctx, &mut con, &doc)?;
    let now = now_ms();
    let live = meta.production(now);
    for &v in &meta.versions {
        let mut marks = Vec::new();
        if Some(v) == live {
            marks.push("live");
        }
        if Some(v) == meta.pin {
            marks.push("pinned");
        }
        if v > now {
            marks.push("scheduled");
        }
        println!("{v}  {}  {}", format_ms(v), marks.join(" "));
    }
    if meta.has_predeploy {
        println!("predeploy");
    }
    if meta.has_ab {
        println!("abVersion  gray {}%", meta.gray);
    }
    for w in &meta.warnings {
        println!("# {w}");
    }
    Ok(())
}

pub(crate) fn rollback(ctx: &Ctx, args: &Args, doc: DocRef) -> Result<()> {
    args.only(&["template", "to"])?;
    let mut con = ctx.connect()?;
    let meta = load_meta(ctx, &mut con, &doc)?;
    let target = match args.opt("to") {
        Some(v) => match check_version(v) {
            Ok(v) if meta.versions.binary_search(&v).is_ok() => v,
            Ok(v) => return fail(format!("{doc} has no version {v}")),
            Err(e) => return usage(format!("--to {}", version_error(v, e))),
        },
        None => {
            let Some(live) = meta.production(now_ms()) else {
                return fail(format!("{doc} has no live version to roll back from"));
            };
            match meta.previous(live) {
                Some(p) => p,
                None => return fail(format!("{doc} has no version before {live}")),
            }
        }
    };
    store::set_pin(&mut con, &ctx.layout, &doc, Some(target)).or_else(redis_err)?;
    println!("{target}");
    Ok(())
}

pub(crate) fn rollback_clear(ctx: &Ctx, args: &Args, doc: DocRef) -> Result<()> {
    args.only(&["template"])?;
    let mut con = ctx.connect()?;
    store::set_pin(&mut con, &ctx.layout, &doc, None).or_else(redis_err)?;
    println!("cleared");
    Ok(())
}
