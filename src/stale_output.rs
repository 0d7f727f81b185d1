//! Last good production outputs in the shared zone: kept after a render from current inputs,
//! served by any worker (a new one after a reload or a crash included) while no source answers
//! and its own cache holds nothing stale.

use ngx::ffi::{ngx_buf_t, ngx_http_request_t};

use dynpage_core::etag::etag_matches;
use dynpage_core::serve::{Reply, Source};
use dynpage_core::stale_store::{identity, Identity, Stored};
use dynpage_core::version::{Field, Variant};

use crate::conf::LocConf;
use crate::request_ctx::ReqCtx;
use crate::response;
use crate::worker::{self, Runtime};

/// What determines this request's production output besides the versions (see
/// `dynpage_core::stale_store::identity`).
fn output_identity(lcf: &LocConf, ctx: &ReqCtx) -> Identity {
    identity(
        lcf.output_fingerprint,
        lcf.template.as_deref(),
        ctx.key.as_bytes(),
        ctx.data_keys().iter().map(|k| k.as_bytes()),
        ctx.vars().iter().map(|v| v.as_bytes()),
    )
}

/// Keeps the production output `body` just served from current inputs, so that it still serves
/// stale after a reload or a worker crash while no source answers.
pub fn keep(rt: &mut Runtime, lcf: &LocConf, ctx: &ReqCtx, reply: &Reply, body: &[u8], now: u64) {
    let current = matches!(reply.source, Source::L1 | Source::Redis | Source::Cms);
    let (Variant::Production, Field::Version(version), true, false) =
        (reply.variant, reply.field, current, reply.not_modified)
    else {
        return;
    };
    let id = output_identity(lcf, ctx);
    let stored = Stored {
        check: id.check,
        version,
        last_modified_secs: reply.last_modified_secs,
        etag: reply.etag,
        key: ctx.key.as_bytes(),
        body,
    };
    let refresh_ms = lcf.cache_ttl_ms().max(1000);
    rt.keep_for_stale(id, &stored, now, refresh_ms);
}

/// The last good production output of this request kept in the shared zone, if it was good
/// within `dynpage_stale_ttl`: its reply and (unless 304) its body in the request pool.
pub fn recall(
    r: &mut ngx_http_request_t,
    lcf: &LocConf,
    ctx: &ReqCtx,
    if_none_match: Option<&[u8]>,
    now: u64,
) -> Option<(Reply, Option<*mut ngx_buf_t>)> {
    let identity = output_identity(lcf, ctx);
    worker::with(|rt| {
        rt.zone
            .as_ref()?
            .recall(identity, lcf.stale_ttl_ms(), now, |s| {
                let not_modified = if_none_match.is_some_and(|v| etag_matches(v, &s.etag));
                let reply = Reply {
                    not_modified,
                    etag: s.etag,
                    // The zone keeps identity bytes only.
                    coding: None,
                    last_modified_secs: s.last_modified_secs,
                    variant: Variant::Production,
                    field: Field::Version(s.version),
                    source: Source::Stale,
                };
                let body = if not_modified {
                    None
                } else {
                    response::copy_body(r, s.body)
                };
                (reply, body)
            })
    })
    .flatten()
}
