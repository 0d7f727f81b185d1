//! `dynpage_gzip` and `dynpage_brotli` at the edge: which codings this request may get a kept
//! output in, and the `Vary: Accept-Encoding` of a location that serves them.

use std::ptr;

use ngx::ffi::ngx_http_request_t;
#[cfg(ngx_http_gzip)]
use ngx::ffi::{ngx_int_t, NGX_OK};
#[cfg(ngx_http_gzip)]
use ngx::http::{HttpModuleLocationConf, NgxHttpCoreModule};

use dynpage_core::accept_encoding::accepted;
use dynpage_core::coding::{Coding, Encoding};

use crate::conf::LocConf;

#[cfg(ngx_http_gzip)]
extern "C" {
    /// nginx's own test, the one `gzip_static` and the gzip filter use (ngx_http_core_module.c):
    /// a main request whose Accept-Encoding names gzip, `gzip_http_version`, `gzip_proxied`,
    /// `gzip_disable`. It notes its answer in the request (`gzip_tested`, `gzip_ok`), so the
    /// gzip filter then goes by it too.
    fn ngx_http_gzip_ok(r: *mut ngx_http_request_t) -> ngx_int_t;
}

/// The codings a request may get, preferred first (at most two), on the stack.
pub struct Encodings {
    list: [Encoding; 2],
    len: usize,
}

impl Encodings {
    /// As `dynpage_core::serve::Request::encodings` takes them.
    pub fn as_slice(&self) -> &[Encoding] {
        &self.list[..self.len]
    }

    fn push(&mut self, e: Encoding) {
        if let Some(slot) = self.list.get_mut(self.len) {
            *slot = e;
            self.len += 1;
        }
    }
}

/// The codings `r` may get a kept output in, preferred first: those its location serves
/// (`dynpage_brotli`, `dynpage_gzip`) that its `Accept-Encoding` takes, as
/// `dynpage_core::accept_encoding` reads it (the higher weight first, brotli on a tie), for a
/// main request only (an SSI include or a Lua capture goes into another response). gzip also
/// needs nginx's own test to agree, as for `gzip_static`.
///
/// # Safety
/// `r` is a live request (its header elements are in its pool).
pub unsafe fn for_request(r: &mut ngx_http_request_t, lcf: &LocConf) -> Encodings {
    let mut out = Encodings {
        list: [Encoding {
            coding: Coding::Gzip,
            level: 0,
        }; 2],
        len: 0,
    };
    if !lcf.compresses() || !ptr::eq(r.main, &*r) {
        return out;
    }
    // SAFETY: per the contract, the header element, if any, lives in the request pool.
    let Some(header) = (unsafe { r.headers_in.accept_encoding.as_ref() }) else {
        return out;
    };
    let accepted = accepted(header.value.as_bytes());
    let gzip = lcf.gzip() && accepted.gzip > 0 && nginx_gzip_ok(r);
    for coding in accepted.preference(gzip, lcf.brotli()).iter() {
        let level = match coding {
            Coding::Gzip => lcf.gzip_comp_level(),
            Coding::Br => lcf.brotli_comp_level(),
        };
        out.push(Encoding { coding, level });
    }
    out
}

/// Whether nginx's own test gives `r` gzip (`gzip_http_version`, `gzip_proxied`,
/// `gzip_disable`); true on an nginx built without it.
fn nginx_gzip_ok(r: &mut ngx_http_request_t) -> bool {
    #[cfg(ngx_http_gzip)]
    {
        // SAFETY: a live main request, before its headers are sent (what the call expects, as
        // gzip_static makes it).
        unsafe { ngx_http_gzip_ok(r) == NGX_OK as ngx_int_t }
    }
    #[cfg(not(ngx_http_gzip))]
    {
        let _ = r;
        true
    }
}

/// How a response of a `dynpage_gzip` (`dynpage_brotli`) location says it varies by
/// `Accept-Encoding`.
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
