//! `$dynpage_variant`, `$dynpage_version`, `$dynpage_source`, `$dynpage_cache_status`: what a
//! request was served, for
//! `log_format`, `add_header` and the like. Not found until the page has been chosen.

use ngx::ffi::{
    ngx_conf_t, ngx_http_add_variable, ngx_http_request_t, ngx_http_variable_value_t, ngx_int_t,
    ngx_str_t, NGX_HTTP_VAR_NOCACHEABLE, NGX_OK,
};
use ngx::ngx_string;

use crate::request_ctx;
use crate::served::ServedValue;

/// `preconfiguration`: registers the variables.
pub unsafe extern "C" fn add_variables(cf: *mut ngx_conf_t) -> ngx_int_t {
    crate::ffi_guard::install_hook();
    crate::ffi_guard::catch(
        "preconfiguration",
        ngx::ffi::NGX_ERROR as ngx_int_t,
        // SAFETY: nginx passes the live configuration being read.
        || unsafe { add_variables_to(cf) },
    )
}

/// Registers the `$dynpage_*` variables.
///
/// # Safety
/// `cf` is the live configuration nginx passes to preconfiguration.
unsafe fn add_variables_to(cf: *mut ngx_conf_t) -> ngx_int_t {
    let names: [(ngx_str_t, ServedValue); 4] = [
        (ngx_string!("dynpage_variant"), ServedValue::Variant),
        (ngx_string!("dynpage_version"), ServedValue::Version),
        (ngx_string!("dynpage_source"), ServedValue::Source),
        (
            ngx_string!("dynpage_cache_status"),
            ServedValue::CacheStatus,
        ),
    ];
    for (mut name, which) in names {
        // SAFETY: `cf` is the live conf nginx passes to preconfiguration; the name is static.
        let v = unsafe { ngx_http_add_variable(cf, &mut name, NGX_HTTP_VAR_NOCACHEABLE as _) };
        if v.is_null() {
            return ngx::ffi::NGX_ERROR as ngx_int_t;
        }
        // SAFETY: nginx returned a live variable record owned by the configuration.
        unsafe {
            (*v).get_handler = Some(get_variable);
            (*v).data = which as usize;
        }
    }
    NGX_OK as ngx_int_t
}

unsafe extern "C" fn get_variable(
    r: *mut ngx_http_request_t,
    v: *mut ngx_http_variable_value_t,
    which: usize,
) -> ngx_int_t {
    let on_panic = NGX_OK as ngx_int_t;
    crate::ffi_guard::catch("a $dynpage_* variable", on_panic, || {
        // SAFETY: nginx passes a live request and the value slot to fill, referenced by nothing
        // else during the call.
        let (r, v) = unsafe { (&*r, &mut *v) };
        fill_variable(r, v, which);
        NGX_OK as ngx_int_t
    })
}

/// Fills `v` with what was served (not found before a page is served).
fn fill_variable(r: &ngx_http_request_t, v: &mut ngx_http_variable_value_t, which: usize) {
    v.set_not_found(1);
    let which = match which {
        w if w == ServedValue::Variant as usize => ServedValue::Variant,
        w if w == ServedValue::Version as usize => ServedValue::Version,
        w if w == ServedValue::CacheStatus as usize => ServedValue::CacheStatus,
        _ => ServedValue::Source,
    };
    let Some(bytes) = request_ctx::served_value(r, which) else {
        return;
    };
    v.set_len(bytes.len() as _);
    v.set_valid(1);
    v.set_no_cacheable(1);
    v.set_not_found(0);
    v.set_escape(0);
    // The bytes live in the request's context, in its pool.
    v.data = bytes.as_ptr().cast_mut();
}
