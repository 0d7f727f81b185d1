//! The put commands: `template put`, `page put`, `data put`. Each checks what it writes (the
//! template compiles, the page renders, the data is JSON within the limit), then writes it and
//! announces it on `P events`.

use serde_json::Value;

use dynpage_core::layout::DocRef;
use dynpage_core::render::compile;
use dynpage_core::snapshot::{Snapshot, TemplateSpec};
use dynpage_core::store;
use dynpage_core::version::Field;

use crate::args::Args;
use crate::check::check_render;
use crate::context::{fail, now_ms, redis_err, usage, Con, Ctx, Result};
use crate::input::{read_data, read_file, template_spec};
use crate::when::parse_time;

/// The field a put writes: predeploy, abVersion, or a version at --at / now.
enum Target {
    Field(Field),
    VersionAt(u64),
}

fn put_target(args: &Args) -> Result<Target> {
    let now = now_ms();
    match (args.flag("predeploy"), args.flag("gray"), args.opt("at")) {
        (true, true, _) => usage("--predeploy and --gray exclude each other"),
        (true, false, None) => Ok(Target::Field(Field::Predeploy)),
        (false, true, None) => Ok(Target::Field(Field::Ab)),
        (true, false, Some(_)) | (false, true, Some(_)) => {
            usage("--at applies to production versions only")
        }
        (false, false, Some(at)) => parse_time(at, now).map(Target::VersionAt).or_else(usage),
        (false, false, None) => Ok(Target::VersionAt(now)),
    }
}

fn write(ctx: &Ctx, con: &mut Con, doc: &DocRef, target: Target, value: &str) -> Result<String> {
    match target {
        Target::VersionAt(at) => store::put_new_version(con, &ctx.layout, doc, at, value)
            .map(|v| v.to_string())
            .or_else(redis_err),
        Target::Field(f) => store::put_field(con, &ctx.layout, doc, f, value)
            .map(|_| f.to_string())
            .or_else(redis_err),
    }
}

pub(crate) fn template_put(ctx: &Ctx, args: &Args, name: &str, file: &str) -> Result<()> {
    args.only(&["at", "predeploy", "gray"])?;
    let target = put_target(args)?;
    let src = read_file(file)?;
    if let Err(e) = compile(src.clone()) {
        return fail(format!("{file}: {e}"));
    }
    let mut con = ctx.connect()?;
    let written = write(
        ctx,
        &mut con,
        &DocRef::Template(name.to_string()),
        target,
        &src,
    )?;
    println!("{written}");
    Ok(())
}

pub(crate) fn page_put(ctx: &Ctx, args: &Args, key: &str) -> Result<()> {
    args.only(&[
        "data",
        "template",
        "template-file",
        "at",
        "predeploy",
        "gray",
    ])?;
    let target = put_target(args)?;
    let Some(data_file) = args.opt("data") else {
        return usage("page put needs --data <file>");
    };
    let template = match (args.opt("template"), args.opt("template-file")) {
        (Some(spec), None) => template_spec(spec)?,
        (None, Some(file)) => TemplateSpec::Inline(read_file(file)?),
        _ => {
            return usage(
                "page put needs one of --template <name>[@<version>] or --template-file <file>",
            )
        }
    };
    if key.is_empty() || key.len() > dynpage_core::layout::MAX_NAME_LEN {
        return usage("page key must be 1 to 1024 bytes");
    }
    let snapshot = Snapshot {
        template,
        data: read_data(data_file)?,
    };
    let json = snapshot.to_json();
    let (field, at) = match target {
        Target::VersionAt(at) => (Field::Version(at), at),
        Target::Field(f) => (f, now_ms()),
    };
    let mut con = ctx.connect()?;
    check_render(ctx, &mut con, key, field, at, &json)?;
    let written = write(ctx, &mut con, &DocRef::Page(key.to_string()), target, &json)?;
    println!("{written}");
    Ok(())
}

pub(crate) fn data_put(ctx: &Ctx, args: &Args, key: &str, file: &str) -> Result<()> {
    args.only(&[])?;
    if key.is_empty() || key.len() > dynpage_core::layout::MAX_NAME_LEN {
        return usage(format!(
            "the data key must be 1 to {} bytes",
            dynpage_core::layout::MAX_NAME_LEN
        ));
    }
    let text = read_file(file)?;
    let data = match serde_json::from_str::<Value>(&text) {
        Ok(v) => v.to_string(),
        Err(e) => return fail(format!("{file}: data is not valid JSON: {e}")),
    };
    let limit = dynpage_core::store::MAX_DATA_BYTES;
    if data.len() > limit {
        return fail(format!(
            "{file}: data is {} bytes, over the {limit} byte limit of a dimension",
            data.len()
        ));
    }
    let mut con = ctx.connect()?;
    redis::pipe()
        .cmd("SET")
        .arg(key)
        .arg(&data)
        .ignore()
        .cmd("PUBLISH")
        .arg(ctx.layout.events_channel())
        .arg(key)
        .ignore()
        .query::<()>(&mut con)
        .or_else(redis_err)?;
    println!("{key}");
    Ok(())
}
