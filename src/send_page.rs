//! Sends a page: the reply's headers and its body (a kept output without a copy, or the one
//! just rendered copied into the request pool), keeping a production output in the shared zone
//! for stale serving; or the shared zone's last good output when nothing else can answer.

use ngx::ffi::{ngx_http_request_t, ngx_int_t};

use dynpage_core::serve::{Body, Reply};

use crate::conf::LocConf;
use crate::request_ctx::ReqCtx;
use crate::response;
use crate::stale_output;
use crate::worker;

/// Sends `reply` (a 304, or a 200 with `body`). `updating`: inputs past their TTL served it
/// while a background fetch refreshes them.
pub fn page(
    r: &mut ngx_http_request_t,
    lcf: &LocConf,
    ctx: &mut ReqCtx,
    reply: &Reply,
    body: Body,
    now: u64,
    updating: bool,
) -> ngx_int_t {
    ctx.served.set(reply.variant, reply.field, reply.source);
    if updating {
        ctx.served.set_updating();
    }
    if reply.not_modified {
        return response::send(r, lcf, reply, None);
    }
    let buf = match body {
        Body::Kept(output) => {
            worker::with(|rt| stale_output::keep(rt, lcf, ctx, reply, &output.body, now));
            response::kept_body(r, output, reply.coding)
        }
        Body::Rendered => worker::with(|rt| {
            let body = std::mem::take(&mut rt.body);
            stale_output::keep(rt, lcf, ctx, reply, &body, now);
            let buf = response::copy_body(r, &body);
            rt.body = body;
            buf
        })
        .flatten(),
    };
    response::send(r, lcf, reply, buf)
}

/// Sends the last good output of this request kept in the shared zone, if there is one.
pub fn stale(
    r: &mut ngx_http_request_t,
    lcf: &LocConf,
    ctx: &mut ReqCtx,
    if_none_match: Option<&[u8]>,
    now: u64,
) -> Option<ngx_int_t> {
    let (reply, body) = stale_output::recall(r, lcf, ctx, if_none_match, now)?;
    if let Some(c) = crate::metrics::counters() {
        c.stale_outputs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    ctx.served.set(reply.variant, reply.field, reply.source);
    Some(response::send(r, lcf, &reply, body))
}
