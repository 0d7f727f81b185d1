//! A request's log lines that name its page: the outcome lines, and one debug line per
//! transition of the request path (formatted only when debug is on).

use ngx::ffi::{ngx_http_request_t, ngx_log_t, NGX_LOG_DEBUG};

use dynpage_core::resolve::Page;
use dynpage_core::serve::{describe_inputs, Transition};

use crate::log::log_request;

/// Logs at `level` through the request's log, naming the page.
pub fn log_page(r: &mut ngx_http_request_t, level: u32, key: &str, what: &str) {
    log_request(
        r,
        level,
        &format!("dynpage: page \"{}\"{what}", key.escape_debug()),
    );
}

/// One debug line per transition the decisions take, formatted only when debug is on.
pub fn trace_to(log: *mut ngx_log_t, key: &str) -> impl FnMut(Transition, Option<&Page>) + '_ {
    // SAFETY: a request's connection log outlives the request.
    let on = unsafe { log.as_ref() }.is_some_and(|l| l.log_level >= NGX_LOG_DEBUG as usize);
    move |t, page| {
        if !on {
            return;
        }
        let inputs = page.map(|p| describe_inputs(p.page_field(), p.template_field.as_ref()));
        let key = key.escape_debug();
        match (t, inputs) {
            (Transition::Rendered { .. }, Some(inputs)) => {
                let how = t.to_string();
                let how = how.strip_prefix("rendered ").unwrap_or(&how);
                ngx::ngx_log_error!(
                    NGX_LOG_DEBUG as usize,
                    log,
                    "dynpage: rendered \"{key}\" {inputs} {how}"
                );
            }
            (_, Some(inputs)) => {
                ngx::ngx_log_error!(
                    NGX_LOG_DEBUG as usize,
                    log,
                    "dynpage: decided for \"{key}\" ({inputs}): {t}"
                );
            }
            (_, None) => {
                ngx::ngx_log_error!(
                    NGX_LOG_DEBUG as usize,
                    log,
                    "dynpage: decided for \"{key}\": {t}"
                );
            }
        }
    }
}
