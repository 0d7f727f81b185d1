//! Release commands: `promote`, `gray set` / `gray off`, `prune`, `republish`. Like every write,
//! each checks what it writes first and announces the document on `P events`.

use dynpage_core::layout::{check_gray_share, quote, DocRef, MAX_GRAY_SHARE};
use dynpage_core::render::compile;
use dynpage_core::snapshot::{Snapshot, TemplateSpec};
use dynpage_core::store;
use dynpage_core::version::Field;

use crate::args::Args;
use crate::check::check_render;
use crate::context::{fail, load_meta, now_ms, redis_err, usage, Con, Ctx, Failure, Result};

/// Checks that `value`, about to become `field` of `doc` at time `at`, works: a template
/// compiles, a page snapshot renders against the templates in Redis.
fn check(ctx: &Ctx, con: &mut Con, doc: &DocRef, field: Field, at: u64, value: &str) -> Result<()> {
    match doc {
        DocRef::Template(_) => compile(value.to_string())
            .map(|_| ())
            .or_else(|e| fail(format!("{doc}: {e}"))),
        DocRef::Page(key) => check_render(ctx, con, key, field, at, value).map(|_| ()),
    }
}

pub fn promote(ctx: &Ctx, args: &Args, doc: DocRef) -> Result<()> {
    args.only(&["template", "predeploy", "gray"])?;
    let mut con = ctx.connect()?;
    let meta = load_meta(ctx, &mut con, &doc)?;
    let field = match (args.flag("predeploy"), args.flag("gray")) {
        (true, true) => return usage("--predeploy and --gray exclude each other"),
        (true, false) if !meta.has_predeploy => {
            return fail(format!("{doc} has no predeploy version"))
        }
        (false, true) if !meta.has_ab => return fail(format!("{doc} has no abVersion")),
        (true, false) => Field::Predeploy,
        (false, true) => Field::Ab,
        (false, false) if meta.has_predeploy => Field::Predeploy,
        (false, false) if meta.has_ab => Field::Ab,
        (false, false) => {
            return fail(format!(
                "{doc} has neither a predeploy version nor an abVersion to promote"
            ))
        }
    };
    let Some(value) = store::get_field(&mut con, &ctx.layout, &doc, field).or_else(redis_err)?
    else {
        return fail(format!("{doc} lost its {field} field while promoting"));
    };
    let now = now_ms();
    check(ctx, &mut con, &doc, Field::Version(now), now, &value)?;
    let version =
        store::put_new_version(&mut con, &ctx.layout, &doc, now, &value).or_else(redis_err)?;
    store::delete_fields(&mut con, &ctx.layout, &doc, &[field]).or_else(redis_err)?;
    if field == Field::Ab {
        store::set_gray(&mut con, &ctx.layout, &doc, None).or_else(redis_err)?;
    }
    if let Some(pin) = meta.pin {
        store::set_pin(&mut con, &ctx.layout, &doc, None).or_else(redis_err)?;
        eprintln!("rollback pin to {pin} cleared: the promoted version is live");
    }
    println!("{version}");
    Ok(())
}

pub fn gray_set(ctx: &Ctx, args: &Args, doc: DocRef, percent: &str) -> Result<()> {
    args.only(&["template"])?;
    // The same rule as the module's: canonical decimal 0-100 ("050", "+5", " 5" are refused).
    let percent = match check_gray_share(percent) {
        Ok(p) => p,
        Err(e) => {
            return usage(format!(
                "gray share {} is not a whole number 0-100 written plainly: it {}",
                quote(percent),
                e.reason(u64::from(MAX_GRAY_SHARE))
            ))
        }
    };
    let mut con = ctx.connect()?;
    let meta = load_meta(ctx, &mut con, &doc)?;
    if !meta.has_ab && percent > 0 {
        return fail(format!(
            "{doc} has no abVersion: put one with --gray before setting a share"
        ));
    }
    store::set_gray(&mut con, &ctx.layout, &doc, Some(percent)).or_else(redis_err)?;
    println!("{percent}");
    Ok(())
}

pub fn gray_off(ctx: &Ctx, args: &Args, doc: DocRef) -> Result<()> {
    args.only(&["template"])?;
    let mut con = ctx.connect()?;
    load_meta(ctx, &mut con, &doc)?;
    store::set_gray(&mut con, &ctx.layout, &doc, None).or_else(redis_err)?;
    println!("off");
    Ok(())
}

pub fn prune(ctx: &Ctx, args: &Args, doc: DocRef) -> Result<()> {
    args.only(&["template", "keep"])?;
    let keep = match args.opt("keep").map(str::parse::<usize>) {
        Some(Ok(n)) if n >= 1 => n,
        Some(_) => return usage("--keep needs a whole number of at least 1"),
        None => return usage("prune needs --keep <n>"),
    };
    let mut con = ctx.connect()?;
    let meta = load_meta(ctx, &mut con, &doc)?;
    for w in &meta.warnings {
        eprintln!("warning: {doc}: {w}");
    }
    let now = now_ms();
    // Never deleted: the version served now (the pin, if any), the newest live version (served
    // again once the pin is cleared), and, for a template, every version a page names exactly.
    let mut protected: Vec<u64> = [meta.production(now), meta.pin]
        .into_iter()
        .flatten()
        .collect();
    if let Some(i) = meta.versions.partition_point(|&v| v <= now).checked_sub(1) {
        protected.push(meta.versions[i]);
    }
    if let DocRef::Template(name) = &doc {
        protected.extend(versions_named_by_pages(ctx, &mut con, name)?);
    }
    // Versions already live, newest first: keep `keep` of them; scheduled ones always stay.
    let doomed: Vec<Field> = meta
        .versions
        .iter()
        .rev()
        .filter(|&&v| v <= now)
        .skip(keep)
        .filter(|v| !protected.contains(v))
        .map(|&v| Field::Version(v))
        .collect();
    store::delete_fields(&mut con, &ctx.layout, &doc, &doomed).or_else(redis_err)?;
    for f in &doomed {
        println!("deleted {f}");
    }
    println!("{} version(s) deleted", doomed.len());
    Ok(())
}

/// Every version of template `name` that some field of some page names exactly, read with the
/// module's own reader of template references: `"version": 123` and `"version": "123"` alike.
/// A snapshot the module cannot use names nothing.
fn versions_named_by_pages(ctx: &Ctx, con: &mut Con, name: &str) -> Result<Vec<u64>> {
    let mut named = Vec::new();
    for page in store::list_pages(con, &ctx.layout).or_else(redis_err)? {
        let values: Vec<Vec<u8>> = redis::cmd("HVALS")
            .arg(ctx.layout.doc_key(&page))
            .query(con)
            .or_else(redis_err)?;
        for v in values {
            let Ok(text) = std::str::from_utf8(&v) else {
                continue;
            };
            if let Ok(TemplateSpec::Named {
                name: n,
                version: Some(version),
            }) = Snapshot::template_ref(text)
            {
                if n == name {
                    named.push(version);
                }
            }
        }
    }
    Ok(named)
}

/// What republish does with one page.
enum Republish {
    Written(String),
    Follows,
    Unrelated,
}

pub fn republish(ctx: &Ctx, args: &Args) -> Result<()> {
    args.only(&["template", "predeploy"])?;
    let Some(name) = args.opt("template") else {
        return usage("republish needs --template <name>");
    };
    let predeploy = args.flag("predeploy");
    let mut con = ctx.connect()?;
    let tpl = DocRef::Template(name.to_string());
    let tpl_meta = load_meta(ctx, &mut con, &tpl)?;
    let now = now_ms();
    let target_version = if predeploy {
        if !tpl_meta.has_predeploy {
            return fail(format!("{tpl} has no predeploy version"));
        }
        None
    } else {
        match tpl_meta.production(now) {
            Some(v) => Some(v),
            None => return fail(format!("{tpl} has no live version")),
        }
    };
    let pages = store::list_pages(&mut con, &ctx.layout).or_else(redis_err)?;
    let (mut written, mut failed) = (0usize, Vec::new());
    for page in pages {
        match republish_one(ctx, &mut con, &page, name, target_version, now) {
            Ok(Republish::Written(v)) => {
                written += 1;
                println!("{} {v}", page.name());
            }
            Ok(Republish::Follows) => {
                println!("{} follows {tpl} already", page.name());
            }
            Ok(Republish::Unrelated) => {}
            Err(e) => {
                let why = match e {
                    Failure::Fail(m) | Failure::Usage(m) => m,
                };
                eprintln!("{}: not republished: {why}", page.name());
                failed.push(page.name().to_string());
            }
        }
    }
    if !failed.is_empty() {
        return fail(format!(
            "{} page(s) republished, {} refused: {}",
            written,
            failed.len(),
            failed.join(", ")
        ));
    }
    println!("{written} page(s) republished");
    Ok(())
}

/// Re-points one page's live snapshot at template `name`'s version `version` (its predeploy
/// version when `None`), if the snapshot names an exact version of that template.
fn republish_one(
    ctx: &Ctx,
    con: &mut Con,
    page: &DocRef,
    name: &str,
    version: Option<u64>,
    now: u64,
) -> Result<Republish> {
    let meta = load_meta(ctx, con, page)?;
    let Some(live) = meta.production(now) else {
        return Ok(Republish::Unrelated);
    };
    if let Some(pin) = meta.pin {
        return fail(format!(
            "pinned to {pin} by a rollback: clear it first (dynpagectl rollback clear)"
        ));
    }
    if version.is_none() && meta.has_predeploy {
        return fail("has a predeploy version of its own, which would be overwritten");
    }
    let field = Field::Version(live);
    let Some(json) = store::get_field(con, &ctx.layout, page, field).or_else(redis_err)? else {
        return Ok(Republish::Unrelated);
    };
    match Snapshot::parse(&json).map(|s| s.template) {
        Ok(TemplateSpec::Named {
            name: n,
            version: Some(_),
        }) if n == name => {}
        Ok(TemplateSpec::Named {
            name: n,
            version: None,
        }) if n == name => return Ok(Republish::Follows),
        _ => return Ok(Republish::Unrelated),
    }
    // Rewrite only "template": anything else in the snapshot object is kept as it is.
    let Ok(serde_json::Value::Object(mut snapshot)) = serde_json::from_str(&json) else {
        return Ok(Republish::Unrelated);
    };
    let (template, field) = match version {
        Some(v) => (
            serde_json::json!({ "name": name, "version": v }),
            Field::Version(now),
        ),
        // Predeploy: the page's predeploy field names the template without a version, so a
        // predeploy request picks the template's predeploy version.
        None => (serde_json::json!({ "name": name }), Field::Predeploy),
    };
    snapshot.insert("template".to_string(), template);
    let new_json = serde_json::Value::Object(snapshot).to_string();
    check_render(ctx, con, page.name(), field, now, &new_json)?;
    let written = match field {
        Field::Version(_) => store::put_new_version(con, &ctx.layout, page, now, &new_json)
            .or_else(redis_err)?
            .to_string(),
        f => {
            store::put_field(con, &ctx.layout, page, f, &new_json).or_else(redis_err)?;
            f.to_string()
        }
    };
    Ok(Republish::Written(written))
}
