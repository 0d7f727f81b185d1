//! The content handler: asks the request path's decisions (`dynpage_core::serve`) what to do
//! and carries it out — suspend for a fetch, respond, or fail — and resumes a suspended request
//! when its fetch ends or its wait times out.

use std::ptr;

use ngx::ffi::{
    ngx_event_t, ngx_http_discard_request_body, ngx_http_request_t, ngx_int_t, NGX_DONE,
    NGX_HTTP_GET, NGX_HTTP_HEAD, NGX_OK,
};

use dynpage_core::serve::{self, Answer, Decision};

use crate::clock::now_ms;
use crate::conf::LocConf;
use crate::ffi_guard::catch_request;
use crate::module::loc_conf;
use crate::request_ctx::{self, key_for_log, page_key, ReqCtx};
use crate::request_log::trace_to;
use crate::send_page;
use crate::wait;
use crate::worker;
use crate::worker_env::WorkerEnv;

const HTTP_NOT_ALLOWED: ngx_int_t = 405;
const HTTP_NOT_FOUND: ngx_int_t = 404;
const HTTP_INTERNAL_SERVER_ERROR: ngx_int_t = 500;
const HTTP_SERVICE_UNAVAILABLE: ngx_int_t = 503;
const HTTP_CLIENT_CLOSED_REQUEST: ngx_int_t = 499;

/// nginx's content handler for `dynpage_page` and `dynpage_template` locations.
pub unsafe extern "C" fn content_handler(rp: *mut ngx_http_request_t) -> ngx_int_t {
    catch_request(
        rp,
        "the content handler",
        key_for_log,
        HTTP_INTERNAL_SERVER_ERROR,
        || {
            // SAFETY: nginx calls a content handler with a live request that nothing else
            // references during the call; its location configuration lives in the cycle.
            let (r, lcf) = unsafe { (&mut *rp, loc_conf(&*rp)) };
            match lcf {
                Some(lcf) => handle(r, lcf),
                None => HTTP_INTERNAL_SERVER_ERROR,
            }
        },
    )
}

fn handle(r: &mut ngx_http_request_t, lcf: &LocConf) -> ngx_int_t {
    if r.method & (NGX_HTTP_GET | NGX_HTTP_HEAD) as usize == 0 {
        return HTTP_NOT_ALLOWED;
    }
    // SAFETY: live request in its content phase.
    let rc = unsafe { ngx_http_discard_request_body(r) };
    if rc != NGX_OK as ngx_int_t {
        return rc;
    }
    // SAFETY: the new context is used within this callback only, its one reference.
    let Some(ctx) = (unsafe { request_ctx::create(r, lcf) }) else {
        return HTTP_INTERNAL_SERVER_ERROR;
    };
    ctx.started_ms = now_ms();
    #[cfg(feature = "test-panic")]
    if ctx.key.as_bytes() == b"/dynpage-test-panic" {
        panic!("test-panic: the content handler panics on purpose");
    }
    let rc = respond(r, lcf, ctx);
    count_request(r, ctx, rc)
}

/// Counts a request answered with `rc` for `dynpage_status` (a suspended one when it ends).
fn count_request(r: &ngx_http_request_t, ctx: &ReqCtx, rc: ngx_int_t) -> ngx_int_t {
    if rc != NGX_DONE as ngx_int_t {
        crate::metrics::count_request(ctx.served.served(), r.headers_out.status as u64, rc);
    }
    rc
}

/// Decides and carries the decision out. Returns what nginx's finalize expects.
fn respond(r: &mut ngx_http_request_t, lcf: &LocConf, ctx: &mut ReqCtx) -> ngx_int_t {
    // A copy: the key's bytes are in the request pool, apart from the context.
    let key_str = ctx.key;
    let key = match page_key(&key_str) {
        Ok(k) => k,
        Err(cause) => {
            info!(r, "{cause}, answering 404");
            return HTTP_NOT_FOUND;
        }
    };
    #[cfg(feature = "test-panic")]
    if ctx.state.source() != serve::Source::L1 && key == "/dynpage-test-panic-resumed" {
        panic!("test-panic: a resumed request panics on purpose");
    }
    let now = now_ms();
    // SAFETY: `r` is live (a reference): its header elements are in its pool.
    let if_none_match = unsafe { request_ctx::if_none_match(r) };
    // SAFETY: likewise.
    let encodings = unsafe { crate::encoding::for_request(r, lcf) };
    let asked = ctx.asked(lcf);
    let req = asked.request(ctx, lcf, key, now, if_none_match, encodings.as_slice());
    let log = crate::log::AsLog::as_log(&*r);
    let mut state = ctx.state;
    let started = std::time::Instant::now();
    let decided = worker::with(|rt| {
        let since = ctx.started_ms;
        let kept_bytes = rt.kept_bytes();
        let mut env = WorkerEnv::new(
            rt,
            now,
            lcf.cache_ttl_ms(),
            since,
            lcf.stale_ttl_ms(),
            lcf.output_cache(),
            lcf.background_update_ms(),
        );
        let trace = &mut trace_to(log, key, lcf.output_cache());
        let decision = serve::decide(&req, &mut state, &mut env, trace);
        let refresh = env.take_refresh();
        let updating = !refresh.is_empty();
        if updating {
            rt.refresh(refresh);
        }
        // Here only kept outputs change (fetches add in `wake_up`, which publishes too); what
        // the caches let go of (outputs evicted, snapshots held hollow) is noted either way.
        if rt.kept_bytes() != kept_bytes {
            rt.publish_gauges();
        } else {
            rt.note_let_go();
        }
        (decision, updating)
    });
    ctx.state = state;
    let Some((decision, updating)) = decided else {
        error!(r, "page \"{}\": no source is running", key.escape_debug());
        return HTTP_SERVICE_UNAVAILABLE;
    };
    match decision {
        Decision::Fetch(fetches) => {
            debug!(
                r,
                "fetching {} key{} for \"{}\", first {:?}",
                fetches.len(),
                if fetches.len() == 1 { "" } else { "s" },
                key.escape_debug(),
                fetches.first().map(|f| f.cache_key()).unwrap_or_default()
            );
            let waiter = ptr::from_mut(r);
            if worker::with(|rt| rt.request(fetches, waiter)) == Some(Ok(())) {
                let wait_ms = worker::with(|rt| rt.wait_limit_ms).unwrap_or(1000);
                debug!(
                    r,
                    "suspended \"{}\" until its fetch ends, at most {wait_ms}ms",
                    key.escape_debug()
                );
                // SAFETY: `r` is live in its content phase, which returns NGX_DONE next.
                unsafe { wait::hold(waiter, ctx, wait_ms, Some(on_wait_timeout)) };
                return NGX_DONE as ngx_int_t;
            }
            error!(
                r,
                "page \"{}\" fetch threads are not running",
                key.escape_debug()
            );
            HTTP_SERVICE_UNAVAILABLE
        }
        Decision::Unavailable => {
            send_page::stale(r, lcf, ctx, if_none_match, now).unwrap_or(HTTP_SERVICE_UNAVAILABLE)
        }
        Decision::NotFound(cause) => {
            info!(r, "page \"{}\" not found: {cause}", key.escape_debug());
            HTTP_NOT_FOUND
        }
        Decision::Failed(line) => {
            if let Some(line) = line {
                error!(r, "page \"{}\" {line}", key.escape_debug());
            }
            HTTP_INTERNAL_SERVER_ERROR
        }
        Decision::Reply {
            reply,
            body,
            alert,
            left_out,
        } => {
            if matches!(body, serve::Body::Rendered) {
                if let Some(c) = crate::metrics::counters() {
                    let us = started.elapsed().as_micros();
                    c.render.observe_us(u64::try_from(us).unwrap_or(u64::MAX));
                }
            }
            if let Some(line) = alert {
                alert!(r, "page \"{}\" {line}", key.escape_debug());
            }
            for line in left_out {
                warn!(r, "page \"{}\": {line}", key.escape_debug());
            }
            send_page::page(r, lcf, ctx, &reply, body, now, updating)
        }
    }
}

/// Called on the event loop when a fetch request `rp` waited for is done.
pub fn resume(rp: *mut ngx_http_request_t, answer: Answer) {
    end_wait(rp, Some(answer));
}

unsafe extern "C" fn on_wait_timeout(ev: *mut ngx_event_t) {
    // SAFETY: the timer's data is the held request (see `wait::hold`).
    let rp = unsafe { (*ev).data.cast::<ngx_http_request_t>() };
    end_wait(rp, None);
}

/// Ends the wait of `rp`, held by `wait::hold`: decides again (`None`: it timed out; then
/// stale inputs serve, else 503) and finalizes it.
fn end_wait(rp: *mut ngx_http_request_t, answer: Option<Answer>) {
    let what = if answer.is_some() {
        "resuming a request"
    } else {
        "the wait timer"
    };
    // Outside the guard, whatever happens in it: the wait is over.
    // SAFETY: `rp` was held by `wait::hold`, so nginx kept it alive; its ctx (created by the
    // content handler) is not referenced elsewhere now.
    let waited = unsafe { request_ctx::get(&*rp) };
    // SAFETY: held by `wait::hold` and not released since; `waited` is its context.
    unsafe { wait::release(rp, waited) };
    // SAFETY: `rp` is live (we hold its count).
    let closed = answer.is_some() && unsafe { wait::client_closed(rp) };
    let rc = catch_request(rp, what, key_for_log, HTTP_INTERNAL_SERVER_ERROR, || {
        // SAFETY: `rp` was held with blocked > 0, so nginx kept it alive; nothing else
        // references it or its ctx (created by the content handler) during this callback; its
        // location configuration lives in the cycle.
        let (r, ctx, lcf) = unsafe { (&mut *rp, request_ctx::get(&*rp), loc_conf(&*rp)) };
        match (ctx, lcf) {
            (Some(ctx), Some(lcf)) => {
                let rc = decide_again(r, lcf, ctx, answer, closed);
                count_request(r, ctx, rc)
            }
            _ => HTTP_INTERNAL_SERVER_ERROR,
        }
    });
    // SAFETY: the request is still live (we hold its count) and nothing references it now.
    unsafe { wait::finalize(rp, rc) };
}

fn decide_again(
    r: &mut ngx_http_request_t,
    lcf: &LocConf,
    ctx: &mut ReqCtx,
    answer: Option<Answer>,
    closed: bool,
) -> ngx_int_t {
    match answer {
        Some(a) => {
            debug!(
                r,
                "resumed \"{}\": its fetch ended ({a:?})",
                String::from_utf8_lossy(ctx.key.as_bytes()).escape_debug()
            );
            ctx.state.fetch_ended(a);
        }
        None => {
            debug!(
                r,
                "resumed \"{}\": its wait timed out",
                String::from_utf8_lossy(ctx.key.as_bytes()).escape_debug()
            );
            // Only this request gives up: what failed (a source, or one document) is charged
            // by the fetch thread, whose round trips end within the timeout.
            let waiter = ptr::from_mut(r);
            worker::with(|rt| rt.forget(waiter));
            ctx.state.timed_out();
        }
    }
    if closed {
        return HTTP_CLIENT_CLOSED_REQUEST;
    }
    let rc = respond(r, lcf, ctx);
    if answer.is_none() && rc == HTTP_SERVICE_UNAVAILABLE {
        let key = String::from_utf8_lossy(ctx.key.as_bytes());
        error!(
            r,
            "page \"{}\" timed out waiting for its sources",
            key.escape_debug()
        );
    }
    rc
}
