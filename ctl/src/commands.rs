//! The commands. Every write is checked first (the template compiles, the data is a JSON object,
//! the snapshot renders), so nothing broken reaches Redis; then it is announced on `P events`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use dynpage_core::layout::{check_version, version_error, DocRef, Layout, DEFAULT_PREFIX};
use dynpage_core::limits::{Limits, DEFAULT_MAX_OUTPUT};
use dynpage_core::live::{Candidate, LiveInputs};
use dynpage_core::prepare::{prepare, Prepared};
use dynpage_core::render::{
    build_context, compile, render_limited, PageInfo, RenderOptions, Scope,
};
use dynpage_core::resolve::{resolve, Outcome};
use dynpage_core::snapshot::{Snapshot, TemplateSpec};
use dynpage_core::store::{self, Fetch, Raw};
use dynpage_core::version::{Ask, DocMeta, Field};

use crate::args::Args;
use crate::release;
use crate::when::{format_ms, parse_time};
use crate::Failure;

pub(crate) type Result<T> = std::result::Result<T, Failure>;

pub(crate) fn usage<T>(m: impl Into<String>) -> Result<T> {
    Err(Failure::Usage(m.into()))
}

pub(crate) fn fail<T>(m: impl Into<String>) -> Result<T> {
    Err(Failure::Fail(m.into()))
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub fn help(positional: &[String]) -> &'static str {
    match positional.first().map(String::as_str) {
        Some("template") => "dynpagectl template put <name> <file> [--at <time>] [--predeploy | --gray]\n\
            Compiles the template, stores it as a new version of template document <name>\n\
            (activation time now, or --at; or as its predeploy / abVersion field) and prints it.",
        Some("page") => "dynpagectl page put <key> --data <file> (--template <name>[@<version>] | --template-file <file>)\n\
            [--at <time>] [--predeploy | --gray]\n\
            Builds the snapshot, renders it against the templates in Redis, and stores it as a new\n\
            version of page <key> (activation time now or --at: a future time schedules it).",
        Some("data") => "dynpagectl data put <redis key> <file>\n\
            Checks that <file> is JSON (any value: an object, a list, a string of HTML) within the\n\
            size limit, stores it at <redis key> (no prefix: the key is used as named by\n\
            dynpage_data) and announces the key on the events channel.",
        Some("history") => "dynpagectl history (<page key> | --template <name>)\n\
            Lists versions with activation times, marking live, pinned, scheduled, predeploy, gray.",
        Some("rollback") => "dynpagectl rollback (<page key> | --template <name>) [--to <version>]\n\
            Pins the version before the live one (or --to <version>) as production.\n\
            dynpagectl rollback clear (<page key> | --template <name>) removes the pin.",
        Some("promote") => "dynpagectl promote (<page key> | --template <name>) [--predeploy | --gray]\n\
            Makes the predeploy version (or, with --gray or when there is none, the abVersion) a new\n\
            production version live now, after checking it renders. The promoted field is removed;\n\
            promoting abVersion also ends the gray share; a rollback pin is cleared.",
        Some("gray") => "dynpagectl gray set (<page key> | --template <name>) <percent>\n\
            Serves the abVersion to <percent> (0-100) of users, by dynpage_gray_by bucket.\n\
            dynpagectl gray off (<page key> | --template <name>) ends the gray release.",
        Some("prune") => "dynpagectl prune (<page key> | --template <name>) --keep <n>\n\
            Deletes production versions older than the <n> newest live ones; never the live or\n\
            pinned version, never a scheduled one, and for a template never a version that a\n\
            page's snapshot names exactly (\"version\": 123 or \"version\": \"123\").",
        Some("republish") => "dynpagectl republish --template <name> [--predeploy]\n\
            For every page whose live snapshot names an exact version of <name>, stores a new page\n\
            version naming the template's production version (with --predeploy: the page's\n\
            predeploy field, naming the template's predeploy version), after checking it renders.\n\
            Pages that name the template without a version follow its releases already.",
        Some("render") => "dynpagectl render (--template-file <file> | --template <name>) --data <file>\n\
            Renders to stdout without writing anything; errors give line and column.",
        _ => "unknown command; see dynpagectl --help",
    }
}

pub(crate) struct Ctx {
    pub url: String,
    pub layout: Layout,
}

impl Ctx {
    fn new(args: &Args) -> Ctx {
        let url = args
            .opt("redis")
            .map(str::to_string)
            .or_else(|| std::env::var("DYNPAGE_REDIS").ok())
            .unwrap_or_else(|| "redis://127.0.0.1:6379".to_string());
        Ctx {
            url,
            layout: Layout::new(args.opt("prefix").unwrap_or(DEFAULT_PREFIX)),
        }
    }

    pub fn connect(&self) -> Result<redis::Connection> {
        store::check_url(&self.url).or_else(|e| usage(format!("bad --redis URL: {e}")))?;
        store::connect(&self.url, Duration::from_secs(5))
            .or_else(|e| fail(format!("cannot connect to {}: {e}", self.url)))
    }
}

pub(crate) fn redis_err<T>(e: redis::RedisError) -> Result<T> {
    fail(format!("redis: {}", e.to_string().replace('\n', " ")))
}

pub fn dispatch(args: &Args) -> Result<()> {
    let ctx = Ctx::new(args);
    let pos: Vec<&str> = args.positional.iter().map(String::as_str).collect();
    match pos.as_slice() {
        ["template", "put", name, file] => template_put(&ctx, args, name, file),
        ["page", "put", key] => page_put(&ctx, args, key),
        ["data", "put", key, file] => data_put(&ctx, args, key, file),
        ["history", rest @ ..] => history(&ctx, args, doc_target(args, rest)?),
        ["rollback", "clear", rest @ ..] => rollback_clear(&ctx, args, doc_target(args, rest)?),
        ["rollback", rest @ ..] => rollback(&ctx, args, doc_target(args, rest)?),
        ["render"] => render(&ctx, args),
        ["promote", rest @ ..] => release::promote(&ctx, args, doc_target(args, rest)?),
        ["gray", "set", rest @ ..] => match rest.split_last() {
            Some((pct, target)) => release::gray_set(&ctx, args, doc_target(args, target)?, pct),
            None => usage("gray set needs a percent"),
        },
        ["gray", "off", rest @ ..] => release::gray_off(&ctx, args, doc_target(args, rest)?),
        ["prune", rest @ ..] => release::prune(&ctx, args, doc_target(args, rest)?),
        ["republish"] => release::republish(&ctx, args),
        [cmd, ..] if ["template", "page", "data", "gray"].contains(cmd) => usage(format!(
            "wrong arguments for \"{cmd}\": {}",
            help(&args.positional)
        )),
        [cmd, ..] => usage(format!("unknown command \"{cmd}\"")),
        [] => usage("no command"),
    }
}

/// `<page key>` or `--template <name>`.
pub(crate) fn doc_target(args: &Args, rest: &[&str]) -> Result<DocRef> {
    match (rest, args.opt("template")) {
        ([key], None) => Ok(DocRef::Page(key.to_string())),
        ([], Some(name)) => Ok(DocRef::Template(name.to_string())),
        _ => usage("give a page key or --template <name>"),
    }
}

fn read_file(path: &str) -> Result<String> {
    std::fs::read_to_string(path).or_else(|e| fail(format!("cannot read {path}: {e}")))
}

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

fn write(
    ctx: &Ctx,
    con: &mut redis::Connection,
    doc: &DocRef,
    target: Target,
    value: &str,
) -> Result<String> {
    match target {
        Target::VersionAt(at) => store::put_new_version(con, &ctx.layout, doc, at, value)
            .map(|v| v.to_string())
            .or_else(redis_err),
        Target::Field(f) => store::put_field(con, &ctx.layout, doc, f, value)
            .map(|_| f.to_string())
            .or_else(redis_err),
    }
}

fn template_put(ctx: &Ctx, args: &Args, name: &str, file: &str) -> Result<()> {
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

fn read_data(path: &str) -> Result<serde_json::Map<String, Value>> {
    let text = read_file(path)?;
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => fail(format!("{path}: data is not a JSON object")),
        Err(e) => fail(format!("{path}: data is not valid JSON: {e}")),
    }
}

/// `name` or `name@version`.
fn template_spec(spec: &str) -> Result<TemplateSpec> {
    let (name, version) = match spec.rsplit_once('@') {
        Some((n, v)) => match check_version(v) {
            Ok(v) => (n, Some(v)),
            Err(e) => {
                return usage(format!(
                    "bad template version in \"{spec}\": {}",
                    version_error(v, e)
                ))
            }
        },
        None => (spec, None),
    };
    if name.is_empty() {
        return usage("empty template name");
    }
    Ok(TemplateSpec::Named {
        name: name.to_string(),
        version,
    })
}

/// The render budget pages are checked against: the module's (`dynpage_render_max_size`, 4m by
/// default; set `DYNPAGE_RENDER_MAX_SIZE` to what the nginx configuration says).
pub(crate) fn render_limits() -> Result<Limits> {
    let Ok(size) = std::env::var("DYNPAGE_RENDER_MAX_SIZE") else {
        return Ok(Limits::with_max_output(DEFAULT_MAX_OUTPUT));
    };
    match parse_size(&size) {
        Some(n) if n > 0 => Ok(Limits::with_max_output(n)),
        _ => usage(format!(
            "bad DYNPAGE_RENDER_MAX_SIZE \"{size}\": a size as nginx writes it (4194304, 512k, 8m)"
        )),
    }
}

/// A size as nginx's `ngx_parse_size` reads it: bytes, or `k`/`K`, `m`/`M`, `g`/`G` units.
fn parse_size(s: &str) -> Option<usize> {
    let (digits, unit) = match s.char_indices().last()? {
        (i, 'k' | 'K') => (&s[..i], 1 << 10),
        (i, 'm' | 'M') => (&s[..i], 1 << 20),
        (i, 'g' | 'G') => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<usize>().ok()?.checked_mul(unit)
}

/// Renders `snapshot_json` as page `key` at `field`, at time `at`, against the templates in
/// Redis: the same resolution the module does, within the same budget.
pub(crate) fn check_render(
    ctx: &Ctx,
    con: &mut redis::Connection,
    key: &str,
    field: Field,
    at: u64,
    snapshot_json: &str,
) -> Result<Vec<u8>> {
    let fetch = Fetch::Field(DocRef::Page(key.to_string()), field);
    let snapshot = match prepare(&fetch, Raw::Field(Some(snapshot_json.as_bytes().to_vec()))) {
        Prepared::Snapshot(Some(Ok(s))) => s,
        Prepared::Snapshot(Some(Err(e))) => return fail(format!("snapshot is unusable: {e}")),
        _ => return fail("snapshot is unusable"),
    };
    let candidate = Candidate {
        key: key.to_string(),
        field,
        snapshot,
    };
    let mut inputs = LiveInputs::new(con, &ctx.layout, Some(candidate));
    let ask = Ask {
        predeploy: field == Field::Predeploy,
        gray_user: (field == Field::Ab).then_some(b"dynpagectl".as_slice()),
        ..Ask::default()
    };
    let outcome = resolve(key, at, &ask, &mut inputs);
    if let Some(e) = inputs.error.take() {
        return redis_err(e);
    }
    let page = match outcome {
        Outcome::Ready(p) => p,
        Outcome::Broken { cause, .. } | Outcome::NotFound(cause) => return fail(cause),
        Outcome::Need(_) => return fail("templates could not be read"),
    };
    // Stricter than nginx's default: a module that fails is refused here, not left out.
    if let Some(m) = page.skipped_modules.first() {
        return fail(format!("module \"{}\" failed: {}", m.name, m.cause));
    }
    let options = RenderOptions {
        limits: render_limits()?,
        ..RenderOptions::default()
    };
    let mut out = Vec::new();
    page.render_with(None, &options, &mut out, &mut Vec::new())
        .or_else(|e| fail(e.to_string()))?;
    Ok(out)
}

fn page_put(ctx: &Ctx, args: &Args, key: &str) -> Result<()> {
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

fn data_put(ctx: &Ctx, args: &Args, key: &str, file: &str) -> Result<()> {
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

pub(crate) fn load_meta(ctx: &Ctx, con: &mut redis::Connection, doc: &DocRef) -> Result<DocMeta> {
    match store::get_meta(con, &ctx.layout, doc).or_else(redis_err)? {
        Some(raw) => Ok(DocMeta::from_fields(
            raw.fields.iter().map(String::as_str),
            raw.pin.as_deref(),
            raw.gray.as_deref(),
        )),
        None => fail(format!("{doc} does not exist")),
    }
}

fn history(ctx: &Ctx, args: &Args, doc: DocRef) -> Result<()> {
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

fn rollback(ctx: &Ctx, args: &Args, doc: DocRef) -> Result<()> {
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

fn rollback_clear(ctx: &Ctx, args: &Args, doc: DocRef) -> Result<()> {
    args.only(&["template"])?;
    let mut con = ctx.connect()?;
    store::set_pin(&mut con, &ctx.layout, &doc, None).or_else(redis_err)?;
    println!("cleared");
    Ok(())
}

fn render(ctx: &Ctx, args: &Args) -> Result<()> {
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
