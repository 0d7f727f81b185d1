//! A request held while its fetch runs: nginx's `count` and `blocked` on its main request, the
//! timer that ends a wait that takes too long, and the `suspended` gauge. The event loop never
//! waits: the content handler returns `NGX_DONE` and the request is finalized when the wait ends.

use std::sync::atomic::Ordering::Relaxed;

use ngx::ffi::{
    ngx_add_timer, ngx_del_timer, ngx_event_handler_pt, ngx_http_finalize_request,
    ngx_http_request_t, ngx_http_run_posted_requests, ngx_int_t,
};

use crate::request_ctx::ReqCtx;

/// Holds `r` until `release`, and arms `ctx`'s timer to call `on_timeout` (with `r` as its data)
/// after `wait_ms`.
///
/// # Safety
/// `r` is a live request in its content phase, about to return `NGX_DONE` (whose finalize
/// consumes the count added here); `ctx` is its context, in its pool.
pub unsafe fn hold(
    r: *mut ngx_http_request_t,
    ctx: &mut ReqCtx,
    wait_ms: u64,
    on_timeout: ngx_event_handler_pt,
) {
    // SAFETY: per the contract, `r` is live; `main` is its live main request (`r` itself for a
    // main request), referenced nowhere else during this call. count and blocked keep nginx from
    // freeing it while we hold it.
    let main = unsafe { &mut *(*r).main };
    main.set_count(main.count() + 1);
    main.set_blocked(main.blocked() + 1);
    if let Some(g) = crate::metrics::gauges() {
        g.suspended.fetch_add(1, Relaxed);
    }
    ctx.timer.handler = on_timeout;
    ctx.timer.data = r.cast();
    // SAFETY: a live request's connection outlives it.
    ctx.timer.log = unsafe { (*(*r).connection).log };
    // SAFETY: the timer lives in the request pool's ctx and is deleted (or fires) before the
    // request is finalized.
    unsafe { ngx_add_timer(&mut ctx.timer, wait_ms as _) };
}

/// Ends the hold `hold` put on `r`: deletes its timer if still pending and unblocks its main
/// request. `ctx`: its context, if it has one.
///
/// # Safety
/// `r` was held by `hold` and not released since (so nginx kept it alive); `ctx` is its context.
pub unsafe fn release(r: *mut ngx_http_request_t, ctx: Option<&mut ReqCtx>) {
    if let Some(ctx) = ctx {
        if ctx.timer.timer_set() != 0 {
            // SAFETY: the timer was added in `hold` and is still pending.
            unsafe { ngx_del_timer(&mut ctx.timer) };
        }
    }
    // SAFETY: per the contract; `main` is the live main request, blocked by `hold`.
    let main = unsafe { &mut *(*r).main };
    main.set_blocked(main.blocked() - 1);
    if let Some(g) = crate::metrics::gauges() {
        g.suspended.fetch_sub(1, Relaxed);
    }
}

/// Finalizes the request `release` let go of with `rc`, then runs what nginx posted meanwhile.
///
/// # Safety
/// `r` is live: its count (added by `hold`) is still held, and nothing references it.
pub unsafe fn finalize(r: *mut ngx_http_request_t, rc: ngx_int_t) {
    // SAFETY: per the contract; its connection outlives it.
    let c = unsafe { (*r).connection };
    // SAFETY: per the contract.
    unsafe { ngx_http_finalize_request(r, rc) };
    // SAFETY: the connection is live until its posted requests ran.
    unsafe { ngx_http_run_posted_requests(c) };
}

/// Whether the client of the held request `r` closed its connection.
///
/// # Safety
/// `r` is live (held by `hold`).
pub unsafe fn client_closed(r: *const ngx_http_request_t) -> bool {
    // SAFETY: per the contract; a live request's connection outlives it.
    unsafe { (*(*r).connection).error() != 0 }
}
