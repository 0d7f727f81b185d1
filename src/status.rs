//! `dynpage_status`: the counters of all workers (kept in the shared zone) as JSON, Prometheus
//! text (`?format=prometheus`) or a live HTML page (`?format=html`); an unknown format is 400.

use std::ffi::CStr;

use ngx::ffi::{
    ngx_chain_t, ngx_http_discard_request_body, ngx_http_output_filter, ngx_http_request_t,
    ngx_http_send_header, ngx_int_t, ngx_str_t, NGX_ERROR, NGX_HTTP_GET, NGX_HTTP_HEAD, NGX_OK,
};

use dynpage_core::status_page::{self, About, Format, FORMATS};

use crate::clock::now_ms;
use crate::ffi_guard::catch_request;
use crate::response::{copy_body, push_header};

const HTTP_OK: ngx_int_t = 200;
const HTTP_BAD_REQUEST: ngx_int_t = 400;
const HTTP_NOT_ALLOWED: ngx_int_t = 405;
const HTTP_INTERNAL_SERVER_ERROR: ngx_int_t = 500;
const HTTP_SERVICE_UNAVAILABLE: ngx_int_t = 503;

/// The content handler of `dynpage_status` locations.
pub unsafe extern "C" fn handler(rp: *mut ngx_http_request_t) -> ngx_int_t {
    catch_request(
        rp,
        "the status handler",
        |r| String::from_utf8_lossy(r.uri.as_bytes()).into_owned(),
        HTTP_INTERNAL_SERVER_ERROR,
        || {
            // SAFETY: nginx calls a content handler with a live request that nothing else
            // references during the call.
            let r = unsafe { &mut *rp };
            respond(r)
        },
    )
}

fn respond(r: &mut ngx_http_request_t) -> ngx_int_t {
    if r.method & (NGX_HTTP_GET | NGX_HTTP_HEAD) as usize == 0 {
        return HTTP_NOT_ALLOWED;
    }
    // SAFETY: live request in its content phase.
    let rc = unsafe { ngx_http_discard_request_body(r) };
    if rc != NGX_OK as ngx_int_t {
        return rc;
    }
    let format = match Format::from_query(r.args.as_bytes()) {
        Ok(f) => f,
        Err(asked) => {
            let body = format!(
                "unknown format \"{}\": use one of {FORMATS}\n",
                asked.escape_debug()
            );
            return send(r, HTTP_BAD_REQUEST, "text/plain; charset=utf-8", &body);
        }
    };
    let Some(counters) = crate::metrics::counters() else {
        // `dynpage_counters off` (or a zone this worker could not use, logged at its start).
        let body = "dynpage_status: nothing is counted (dynpage_counters off)\n";
        return send(
            r,
            HTTP_SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            body,
        );
    };
    let values = counters.read(crate::metrics::running);
    let about = About {
        dynpage_version: env!("CARGO_PKG_VERSION"),
        nginx_version: nginx_version(),
        now_ms: now_ms(),
    };
    let body = status_page::body(format, &values, &about);
    send(r, HTTP_OK, format.content_type(), &body)
}

fn nginx_version() -> &'static str {
    let v: &'static CStr = ngx::ffi::NGINX_VERSION;
    v.to_str().unwrap_or("unknown")
}

/// Sends `body` with `status` and `content_type`, never cached.
fn send(
    r: &mut ngx_http_request_t,
    status: ngx_int_t,
    content_type: &'static str,
    body: &str,
) -> ngx_int_t {
    r.headers_out.status = status as _;
    r.headers_out.content_type = ngx_str_t {
        len: content_type.len(),
        data: content_type.as_ptr().cast_mut(),
    };
    r.headers_out.content_type_len = content_type.find(';').unwrap_or(content_type.len());
    r.headers_out.content_type_lowcase = std::ptr::null_mut();
    r.headers_out.content_length_n = body.len() as _;
    if push_header(r, "Cache-Control", b"no-store").is_none() {
        return NGX_ERROR as ngx_int_t;
    }
    let Some(buf) = copy_body(r, body.as_bytes()) else {
        return NGX_ERROR as ngx_int_t;
    };
    // SAFETY: live request, headers not sent yet.
    let rc = unsafe { ngx_http_send_header(r) };
    if rc == NGX_ERROR as ngx_int_t || rc > NGX_OK as ngx_int_t || r.header_only() != 0 {
        return rc;
    }
    // SAFETY: `copy_body` made the buffer in this request's pool (never empty: every body
    // here has text).
    let b = unsafe { &mut *buf };
    b.set_last_buf(u32::from(std::ptr::eq(r, r.main)));
    b.set_last_in_chain(1);
    let mut out = ngx_chain_t {
        buf,
        next: std::ptr::null_mut(),
    };
    // SAFETY: live request; the chain and its buffer outlive the call.
    unsafe { ngx_http_output_filter(r, &mut out) }
}
