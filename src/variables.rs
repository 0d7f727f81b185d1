//! `$dynpage_variant`, `$dynpage_version`, `$dynpage_source`: what a request was served, for
//! `log_format`, `add_header` and the like. Not found until the page has been chosen.

use ngx::ffi::{
    ngx_conf_t, ngx_http_add_variable, ngx_http_request_t, ngx_http_variable_value_t, ngx_int_t,
    ngx_str_t, NGX_HTTP_VAR_NOCACHEABLE, NGX_OK,
};
use ngx::ngx_string;

use dynpage_core::version::{Field, Variant};

use crate::response::format_into;

/// Where a response's inputs came from (`$dynpage_source`, `X-Dynpage: source=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Source {
    L1 = 1,
    Redis,
    Cms,
    Stale,
    /// An earlier version, because the one in force failed to render or its guard.
    Fallback,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::L1 => "l1",
            Source::Redis => "redis",
            Source::Cms => "cms",
            Source::Stale => "stale",
            Source::Fallback => "fallback",
        }
    }
}

/// What a request was served, kept in its context. Plain bytes, so the all-zero value that
/// `ngx_pcalloc` gives is valid and means "nothing served yet".
#[derive(Clone, Copy)]
pub struct Served {
    variant: [u8; 12],
    variant_len: u8,
    source: [u8; 12],
    source_len: u8,
    version: [u8; 24],
    version_len: u8,
}

fn fill(buf: &mut [u8], args: std::fmt::Arguments<'_>) -> u8 {
    format_into(buf, args).len() as u8
}

impl Served {
    pub fn set(&mut self, variant: Variant, field: Field, source: Source) {
        self.variant_len = fill(&mut self.variant, format_args!("{}", variant.as_str()));
        self.source_len = fill(&mut self.source, format_args!("{}", source.as_str()));
        self.version_len = fill(&mut self.version, format_args!("{field}"));
    }

    pub fn is_set(&self) -> bool {
        self.variant_len > 0
    }

    fn value(&self, which: usize) -> &[u8] {
        match which {
            VARIANT => &self.variant[..usize::from(self.variant_len)],
            VERSION => &self.version[..usize::from(self.version_len)],
            _ => &self.source[..usize::from(self.source_len)],
        }
    }
}

const VARIANT: usize = 0;
const VERSION: usize = 1;
const SOURCE: usize = 2;

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
    let names: [(ngx_str_t, usize); 3] = [
        (ngx_string!("dynpage_variant"), VARIANT),
        (ngx_string!("dynpage_version"), VERSION),
        (ngx_string!("dynpage_source"), SOURCE),
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
            (*v).data = which;
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
        // SAFETY: nginx passes a live request and the value slot to fill.
        unsafe { fill_variable(r, &mut *v, which) }
    })
}

/// Fills `v` with what was served (not found before a page is served).
///
/// # Safety
/// `r` is a live request.
unsafe fn fill_variable(
    r: *mut ngx_http_request_t,
    v: &mut ngx_http_variable_value_t,
    which: usize,
) -> ngx_int_t {
    v.set_not_found(1);
    // SAFETY: live request.
    match unsafe { crate::handler::served(r) } {
        Some(served) if served.is_set() => {
            let bytes = served.value(which);
            v.set_len(bytes.len() as _);
            v.set_valid(1);
            v.set_no_cacheable(1);
            v.set_not_found(0);
            v.set_escape(0);
            // The bytes live in the request's context, in its pool.
            v.data = bytes.as_ptr().cast_mut();
        }
        _ => v.set_not_found(1),
    }
    NGX_OK as ngx_int_t
}
