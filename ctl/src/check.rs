//! The check every page write passes first: the snapshot renders against the templates in
//! Redis, as the module would render it, within the module's output budget.

use dynpage_core::from_redis::{Candidate, RedisInputs};
use dynpage_core::layout::DocRef;
use dynpage_core::limits::{Limits, DEFAULT_MAX_OUTPUT};
use dynpage_core::prepare::{prepare, Prepared};
use dynpage_core::render::RenderOptions;
use dynpage_core::resolve::{resolve, Outcome};
use dynpage_core::store::{Fetch, Raw};
use dynpage_core::version::{Ask, Field};

use crate::context::{fail, redis_err, usage, Con, Ctx, Result};

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
    con: &mut Con,
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
    let mut inputs = RedisInputs::new(con, &ctx.layout, Some(candidate));
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
