//! Per-request state in the request pool, reached through one helper pair (`create` / `get`,
//! called where an nginx callback turns its raw pointers into references), and what the request
//! asks for: its key, dimension keys, `dynpage_var` values, predeploy and gray user, each
//! evaluated once.

use std::ffi::c_void;
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::ptr;

use ngx::ffi::{
    ngx_connection_t, ngx_event_t, ngx_http_arg, ngx_http_complex_value, ngx_http_complex_value_t,
    ngx_http_request_t, ngx_int_t, ngx_pcalloc, ngx_str_t, NGX_OK,
};
use ngx::http::HttpModule;

use dynpage_core::cidr::ip_from_octets;
use dynpage_core::coding::Encoding;
use dynpage_core::layout::MAX_NAME_LEN;
use dynpage_core::render::{request_value, Value};
use dynpage_core::resolve::Dimension;
use dynpage_core::serve::{RenderRules, Request, State};
use dynpage_core::version::Fnv;

use crate::conf::LocConf;
use crate::module::Module;
use crate::served::{Served, ServedValue};

/// Per-request state, in the request pool. Plain data (nothing to drop), valid all zero.
pub struct ReqCtx {
    /// The page key (page mode) or the URI (dimension mode): what log lines name.
    pub key: ngx_str_t,
    /// Dimension mode: each `dynpage_data` key, evaluated once, in the request pool.
    data_keys: *mut ngx_str_t,
    data_len: usize,
    /// Each `dynpage_var` value, evaluated once, in the request pool.
    vars: *mut ngx_str_t,
    vars_len: usize,
    /// When the handler first ran: values loaded since then are fresh for this request.
    pub started_ms: u64,
    /// Ends a wait that takes too long; non-cancelable, so a graceful exit waits for it.
    pub timer: ngx_event_t,
    /// `predeploy=true` from a client `dynpage_predeploy_allow` allows.
    pub predeploy: bool,
    /// The `dynpage_gray_by` value (empty: stay on production).
    pub gray_user: ngx_str_t,
    /// Where the request is in the request path (see `dynpage_core::serve`).
    pub state: State,
    /// What was served, for the `$dynpage_*` variables.
    pub served: Served,
}

impl ReqCtx {
    /// Each `dynpage_data` key of the location, evaluated for this request.
    pub fn data_keys(&self) -> &[ngx_str_t] {
        pool_strs(self.data_keys, self.data_len)
    }

    /// Each `dynpage_var` value of the location, evaluated for this request.
    pub fn vars(&self) -> &[ngx_str_t] {
        pool_strs(self.vars, self.vars_len)
    }

    pub fn gray_user(&self) -> Option<&[u8]> {
        Some(self.gray_user.as_bytes()).filter(|u| !u.is_empty())
    }

    /// The templates' `request` value, when the location declares `dynpage_var`s.
    fn templates_request(&self, lcf: &LocConf) -> Option<Value> {
        let decls = lcf.vars();
        if decls.is_empty() {
            return None;
        }
        Some(request_value(decls.iter().zip(self.vars()).map(
            |(d, v)| {
                let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (d.name.clone(), v)
            },
        )))
    }

    /// Dimension mode: each `dynpage_data` of the location with this request's key (empty
    /// when the key is unusable: then the dimension is missing).
    fn dimensions<'a>(&'a self, lcf: &'a LocConf) -> Vec<Dimension<'a>> {
        lcf.data
            .iter()
            .zip(self.data_keys())
            .map(|(d, k)| Dimension {
                name: &d.name,
                key: usable_key(k).unwrap_or_default(),
                required: d.required,
            })
            .collect()
    }

    /// The `dynpage_var` values hashed with this process's random key (SipHash): what tells
    /// kept outputs apart. Unlike `vars_hash` (which the ETag takes, the same in every worker),
    /// no client can make two values collide on purpose.
    pub fn vars_key(&self) -> u64 {
        VARS_KEY.with(|k| {
            let mut h = k.build_hasher();
            for v in self.vars() {
                h.write_usize(v.len);
                h.write(v.as_bytes());
            }
            h.finish()
        })
    }

    /// A hash of the `dynpage_var` values: outputs differ by them.
    pub fn vars_hash(&self) -> u64 {
        self.vars()
            .iter()
            .fold(&mut Fnv::default(), |h, v| {
                h.write_u64(v.len as u64).write(v.as_bytes())
            })
            .finish()
    }
}

/// What a request asks of `serve::decide` that it owns: built from its context once a decision.
pub struct Asked<'a> {
    dimensions: Vec<Dimension<'a>>,
    request: Option<Value>,
}

impl ReqCtx {
    pub fn asked<'a>(&'a self, lcf: &'a LocConf) -> Asked<'a> {
        Asked {
            dimensions: self.dimensions(lcf),
            request: self.templates_request(lcf),
        }
    }
}

impl<'a> Asked<'a> {
    /// The request `serve::decide` takes for page `key` at `now`.
    pub fn request(
        &'a self,
        ctx: &'a ReqCtx,
        lcf: &'a LocConf,
        key: &'a str,
        now: u64,
        if_none_match: Option<&'a [u8]>,
        encodings: &'a [Encoding],
    ) -> Request<'a> {
        Request {
            key,
            template: lcf.template.as_deref(),
            dimensions: &self.dimensions,
            predeploy: ctx.predeploy,
            gray_user: ctx.gray_user(),
            now_ms: now,
            ttl_ms: lcf.cache_ttl_ms(),
            location: ptr::from_ref(lcf) as u64,
            request: self.request.as_ref(),
            request_hash: ctx.vars_hash(),
            vars_key: ctx.vars_key(),
            if_none_match,
            encodings,
            render: RenderRules {
                limits: lcf.render_limits(),
                skip_failed_modules: !lcf.module_errors_fail(),
                guard: lcf.guard(),
            },
        }
    }
}

/// The client's `If-None-Match`, for a main request only: a subrequest (SSI include, Lua
/// capture) shares its main request's headers, and like nginx's not_modified filter only the
/// main request is answered 304.
///
/// # Safety
/// `r` is a live request; the value is in its pool, valid for as long as the request (`'p`).
pub unsafe fn if_none_match<'p>(r: &ngx_http_request_t) -> Option<&'p [u8]> {
    if !ptr::eq(r.main, r) {
        return None;
    }
    // SAFETY: per the contract, the header element, if any, lives in the request pool.
    let h = unsafe { r.headers_in.if_none_match.as_ref::<'p>() }?;
    Some(h.value.as_bytes())
}

thread_local! {
    /// The random key of `ReqCtx::vars_key` (per process: the event loop's thread).
    static VARS_KEY: std::collections::hash_map::RandomState =
        std::collections::hash_map::RandomState::new();
}

/// The strings `eval_all` stored at `at` (in the request pool, alive with the request that owns
/// the context holding the pointer).
fn pool_strs<'a>(at: *const ngx_str_t, len: usize) -> &'a [ngx_str_t] {
    if at.is_null() || len == 0 {
        return &[];
    }
    // SAFETY: `at` was filled by `eval_all` with `len` strings in the pool of the request
    // whose context holds it; a context is only reached through its live request.
    unsafe { std::slice::from_raw_parts(at, len) }
}

/// The context of request `r`, if the content handler created one.
///
/// # Safety
/// `r` is a live request; the reference is used within the current nginx callback only, and no
/// other reference to the context is alive meanwhile (one per callback).
pub unsafe fn get<'c>(r: &ngx_http_request_t) -> Option<&'c mut ReqCtx> {
    // SAFETY: `ctx` has one slot per HTTP module, ours at our ctx_index.
    let slot = unsafe { *r.ctx.add(Module::module().ctx_index) };
    // SAFETY: the slot is null or the ReqCtx `create` put there, in the request pool; the
    // caller holds no other reference to it.
    unsafe { slot.cast::<ReqCtx>().as_mut() }
}

/// Creates the context of `r` for location `lcf`: the key, dimension keys and `dynpage_var`
/// values evaluated once, the predeploy and gray asks read. `None` if the pool is exhausted or
/// a value cannot be evaluated (then 500).
///
/// # Safety
/// As for [`get`]: the reference is used within the current callback only.
pub unsafe fn create<'c>(r: &mut ngx_http_request_t, lcf: &LocConf) -> Option<&'c mut ReqCtx> {
    let rp: *mut ngx_http_request_t = r;
    // SAFETY: the pool belongs to the live request.
    let raw = unsafe { ngx_pcalloc(r.pool, std::mem::size_of::<ReqCtx>()) }.cast::<ReqCtx>();
    // SAFETY: zeroed memory is a valid ReqCtx (plain data), in the request pool, ours alone.
    let ctx = unsafe { raw.as_mut() }?;
    if lcf.page.is_null() {
        ctx.key = r.uri;
    } else {
        // SAFETY: live request; the value was compiled by `ngx_http_compile_complex_value`.
        let rc = unsafe { ngx_http_complex_value(rp, lcf.page, &mut ctx.key) };
        if rc != NGX_OK as ngx_int_t {
            return None;
        }
    }
    (ctx.data_keys, ctx.data_len) = eval_all(r, lcf.data.iter().map(|d| d.key))?;
    (ctx.vars, ctx.vars_len) = eval_all(r, lcf.vars().iter().map(|v| v.value))?;
    // SAFETY: storing our context in our slot is what ngx_http_set_ctx does.
    unsafe { *r.ctx.add(Module::module().ctx_index) = raw.cast::<c_void>() };
    for (d, k) in lcf.data.iter().zip(ctx.data_keys()) {
        // Once per request, at `info` like other errors a client causes.
        if let Err(problem) = usable_key(k) {
            info!(
                r,
                "the key of dimension \"{}\" {problem}; the dimension is missing", d.name
            );
        }
    }
    read_ask(r, lcf, ctx);
    Some(ctx)
}

/// Evaluates complex values into an array in the request pool (null when there are none).
fn eval_all(
    r: &mut ngx_http_request_t,
    values: impl ExactSizeIterator<Item = *mut ngx_http_complex_value_t>,
) -> Option<(*mut ngx_str_t, usize)> {
    let len = values.len();
    if len == 0 {
        return Some((ptr::null_mut(), 0));
    }
    let size = len * std::mem::size_of::<ngx_str_t>();
    // SAFETY: the pool belongs to the live request; zeroed strings are empty ones.
    let out = unsafe { ngx_pcalloc(r.pool, size) }.cast::<ngx_str_t>();
    if out.is_null() {
        return None;
    }
    for (i, cv) in values.enumerate() {
        // SAFETY: `i < len`, inside the array just allocated; every value was compiled by
        // `ngx_http_compile_complex_value` for this location.
        let rc = unsafe { ngx_http_complex_value(r, cv, out.add(i)) };
        if rc != NGX_OK as ngx_int_t {
            return None;
        }
    }
    Some((out, len))
}

/// The page key in `key` (a copy of the context's), or why it cannot be one (then 404).
pub fn page_key(key: &ngx_str_t) -> Result<&str, String> {
    let key = key.as_bytes();
    if key.is_empty() {
        return Err("page key is empty".into());
    }
    if key.len() > MAX_NAME_LEN {
        return Err(format!(
            "page key is {} bytes, over the {MAX_NAME_LEN} byte limit",
            key.len()
        ));
    }
    std::str::from_utf8(key).map_err(|_| {
        format!(
            "page key \"{}\" is not UTF-8",
            String::from_utf8_lossy(key).escape_debug()
        )
    })
}

/// A dimension's key, or why it cannot be one (then the dimension is missing).
pub fn usable_key(key: &ngx_str_t) -> Result<&str, String> {
    match std::str::from_utf8(key.as_bytes()) {
        Ok(k) if k.len() <= MAX_NAME_LEN => Ok(k),
        Ok(_) => Err(format!("is over the {MAX_NAME_LEN} byte limit")),
        Err(_) => Err("is not UTF-8".to_string()),
    }
}

/// Which releases the request may see: `predeploy=true` from an allowed client, and the
/// `dynpage_gray_by` value. A client that is not allowed gets production, as if it had not asked.
fn read_ask(r: &mut ngx_http_request_t, lcf: &LocConf, ctx: &mut ReqCtx) {
    let mut value = ngx_str_t::default();
    let name = b"predeploy";
    // SAFETY: live request; the name is only read.
    let rc = unsafe { ngx_http_arg(r, name.as_ptr().cast_mut(), name.len(), &mut value) };
    if rc == NGX_OK as ngx_int_t {
        let key = String::from_utf8_lossy(ctx.key.as_bytes()).into_owned();
        let asked = value.as_bytes();
        if asked != b"true" {
            info!(
                r,
                "page \"{}\": predeploy=\"{}\" is not \"true\", ignored",
                key.escape_debug(),
                String::from_utf8_lossy(asked).escape_debug()
            );
        } else if lcf.predeploy_allowed(client_peer(r)) {
            ctx.predeploy = true;
        } else {
            info!(
                r,
                "page \"{}\": client not allowed by dynpage_predeploy_allow, \
                     serving production",
                key.escape_debug()
            );
        }
    }
    if lcf.gray_by.is_null() {
        // SAFETY: `r` is live (a reference).
        ctx.gray_user = unsafe { connection(r) }.addr_text;
    } else {
        // SAFETY: live request; the value was compiled for this location.
        let rc = unsafe { ngx_http_complex_value(r, lcf.gray_by, &mut ctx.gray_user) };
        if rc != NGX_OK as ngx_int_t {
            ctx.gray_user = ngx_str_t::default();
        }
    }
}

/// The client address of `r`.
fn client_peer(r: &ngx_http_request_t) -> Option<IpAddr> {
    // SAFETY: `r` is live (a reference).
    let c = unsafe { connection(r) };
    // SAFETY: the connection of a live request is live.
    unsafe { client_ip(c) }
}

/// # Safety
/// `r` is a live request: its connection outlives it.
unsafe fn connection(r: &ngx_http_request_t) -> &ngx_connection_t {
    // SAFETY: per the contract.
    unsafe { &*r.connection }
}

/// The client address nginx sees (after the realip module, if configured).
///
/// # Safety
/// `c` is a live connection: its sockaddr is null or points to its address.
unsafe fn client_ip(c: &ngx_connection_t) -> Option<IpAddr> {
    // SAFETY: per the contract.
    let sa = unsafe { c.sockaddr.as_ref() }?;
    match i32::from(sa.sa_family) {
        libc::AF_INET => {
            // SAFETY: the family says the address is a sockaddr_in.
            let sin = unsafe { &*c.sockaddr.cast::<libc::sockaddr_in>() };
            ip_from_octets(&sin.sin_addr.s_addr.to_ne_bytes())
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the address is a sockaddr_in6.
            let sin6 = unsafe { &*c.sockaddr.cast::<libc::sockaddr_in6>() };
            ip_from_octets(&sin6.sin6_addr.s6_addr)
        }
        _ => None,
    }
}

/// One value of what request `r` was served, if it went through this module and a page was
/// chosen: bytes in its context, in the request pool.
pub fn served_value(r: &ngx_http_request_t, which: ServedValue) -> Option<&[u8]> {
    // SAFETY: the context is only read, through a shared reference tied to the request's.
    let ctx: &ReqCtx = unsafe { get(r) }?;
    ctx.served.value(which)
}

/// The key a log line names for `r`: its page key once known, else its URI.
pub fn key_for_log(r: &ngx_http_request_t) -> String {
    // SAFETY: the key (a copy) is all that is read from the context.
    let key = match unsafe { get(r) } {
        Some(ctx) if ctx.key.len > 0 => ctx.key,
        _ => r.uri,
    };
    String::from_utf8_lossy(key.as_bytes()).into_owned()
}
