//! Response headers and body: Content-Type, ETag, Last-Modified, Cache-Control, X-Dynpage;
//! with `dynpage_gzip` and `dynpage_brotli`, Content-Encoding and Vary.

use std::ffi::c_void;
use std::sync::Arc;

use ngx::ffi::{
    ngx_buf_t, ngx_chain_t, ngx_create_temp_buf, ngx_http_output_filter, ngx_http_request_t,
    ngx_http_send_header, ngx_http_send_special, ngx_int_t, ngx_list_push, ngx_pcalloc,
    ngx_pnalloc, ngx_pool_cleanup_add, ngx_str_t, ngx_table_elt_t, ngx_uint_t, NGX_ERROR,
    NGX_HTTP_LAST, NGX_OK,
};

use dynpage_core::coding::Coding;
use dynpage_core::etag::coded_etag;
use dynpage_core::output_cache::Output;
use dynpage_core::serve::{Reply, Source};
use dynpage_core::version::Variant;

use crate::conf::LocConf;
use crate::stack_fmt::format_into;

/// Copies the rendered body into a buffer from the request pool.
pub fn copy_body(r: &mut ngx_http_request_t, body: &[u8]) -> Option<*mut ngx_buf_t> {
    if body.is_empty() {
        // SAFETY: the pool belongs to the live request; a zeroed buffer is an empty one.
        let b = unsafe { ngx_pcalloc(r.pool, std::mem::size_of::<ngx_buf_t>()) };
        return (!b.is_null()).then_some(b.cast::<ngx_buf_t>());
    }
    // SAFETY: the pool belongs to the live request.
    let b = unsafe { ngx_create_temp_buf(r.pool, body.len()) };
    // SAFETY: nginx returned null or a buffer of its own with room for `body.len()` bytes.
    let buf = unsafe { b.as_mut() }?;
    // SAFETY: `last` points at `body.len()` writable bytes of the new buffer, apart from `body`.
    unsafe { std::ptr::copy_nonoverlapping(body.as_ptr(), buf.last, body.len()) };
    // SAFETY: stays within the buffer just filled.
    buf.last = unsafe { buf.last.add(body.len()) };
    Some(b)
}

/// A buffer over a kept output's bytes (in `coding`; `None` if it has none in it), without
/// copying them: the request holds the output (a pool cleanup lets it go when the request is
/// freed).
pub fn kept_body(
    r: &mut ngx_http_request_t,
    output: Arc<Output>,
    coding: Option<Coding>,
) -> Option<*mut ngx_buf_t> {
    let bytes = match coding {
        Some(c) => output.encoded(c)?.as_ptr_range(),
        None => output.body.as_ptr_range(),
    };
    // SAFETY: the pool belongs to the live request; nginx returns null or a new cleanup.
    let cln = unsafe { ngx_pool_cleanup_add(r.pool, 0) };
    // SAFETY: a new cleanup record of the pool, ours to fill.
    let cln = unsafe { cln.as_mut() }?;
    cln.handler = Some(release_output);
    cln.data = Arc::into_raw(output).cast_mut().cast();
    // SAFETY: the pool belongs to the live request; a zeroed buffer is an empty one.
    let b = unsafe { ngx_pcalloc(r.pool, std::mem::size_of::<ngx_buf_t>()) }.cast::<ngx_buf_t>();
    // SAFETY: nginx returned null or a zeroed buffer of the request pool.
    let buf = unsafe { b.as_mut() }?;
    if bytes.start != bytes.end {
        // Read-only memory nginx sends from (and never writes to), alive until the pool's
        // cleanup runs, after the response is sent (compressed bytes, once set, are never
        // changed or dropped before the output).
        buf.pos = bytes.start.cast_mut();
        buf.last = bytes.end.cast_mut();
        buf.start = buf.pos;
        buf.end = buf.last;
        buf.set_memory(1);
    }
    Some(b)
}

/// The pool cleanup of `kept_body`: lets the request's reference to the output go.
unsafe extern "C" fn release_output(data: *mut c_void) {
    crate::ffi_guard::catch("releasing a kept output", (), || {
        // SAFETY: `data` is the reference `kept_body` leaked with `Arc::into_raw`, released
        // once (nginx runs each cleanup once).
        drop(unsafe { Arc::from_raw(data.cast_const().cast::<Output>()) });
    });
}

/// Adds a response header whose value is copied into the request pool.
pub fn push_header(
    r: &mut ngx_http_request_t,
    key: &'static str,
    value: &[u8],
) -> Option<*mut ngx_table_elt_t> {
    // SAFETY: the pool belongs to the live request.
    let data = unsafe { ngx_pnalloc(r.pool, value.len()) }.cast::<u8>();
    if data.is_null() {
        return None;
    }
    // SAFETY: `data` has room for `value.len()` bytes and is apart from `value`.
    unsafe { std::ptr::copy_nonoverlapping(value.as_ptr(), data, value.len()) };
    let value = ngx_str_t {
        len: value.len(),
        data,
    };
    push_header_str(r, key, value)
}

/// Adds a response header whose value outlives the request (a constant: nothing copied).
fn push_static_header(
    r: &mut ngx_http_request_t,
    key: &'static str,
    value: &'static [u8],
) -> Option<*mut ngx_table_elt_t> {
    push_header_str(r, key, str_of(value))
}

/// Adds a response header with `value` as it is (in the request pool, or static).
fn push_header_str(
    r: &mut ngx_http_request_t,
    key: &'static str,
    value: ngx_str_t,
) -> Option<*mut ngx_table_elt_t> {
    // SAFETY: the headers list belongs to the live request; nginx returns null or a new slot.
    let h = unsafe { ngx_list_push(&mut r.headers_out.headers) }.cast::<ngx_table_elt_t>();
    // SAFETY: a new slot of the list, ours to fill.
    let elt = unsafe { h.as_mut() }?;
    elt.hash = 1;
    elt.key = ngx_str_t {
        len: key.len(),
        data: key.as_ptr().cast_mut(),
    };
    elt.value = value;
    elt.lowcase_key = std::ptr::null_mut();
    #[cfg(ngx_headers_lists)]
    {
        elt.next = std::ptr::null_mut();
    }
    Some(h)
}

/// Makes `cc`, one of the request's headers, its `headers_out.cache_control` (a list from
/// nginx 1.23 on).
#[cfg(ngx_headers_lists)]
fn register_cache_control(r: &mut ngx_http_request_t, cc: *mut ngx_table_elt_t) -> Option<()> {
    r.headers_out.cache_control = cc;
    Some(())
}

/// Makes `cc`, one of the request's headers, its `headers_out.cache_control` (an array before
/// nginx 1.23).
#[cfg(not(ngx_headers_lists))]
fn register_cache_control(r: &mut ngx_http_request_t, cc: *mut ngx_table_elt_t) -> Option<()> {
    let pool = r.pool;
    let arr = &mut r.headers_out.cache_control;
    if arr.elts.is_null() {
        // Set up as ngx_array_init would: one slot from the request pool.
        let size = std::mem::size_of::<*mut ngx_table_elt_t>();
        // SAFETY: the pool belongs to the live request.
        let elts = unsafe { ngx::ffi::ngx_palloc(pool, size) };
        if elts.is_null() {
            return None;
        }
        arr.elts = elts;
        arr.nelts = 0;
        arr.size = size;
        arr.nalloc = 1;
        arr.pool = pool;
    }
    // SAFETY: the array is set up (above, or by nginx) in the request pool.
    let slot = unsafe { ngx::ffi::ngx_array_push(arr) }.cast::<*mut ngx_table_elt_t>();
    // SAFETY: nginx returned null or a new slot of the array.
    *unsafe { slot.as_mut() }? = cc;
    Some(())
}

/// An ngx_str_t over bytes that outlive the request (the configuration's).
fn str_of(bytes: &[u8]) -> ngx_str_t {
    ngx_str_t {
        len: bytes.len(),
        data: bytes.as_ptr().cast_mut(),
    }
}

/// Sends the headers and (unless HEAD or 304) the body; `body` is `None` only for a 304.
pub fn send(
    r: &mut ngx_http_request_t,
    lcf: &LocConf,
    reply: &Reply,
    body: Option<*mut ngx_buf_t>,
) -> ngx_int_t {
    let mut small = [0u8; 160];
    let public = reply.variant == Variant::Production && reply.source != Source::Fallback;
    let ho = &mut r.headers_out;
    // As nginx's own handlers and its proxy set it: the whole value, the length of the MIME
    // type alone (what `*_types` filters match) and the charset (what `charset` recodes from).
    let content_type = lcf.content_type();
    ho.content_type = str_of(content_type.value().as_bytes());
    ho.content_type_len = content_type.mime_len();
    ho.content_type_lowcase = std::ptr::null_mut();
    if let Some(charset) = content_type.charset() {
        ho.charset = str_of(charset.as_bytes());
    }
    let coded_tag;
    let etag_value: &[u8] = match reply.coding {
        Some(c) => {
            coded_tag = coded_etag(&reply.etag, c);
            &coded_tag
        }
        None => &reply.etag,
    };
    let Some(etag) = push_header(r, "ETag", etag_value) else {
        return NGX_ERROR as ngx_int_t;
    };
    r.headers_out.etag = etag;
    // Every response of a dynpage_gzip (dynpage_brotli) location, compressed or identity, 200
    // or 304, varies by Accept-Encoding, so that a shared cache never gives one client's bytes
    // to another.
    if lcf.compresses() {
        if let crate::encoding::Vary::Own = crate::encoding::vary(r) {
            if push_static_header(r, "Vary", b"Accept-Encoding").is_none() {
                return NGX_ERROR as ngx_int_t;
            }
        }
    }
    // Compressed bytes: nginx's gzip filter leaves a response with a Content-Encoding alone.
    if let (Some(coding), false) = (reply.coding, reply.not_modified) {
        let token = coding.token().as_bytes();
        let Some(ce) = push_static_header(r, "Content-Encoding", token) else {
            return NGX_ERROR as ngx_int_t;
        };
        r.headers_out.content_encoding = ce;
    }
    if let Some(secs) = reply.last_modified_secs {
        r.headers_out.last_modified_time = secs;
    }
    // A fallback stands in until the real version renders again: keep it out of caches.
    let cache_control: &[u8] = if public {
        lcf.public_cache_control.as_bytes()
    } else {
        b"private, no-store"
    };
    let Some(cc) = push_header(r, "Cache-Control", cache_control) else {
        return NGX_ERROR as ngx_int_t;
    };
    // A public Cache-Control is registered as nginx's own, so `expires` replaces it as it does a
    // proxied one; a private one is not, so `expires` can never make a gray, predeploy or
    // fallback response cacheable (its header goes beside, and no-store wins).
    if public && register_cache_control(r, cc).is_none() {
        return NGX_ERROR as ngx_int_t;
    }
    if lcf.debug_header() {
        let value = format_into(
            &mut small,
            format_args!(
                "variant={}; version={}; source={}",
                reply.variant.as_str(),
                reply.field,
                reply.source.as_str()
            ),
        );
        if push_header(r, "X-Dynpage", value).is_none() {
            return NGX_ERROR as ngx_int_t;
        }
    }
    let body = match body {
        Some(b) if !reply.not_modified => b,
        None if !reply.not_modified => return HTTP_INTERNAL_SERVER_ERROR,
        _ => {
            // As nginx's not_modified filter answers: no Content-Type, no length.
            r.headers_out.content_type.len = 0;
            r.headers_out.status = 304;
            r.headers_out.content_length_n = -1;
            r.set_header_only(1);
            // SAFETY: live request, headers not sent yet.
            return unsafe { ngx_http_send_header(r) };
        }
    };
    // SAFETY: `body` is a buffer `copy_body` made in this request's pool.
    let buf = unsafe { &mut *body };
    r.headers_out.status = 200;
    // Addresses, not `offset_from`: an empty body's buffer has null pointers.
    let len = (buf.last as usize).saturating_sub(buf.pos as usize);
    r.headers_out.content_length_n = len as _;
    // Byte ranges are served by nginx's range filter, as for a static file.
    r.set_allow_ranges(1);
    // SAFETY: live request, headers not sent yet.
    let rc = unsafe { ngx_http_send_header(r) };
    if rc == NGX_ERROR as ngx_int_t || rc > NGX_OK as ngx_int_t || r.header_only() != 0 {
        return rc;
    }
    if len == 0 {
        // An empty buffer is only allowed as a special one: last_buf for the main request,
        // sync for a subrequest (an SSI include or a Lua capture of an empty page).
        // SAFETY: live request whose headers were sent.
        return unsafe { ngx_http_send_special(r, NGX_HTTP_LAST as ngx_uint_t) };
    }
    buf.set_last_buf(u32::from(std::ptr::eq(r, r.main)));
    buf.set_last_in_chain(1);
    let mut out = ngx_chain_t {
        buf: body,
        next: std::ptr::null_mut(),
    };
    // SAFETY: live request; the chain and its buffer outlive the call (the buffer is in the
    // request pool; nginx copies what it keeps of the chain link).
    unsafe { ngx_http_output_filter(r, &mut out) }
}

/// 500, when the body could not be put in the request pool.
const HTTP_INTERNAL_SERVER_ERROR: ngx_int_t = 500;
