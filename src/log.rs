//! Error-log helpers: every message goes to nginx's error log, never to stdout.

use ngx::ffi::{ngx_http_request_t, ngx_uint_t};
use ngx::ngx_log_error;

/// Logs through the cycle's log (no request at hand).
pub fn log_cycle(level: u32, msg: &str) {
    let log = ngx::log::ngx_cycle_log().as_ptr();
    ngx_log_error!(level as ngx_uint_t, log, "{}", msg);
}

/// Logs through a request's connection log, which adds client, server and request.
pub fn log_request(r: *mut ngx_http_request_t, level: u32, msg: &str) {
    // SAFETY: `r` is a live request; its connection and log outlive it.
    let log = unsafe { (*(*r).connection).log };
    ngx_log_error!(level as ngx_uint_t, log, "{}", msg);
}
