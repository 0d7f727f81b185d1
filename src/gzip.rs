//! `dynpage_gzip` at the edge: whether this request gets a kept output's gzip bytes, and the
//! `Vary: Accept-Encoding` of a location that serves them.

use std::ptr;

use ngx::ffi::ngx_http_request_t;
#[cfg(ngx_http_gzip)]
use ngx::ffi::{ngx_int_t, NGX_OK};
#[cfg(ngx_http_gzip)]
use ngx::http::{HttpModuleLocationConf, NgxHttpCoreModule};

use dynpage_core::accept_encoding::accepts_gzip;

use crate::conf::LocConf;

#[cfg(ngx_http_gzip)]
extern "C" {
    /// nginx's own test, the one `gzip_static` and the gzip filter use (ngx_http_core_module.c):
    /// a main request whose Accept-Encoding names gzip, `gzip_http_version`, `gzip_proxied`,
    /// `gzip_disable`. It notes its answer in the request (`gzip_tested`, `gzip_ok`), so the
    /// gzip filter then goes by it too.
    fn ngx_http_gzip_ok(r: *mut ngx_http_request_t) -> ngx_int_t;
}

/// `Some(level)` when `r` is to get a kept output's gzip bytes: the location says
/// `dynpage_gzip on`, `r` is a main request (an SSI include or a Lua capture is part of another
/// response) whose `Accept-Encoding` takes gzip as `dynpage_core::accept_encoding` reads it, and
/// nginx's own test agrees, as for `gzip_static`.
pub fn level_for(r: &mut ngx_http_request_t, lcf: &LocConf) -> Option<u32> {
    if !lcf.gzip() || !ptr::eq(r.main, &*r) {
        return None;
    }
    // SAFETY: the header element, if any, lives in the request pool.
    let header = unsafe { r.headers_in.accept_encoding.as_ref() }?;
    if !accepts_gzip(header.value.as_bytes()) {
        return None;
    }
    #[cfg(ngx_http_gzip)]
    {
        // SAFETY: a live main request, before its headers are sent (what the call expects, as
        // gzip_static makes it).
        if unsafe { ngx_http_gzip_ok(r) } != NGX_OK as ngx_int_t {
            return None;
        }
    }
    Some(lcf.gzip_comp_level())
}

/// How a response of a `dynpage_gzip` location says it varies by `Accept-Encoding`.
pub enum Vary {
    /// nginx's header filter writes it (`gzip_vary on`: one header, whoever asks for it).
    #[cfg_attr(not(ngx_http_gzip), allow(dead_code))]
    Nginx,
    /// dynpage writes it.
    Own,
}

/// Whether `Vary: Accept-Encoding` goes out through nginx (`gzip_vary on` in the location: the
/// gzip filter may ask for it too, and nginx writes it once) or as a header of dynpage's own.
pub fn vary(r: &mut ngx_http_request_t) -> Vary {
    #[cfg(ngx_http_gzip)]
    {
        let gzip_vary = NgxHttpCoreModule::location_conf(&*r).is_some_and(|c| c.gzip_vary != 0);
        if gzip_vary {
            r.set_gzip_vary(1);
            return Vary::Nginx;
        }
    }
    let _ = r;
    Vary::Own
}
