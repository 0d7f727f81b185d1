//! Response headers and body: Content-Type, ETag, Last-Modified, Cache-Control, X-Dynpage.

use std::io::Write;

use ngx::ffi::{
    ngx_buf_t, ngx_chain_t, ngx_create_temp_buf, ngx_http_output_filter, ngx_http_request_t,
    ngx_http_send_header, ngx_http_send_special, ngx_int_t, ngx_list_push, ngx_pcalloc,
    ngx_pnalloc, ngx_str_t, ngx_table_elt_t, ngx_uint_t, NGX_ERROR, NGX_HTTP_LAST, NGX_OK,
};

use dynpage_core::etag::EtagBuf;
use dynpage_core::resolve::Page;
use dynpage_core::version::{Field, Variant};

use crate::conf::LocConf;
use crate::variables::Source;

/// What goes into the headers.
pub struct Response {
    pub not_modified: bool,
    pub etag: EtagBuf,
    pub last_modified_secs: Option<i64>,
    pub variant: Variant,
    pub field: Field,
    pub source: Source,
}

impl Response {
    fn new(page: &Page, etag: EtagBuf, source: Source, not_modified: bool) -> Response {
        Response {
            not_modified,
            etag,
            last_modified_secs: page.last_modified_ms.map(|ms| (ms / 1000) as i64),
            variant: page.variant,
            field: page.field,
            source,
        }
    }

    pub fn ok(page: &Page, etag: EtagBuf, source: Source) -> Response {
        Response::new(page, etag, source, false)
    }

    pub fn not_modified(page: &Page, etag: EtagBuf, source: Source) -> Response {
        Response::new(page, etag, source, true)
    }
}

/// Copies the rendered body into a buffer from the request pool.
pub fn copy_body(r: *mut ngx_http_request_t, body: &[u8]) -> Option<*mut ngx_buf_t> {
    // SAFETY: live request; the buffer is allocated with room for `body` and filled once.
    unsafe {
        let pool = (*r).pool;
        if body.is_empty() {
            let b = ngx_pcalloc(pool, std::mem::size_of::<ngx_buf_t>()).cast::<ngx_buf_t>();
            return (!b.is_null()).then_some(b);
        }
        let b = ngx_create_temp_buf(pool, body.len());
        if b.is_null() {
            return None;
        }
        std::ptr::copy_nonoverlapping(body.as_ptr(), (*b).last, body.len());
        (*b).last = (*b).last.add(body.len());
        Some(b)
    }
}

/// Adds a response header whose value is copied into the request pool.
///
/// # Safety
/// `r` is a live request whose headers have not been sent.
unsafe fn push_header(
    r: *mut ngx_http_request_t,
    key: &'static str,
    value: &[u8],
) -> Option<*mut ngx_table_elt_t> {
    // SAFETY: per the contract; the list and pool belong to the request.
    unsafe {
        let h = ngx_list_push(&mut (*r).headers_out.headers).cast::<ngx_table_elt_t>();
        if h.is_null() {
            return None;
        }
        let data = ngx_pnalloc((*r).pool, value.len()).cast::<u8>();
        if data.is_null() {
            return None;
        }
        std::ptr::copy_nonoverlapping(value.as_ptr(), data, value.len());
        (*h).hash = 1;
        (*h).key = ngx_str_t {
            len: key.len(),
            data: key.as_ptr().cast_mut(),
        };
        (*h).value = ngx_str_t {
            len: value.len(),
            data,
        };
        (*h).lowcase_key = std::ptr::null_mut();
        #[cfg(ngx_headers_lists)]
        {
            (*h).next = std::ptr::null_mut();
        }
        Some(h)
    }
}

/// Makes `cc` the request's `headers_out.cache_control` (a list from nginx 1.23 on).
///
/// # Safety
/// `r` is a live request whose headers have not been sent; `cc` is one of its headers.
#[cfg(ngx_headers_lists)]
unsafe fn register_cache_control(
    r: *mut ngx_http_request_t,
    cc: *mut ngx_table_elt_t,
) -> Option<()> {
    // SAFETY: per the contract.
    unsafe {
        (*r).headers_out.cache_control = cc;
    }
    Some(())
}

/// Makes `cc` the request's `headers_out.cache_control` (an array before nginx 1.23).
///
/// # Safety
/// `r` is a live request whose headers have not been sent; `cc` is one of its headers.
#[cfg(not(ngx_headers_lists))]
unsafe fn register_cache_control(
    r: *mut ngx_http_request_t,
    cc: *mut ngx_table_elt_t,
) -> Option<()> {
    // SAFETY: per the contract; the array is set up as ngx_array_init would (one slot from the
    // request pool) when no one did before, and ngx_array_push grows it in the same pool.
    unsafe {
        let arr = &mut (*r).headers_out.cache_control;
        if arr.elts.is_null() {
            let size = std::mem::size_of::<*mut ngx_table_elt_t>();
            let elts = ngx::ffi::ngx_palloc((*r).pool, size);
            if elts.is_null() {
                return None;
            }
            arr.elts = elts;
            arr.nelts = 0;
            arr.size = size;
            arr.nalloc = 1;
            arr.pool = (*r).pool;
        }
        let slot = ngx::ffi::ngx_array_push(arr).cast::<*mut ngx_table_elt_t>();
        if slot.is_null() {
            return None;
        }
        *slot = cc;
    }
    Some(())
}

/// An ngx_str_t over bytes that outlive the request (the configuration's).
fn str_of(bytes: &[u8]) -> ngx_str_t {
    ngx_str_t {
        len: bytes.len(),
        data: bytes.as_ptr().cast_mut(),
    }
}

/// Formats into a stack buffer (truncating if it is too small): no allocation per request.
pub fn format_into<'a>(buf: &'a mut [u8], args: std::fmt::Arguments<'_>) -> &'a [u8] {
    let cap = buf.len();
    let mut w = &mut buf[..];
    let _ = w.write_fmt(args);
    let n = cap - w.len();
    &buf[..n]
}

/// Sends the headers and (unless HEAD or 304) the body.
pub fn send(
    r: *mut ngx_http_request_t,
    lcf: &LocConf,
    resp: &Response,
    body: *mut ngx_buf_t,
) -> ngx_int_t {
    let mut small = [0u8; 160];
    // SAFETY: live request, headers not sent yet; `body` is null only for 304.
    unsafe {
        let ho = &mut (*r).headers_out;
        // As nginx's own handlers and its proxy set it: the whole value, the length of the MIME
        // type alone (what `*_types` filters match) and the charset (what `charset` recodes from).
        let content_type = lcf.content_type();
        ho.content_type = str_of(content_type.value().as_bytes());
        ho.content_type_len = content_type.mime_len();
        ho.content_type_lowcase = std::ptr::null_mut();
        if let Some(charset) = content_type.charset() {
            ho.charset = str_of(charset.as_bytes());
        }
        let Some(etag) = push_header(r, "ETag", &resp.etag) else {
            return NGX_ERROR as ngx_int_t;
        };
        (*r).headers_out.etag = etag;
        if let Some(secs) = resp.last_modified_secs {
            (*r).headers_out.last_modified_time = secs;
        }
        // A fallback stands in until the real version renders again: keep it out of caches.
        let cache_control: &[u8] =
            if resp.variant == Variant::Production && resp.source != Source::Fallback {
                format_into(
                    &mut small,
                    format_args!("public, max-age={}", lcf.max_age_secs()),
                )
            } else {
                b"private, no-store"
            };
        let Some(cc) = push_header(r, "Cache-Control", cache_control) else {
            return NGX_ERROR as ngx_int_t;
        };
        // A public Cache-Control is registered as nginx's own, so `expires` replaces it as it
        // does a proxied one; a private one is not, so `expires` can never make a gray,
        // predeploy or fallback response cacheable (its header goes beside, and no-store wins).
        if resp.variant == Variant::Production
            && resp.source != Source::Fallback
            && register_cache_control(r, cc).is_none()
        {
            return NGX_ERROR as ngx_int_t;
        }
        if lcf.debug_header() {
            let value = format_into(
                &mut small,
                format_args!(
                    "variant={}; version={}; source={}",
                    resp.variant.as_str(),
                    resp.field,
                    resp.source.as_str()
                ),
            );
            if push_header(r, "X-Dynpage", value).is_none() {
                return NGX_ERROR as ngx_int_t;
            }
        }
        if resp.not_modified {
            // As nginx's not_modified filter answers: no Content-Type, no length.
            (*r).headers_out.content_type.len = 0;
            (*r).headers_out.status = 304;
            (*r).headers_out.content_length_n = -1;
            (*r).set_header_only(1);
            return ngx_http_send_header(r);
        }
        (*r).headers_out.status = 200;
        // Addresses, not `offset_from`: an empty body's buffer has null pointers.
        let len = ((*body).last as usize).saturating_sub((*body).pos as usize);
        (*r).headers_out.content_length_n = len as _;
        // Byte ranges are served by nginx's range filter, as for a static file.
        (*r).set_allow_ranges(1);
        let rc = ngx_http_send_header(r);
        if rc == NGX_ERROR as ngx_int_t || rc > NGX_OK as ngx_int_t || (*r).header_only() != 0 {
            return rc;
        }
        if len == 0 {
            // An empty buffer is only allowed as a special one: last_buf for the main request,
            // sync for a subrequest (an SSI include or a Lua capture of an empty page).
            return ngx_http_send_special(r, NGX_HTTP_LAST as ngx_uint_t);
        }
        (*body).set_last_buf(u32::from(r == (*r).main));
        (*body).set_last_in_chain(1);
        let mut out = ngx_chain_t {
            buf: body,
            next: std::ptr::null_mut(),
        };
        ngx_http_output_filter(r, &mut out)
    }
}
