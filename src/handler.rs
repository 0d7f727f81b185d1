//! The content handler: resolve from the worker cache, suspend on a miss, render, respond.

use std::ffi::c_void;
use std::ptr;
use std::sync::Arc;

use ngx::ffi::{
    ngx_add_timer, ngx_buf_t, ngx_connection_t, ngx_del_timer, ngx_event_t, ngx_http_arg,
    ngx_http_complex_value, ngx_http_complex_value_t, ngx_http_discard_request_body,
    ngx_http_finalize_request, ngx_http_request_t, ngx_http_run_posted_requests, ngx_int_t,
    ngx_pcalloc, ngx_str_t, NGX_DONE, NGX_HTTP_GET, NGX_HTTP_HEAD, NGX_LOG_ALERT, NGX_LOG_ERR,
    NGX_LOG_INFO, NGX_LOG_WARN, NGX_OK,
};
use ngx::http::HttpModule;

use dynpage_core::cidr::ip_from_octets;
use dynpage_core::layout::MAX_NAME_LEN;
use dynpage_core::prepare::{Prepared, PreparedData, PreparedSnapshot};
use dynpage_core::render::{CompiledTemplate, RenderOptions, SkippedModule, Value};
use dynpage_core::resolve::{
    fallback_stages, resolve, resolve_dimensions, Dimension, Inputs, Loaded, Outcome, Page, Slot,
};
use dynpage_core::stale_store::{Identity, Stored};
use dynpage_core::store::write_data_cache_key;
use dynpage_core::store::{write_field_cache_key, write_meta_cache_key};
use dynpage_core::version::{Ask, DocMeta, Field, Fnv, Variant};

use crate::conf::{loc_conf, LocConf};
use crate::log::log_request;
use crate::response::{self, Response};
use crate::variables::{Served, Source};
use crate::worker::{self, now_ms, Answer, Entry};
use crate::Module;

const HTTP_NOT_ALLOWED: ngx_int_t = 405;
const HTTP_NOT_FOUND: ngx_int_t = 404;
const HTTP_INTERNAL_SERVER_ERROR: ngx_int_t = 500;
const HTTP_SERVICE_UNAVAILABLE: ngx_int_t = 503;
const HTTP_CLIENT_CLOSED_REQUEST: ngx_int_t = 499;

/// Per-request state, in the request pool (plain data: nothing to drop).
struct ReqCtx {
    /// The page key (page mode) or the URI (dimension mode): what log lines name.
    key: ngx_str_t,
    /// Dimension mode: each `dynpage_data` key, evaluated once, in the request pool.
    data_keys: *mut ngx_str_t,
    /// Each `dynpage_var` value, evaluated once, in the request pool.
    vars: *mut ngx_str_t,
    /// When the handler first ran: values loaded since then are fresh for this request.
    started_ms: u64,
    /// Set when a fetch this request waited for failed.
    fetch_failed: bool,
    /// Set once the request waited for a fetch (`source=redis`)...
    fetched: bool,
    /// ...that the CMS answered (`source=cms`).
    fetched_from_cms: bool,
    /// Ends a wait that takes too long; non-cancelable, so a graceful exit waits for it.
    timer: ngx_event_t,
    /// `predeploy=true` from a client `dynpage_predeploy_allow` allows.
    predeploy: bool,
    /// The `dynpage_gray_by` value (empty: stay on production).
    gray_user: ngx_str_t,
    /// What was served, for the `$dynpage_*` variables.
    served: Served,
    /// Falling back after a failed render.
    fallback: Fallback,
}

/// Which earlier versions a request tries after a failed render (zeroed: not falling back).
#[derive(Clone, Copy, Default)]
struct Fallback {
    /// `(page before, template before)` per stage; 0 means "as production chooses".
    stages: [(u64, u64); 3],
    len: u8,
    /// 1 + the stage being tried; 0 when not falling back.
    at: u8,
    /// The failed render, as `Runtime::note_broken` knows it.
    id: u64,
}

impl Fallback {
    fn start(id: u64, stages: &[(Option<u64>, Option<u64>)]) -> Fallback {
        let mut f = Fallback {
            id,
            at: 1,
            ..Fallback::default()
        };
        for (slot, (p, t)) in f.stages.iter_mut().zip(stages) {
            *slot = (p.unwrap_or(0), t.unwrap_or(0));
            f.len += 1;
        }
        if f.len == 0 {
            f.at = 0;
        }
        f
    }

    fn active(&self) -> bool {
        self.at > 0 && self.at <= self.len
    }

    /// Moves on to the next stage; false when there is none left.
    fn advance(&mut self) -> bool {
        self.at = self.at.saturating_add(1);
        self.active()
    }

    fn ask(&self) -> Ask<'static> {
        let (p, t) = self.stages[usize::from(self.at.saturating_sub(1)).min(2)];
        Ask {
            before_page: (p > 0).then_some(p),
            before_template: (t > 0).then_some(t),
            ..Ask::default()
        }
    }
}

/// The page version and main template version of a set of inputs, for log lines.
fn describe_inputs(page: Option<Field>, template: Option<&(String, Field)>) -> String {
    let template =
        template.map(|(name, f)| format!("template \"{}\" version {f}", name.escape_debug()));
    match (page, template) {
        (Some(f), Some(t)) => format!("version {f} ({t})"),
        (Some(f), None) => format!("version {f}"),
        (None, Some(t)) => t,
        (None, None) => "its data".to_string(),
    }
}

/// Identifies failed inputs that have no ETag (they never resolved to a page).
fn broken_id(key: &str, page: Option<Field>, template: Option<&(String, Field)>) -> u64 {
    let mut h = dynpage_core::version::Fnv::default();
    h.write(key.as_bytes()).write(b"\0broken\0");
    h.write(describe_inputs(page, template).as_bytes());
    h.finish()
}

/// What request `r` was served, if it went through this module.
///
/// # Safety
/// `r` is a live request.
pub unsafe fn served<'a>(r: *mut ngx_http_request_t) -> Option<&'a Served> {
    // SAFETY: per the contract; the ctx, when set, is our ReqCtx in the request pool.
    unsafe { ctx_of(r).as_ref().map(|c| &c.served) }
}

fn ctx_of(r: *mut ngx_http_request_t) -> *mut ReqCtx {
    // SAFETY: `r` is live; `ctx` has one slot per HTTP module, ours at our ctx_index.
    unsafe { *(*r).ctx.add(Module::module().ctx_index) as *mut ReqCtx }
}

/// The key a log line names for `r`: its page key once known, else its URI.
fn key_for_log(r: *mut ngx_http_request_t) -> String {
    // SAFETY: `r` is live; its ctx slot is null or the ReqCtx set in `content_handler`, whose
    // key is an ngx_str_t in the request pool (empty until evaluated).
    unsafe {
        let ctx = ctx_of(r);
        let key = if ctx.is_null() || (*ctx).key.len == 0 {
            (*r).uri
        } else {
            (*ctx).key
        };
        String::from_utf8_lossy(key.as_bytes()).into_owned()
    }
}

/// nginx's content handler for `dynpage_page` locations.
pub unsafe extern "C" fn content_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    crate::ffi_guard::catch_request(
        r,
        "the content handler",
        || key_for_log(r),
        HTTP_INTERNAL_SERVER_ERROR,
        // SAFETY: nginx calls content handlers with a live request.
        || unsafe { handle(r) },
    )
}

/// The content handler's body.
///
/// # Safety
/// `r` is a live request in its content phase.
unsafe fn handle(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: per the contract.
    let req = unsafe { &mut *r };
    if req.method & (NGX_HTTP_GET | NGX_HTTP_HEAD) as usize == 0 {
        return HTTP_NOT_ALLOWED;
    }
    // SAFETY: live request.
    let rc = unsafe { ngx_http_discard_request_body(r) };
    if rc != NGX_OK as ngx_int_t {
        return rc;
    }
    let Some(lcf) = loc_conf(req) else {
        return HTTP_INTERNAL_SERVER_ERROR;
    };
    // SAFETY: the pool belongs to the live request; the zeroed ReqCtx is valid plain data
    // (null pointers, zero timer); storing it in r->ctx is what ngx_http_set_ctx does.
    let ctx = unsafe {
        let ctx = ngx_pcalloc(req.pool, std::mem::size_of::<ReqCtx>()).cast::<ReqCtx>();
        if ctx.is_null() {
            return HTTP_INTERNAL_SERVER_ERROR;
        }
        if lcf.page.is_null() {
            (*ctx).key = req.uri;
        } else if ngx_http_complex_value(r, lcf.page, &mut (*ctx).key) != NGX_OK as ngx_int_t {
            return HTTP_INTERNAL_SERVER_ERROR;
        }
        (*ctx).data_keys = match eval_all(r, lcf.data.iter().map(|d| d.key)) {
            Some(keys) => keys,
            None => return HTTP_INTERNAL_SERVER_ERROR,
        };
        (*ctx).vars = match eval_all(r, lcf.vars().iter().map(|v| v.value)) {
            Some(values) => values,
            None => return HTTP_INTERNAL_SERVER_ERROR,
        };
        *req.ctx.add(Module::module().ctx_index) = ctx.cast::<c_void>();
        &mut *ctx
    };
    ctx.started_ms = now_ms();
    #[cfg(feature = "test-panic")]
    if ctx.key.as_bytes() == b"/dynpage-test-panic" {
        panic!("test-panic: the content handler panics on purpose");
    }
    // SAFETY: `ctx.data_keys` was just filled with one string per declaration.
    let data_keys = unsafe { pool_strs(ctx.data_keys, lcf.data.len()) };
    for (d, k) in lcf.data.iter().zip(data_keys) {
        // Once per request, at `info` like other errors a client causes.
        if let Err(problem) = usable_key(k) {
            log_request(
                r,
                NGX_LOG_INFO,
                &format!(
                    "dynpage: the key of dimension \"{}\" {problem}; the dimension is missing",
                    d.name
                ),
            );
        }
    }
    // SAFETY: live request; the context was just set up.
    unsafe { read_ask(r, lcf, ctx) };
    run(r, lcf, ctx)
}

/// Evaluates complex values into an array in the request pool (null when there are none).
///
/// # Safety
/// `r` is a live request; every value was compiled by `ngx_http_compile_complex_value`.
unsafe fn eval_all(
    r: *mut ngx_http_request_t,
    values: impl ExactSizeIterator<Item = *mut ngx_http_complex_value_t>,
) -> Option<*mut ngx_str_t> {
    if values.len() == 0 {
        return Some(ptr::null_mut());
    }
    // SAFETY: per the contract; the array is zeroed (empty strings) before it is filled, and
    // lives as long as the request.
    unsafe {
        let out = ngx_pcalloc((*r).pool, values.len() * std::mem::size_of::<ngx_str_t>())
            .cast::<ngx_str_t>();
        if out.is_null() {
            return None;
        }
        for (i, cv) in values.enumerate() {
            if ngx_http_complex_value(r, cv, out.add(i)) != NGX_OK as ngx_int_t {
                return None;
            }
        }
        Some(out)
    }
}

/// The `len` strings `eval_all` stored at `at`.
///
/// # Safety
/// `at` is null with `len` 0, or an array `eval_all` filled with `len` strings for a request
/// that is still live.
unsafe fn pool_strs<'a>(at: *const ngx_str_t, len: usize) -> &'a [ngx_str_t] {
    if at.is_null() || len == 0 {
        return &[];
    }
    // SAFETY: per the contract.
    unsafe { std::slice::from_raw_parts(at, len) }
}

/// A dimension's key, or why it cannot be one (then the dimension is missing).
fn usable_key(key: &ngx_str_t) -> Result<&str, String> {
    match std::str::from_utf8(key.as_bytes()) {
        Ok(k) if k.len() <= MAX_NAME_LEN => Ok(k),
        Ok(_) => Err(format!("is over the {MAX_NAME_LEN} byte limit")),
        Err(_) => Err("is not UTF-8".to_string()),
    }
}

/// Which releases the request may see: `predeploy=true` from an allowed client, and the
/// `dynpage_gray_by` value. A client that is not allowed gets production, as if it had not asked.
///
/// # Safety
/// `r` is a live request.
unsafe fn read_ask(r: *mut ngx_http_request_t, lcf: &LocConf, ctx: &mut ReqCtx) {
    // SAFETY: per the contract; strings and addresses come from the request and its pool.
    unsafe {
        let c = (*r).connection;
        let mut value = ngx_str_t::default();
        let name = b"predeploy";
        if ngx_http_arg(r, name.as_ptr().cast_mut(), name.len(), &mut value) == NGX_OK as ngx_int_t
        {
            let asked = value.as_bytes();
            if asked != b"true" {
                log_request(
                    r,
                    NGX_LOG_INFO,
                    &format!(
                        "dynpage: page \"{}\": predeploy=\"{}\" is not \"true\", ignored",
                        String::from_utf8_lossy(ctx.key.as_bytes()).escape_debug(),
                        String::from_utf8_lossy(asked).escape_debug()
                    ),
                );
            } else if lcf.predeploy_allowed(client_ip(c)) {
                ctx.predeploy = true;
            } else {
                log_request(
                    r,
                    NGX_LOG_INFO,
                    &format!(
                        "dynpage: page \"{}\": client not allowed by dynpage_predeploy_allow, \
                         serving production",
                        String::from_utf8_lossy(ctx.key.as_bytes()).escape_debug()
                    ),
                );
            }
        }
        if lcf.gray_by.is_null() {
            ctx.gray_user = (*c).addr_text;
        } else if ngx_http_complex_value(r, lcf.gray_by, &mut ctx.gray_user) != NGX_OK as ngx_int_t
        {
            ctx.gray_user = ngx_str_t::default();
        }
    }
}

/// The client address nginx sees (after the realip module, if configured).
///
/// # Safety
/// `c` is a live connection.
unsafe fn client_ip(c: *mut ngx_connection_t) -> Option<std::net::IpAddr> {
    // SAFETY: per the contract; the sockaddr's family says which struct it is.
    unsafe {
        let sa = (*c).sockaddr;
        if sa.is_null() {
            return None;
        }
        match i32::from((*sa).sa_family) {
            libc::AF_INET => {
                let sin = &*sa.cast::<libc::sockaddr_in>();
                ip_from_octets(&sin.sin_addr.s_addr.to_ne_bytes())
            }
            libc::AF_INET6 => {
                let sin6 = &*sa.cast::<libc::sockaddr_in6>();
                ip_from_octets(&sin6.sin6_addr.s6_addr)
            }
            _ => None,
        }
    }
}

/// The worker cache seen through the resolver's eyes.
struct CacheInputs<'a> {
    rt: &'a mut worker::Runtime,
    now: u64,
    ttl: u64,
    since: u64,
    /// Set when no source answered: entries loaded within this many ms still serve.
    stale_ttl: Option<u64>,
}

impl CacheInputs<'_> {
    /// The entry under `key_buf` if fresh: an immutable field that exists is always fresh;
    /// metas, mutable fields and absences are fresh for the TTL (or if loaded for this request).
    /// When no source answered, anything loaded within `dynpage_stale_ttl` serves.
    fn lookup(&mut self, immutable_field: bool) -> Option<&Prepared> {
        let (now, ttl, since) = (self.now, self.ttl, self.since);
        let stale_ttl = self.stale_ttl;
        let meta = self.rt.key_buf.starts_with('M');
        let epochs = self.rt.epochs();
        let entry: &Entry = self.rt.cache.get(&self.rt.key_buf)?;
        let outdated = entry.outdated(epochs, meta, !immutable_field);
        let fresh = (immutable_field && entry.value.is_present())
            || entry.loaded_ms >= since
            || (!entry.doubtful && !outdated && now < entry.loaded_ms.saturating_add(ttl))
            || stale_ttl.is_some_and(|s| now < entry.loaded_ms.saturating_add(s));
        fresh.then_some(&entry.value)
    }
}

impl Inputs for CacheInputs<'_> {
    fn meta(&mut self, page: bool, name: &str) -> Slot<Option<Arc<DocMeta>>> {
        write_meta_cache_key(&mut self.rt.key_buf, page, name);
        match self.lookup(false) {
            Some(Prepared::Meta(m)) => Slot::Have(m.clone()),
            _ => Slot::Missing,
        }
    }

    fn snapshot(&mut self, key: &str, field: Field) -> Slot<Loaded<PreparedSnapshot>> {
        write_field_cache_key(&mut self.rt.key_buf, true, key, field);
        match self.lookup(field.is_immutable()) {
            Some(Prepared::Snapshot(s)) => Slot::Have(s.clone()),
            _ => Slot::Missing,
        }
    }

    fn template(&mut self, name: &str, field: Field) -> Slot<Loaded<CompiledTemplate>> {
        write_field_cache_key(&mut self.rt.key_buf, false, name, field);
        match self.lookup(field.is_immutable()) {
            Some(Prepared::Template(t)) => Slot::Have(t.clone()),
            _ => Slot::Missing,
        }
    }

    fn data(&mut self, key: &str) -> Slot<Loaded<PreparedData>> {
        write_data_cache_key(&mut self.rt.key_buf, key);
        match self.lookup(false) {
            Some(Prepared::Data(d)) => Slot::Have(d.clone()),
            _ => Slot::Missing,
        }
    }
}

/// What to do after looking at the cache.
enum Step {
    Suspend,
    /// No source answered and nothing stale is held (already logged for the source).
    Unavailable,
    /// With the alert to log when it is a fallback served for the first time, and what was
    /// left out of the page (modules, dimensions), when that is logged for the first time.
    Respond(Response, Option<String>, Vec<String>),
    NotFound(String),
    Failed(ngx_int_t, String),
    /// No earlier version rendered either: 500, logged once per failure.
    FallbackFailed(Option<String>),
}

fn key_str(key: &ngx_str_t) -> Result<&str, String> {
    let bytes = key.as_bytes();
    if bytes.is_empty() {
        return Err("page key is empty".into());
    }
    if bytes.len() > MAX_NAME_LEN {
        return Err(format!(
            "page key is {} bytes, over the {MAX_NAME_LEN} byte limit",
            bytes.len()
        ));
    }
    std::str::from_utf8(bytes).map_err(|_| {
        format!(
            "page key \"{}\" is not UTF-8",
            String::from_utf8_lossy(bytes).escape_debug()
        )
    })
}

/// The fallback stages after the render of `page` failed.
fn page_fallback(page: &Page) -> Vec<(Option<u64>, Option<u64>)> {
    fallback_stages(
        page.variant,
        page.page_field(),
        page.template_field.as_ref().map(|(_, f)| *f),
    )
}

/// The `request` value of templates, when the location declares `dynpage_var`s.
fn request_value(lcf: &LocConf, ctx: &ReqCtx) -> Option<Value> {
    let decls = lcf.vars();
    if decls.is_empty() {
        return None;
    }
    // SAFETY: `ctx.vars` was filled by `eval_all` with one string per declaration.
    let values = unsafe { pool_strs(ctx.vars, decls.len()) };
    Some(dynpage_core::render::request_value(
        decls.iter().zip(values).map(|(d, v)| {
            let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
            (d.name.clone(), v)
        }),
    ))
}

/// Modules found failing for a page's inputs (page, versions, location and request values),
/// until the TTL passes: left out from the first render of the next requests with the same
/// inputs instead of being rendered (and failing) again. The event loop's thread only.
struct FailedModules {
    until_ms: u64,
    names: Vec<String>,
}

thread_local! {
    static FAILED_MODULES: std::cell::RefCell<std::collections::HashMap<u64, FailedModules>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// The modules known to fail for inputs `id`.
fn known_failed_modules(id: u64, now: u64) -> Vec<String> {
    FAILED_MODULES.with(|m| {
        m.borrow()
            .get(&id)
            .filter(|f| now < f.until_ms)
            .map(|f| f.names.clone())
            .unwrap_or_default()
    })
}

/// Remembers that modules `names` fail for inputs `id`, until `until_ms`.
fn note_failed_modules(id: u64, now: u64, until_ms: u64, names: Vec<String>) {
    FAILED_MODULES.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() >= 10_000 {
            m.retain(|_, f| f.until_ms > now);
            if m.len() >= 10_000 {
                m.clear(); // bounded memory; worst case a module is rendered again
            }
        }
        m.insert(id, FailedModules { until_ms, names });
    });
}

/// One `debug` line per render: how many passes it took (one more for each module that failed
/// and was left out), and how many modules it left out as known to fail.
fn log_render(r: *mut ngx_http_request_t, key: &str, page: &Page, passes: usize, known: usize) {
    // SAFETY: `r` is a live request; its connection's log outlives it.
    let log = unsafe { (*(*r).connection).log };
    ngx::ngx_log_error!(
        ngx::ffi::NGX_LOG_DEBUG,
        log,
        "dynpage: rendered \"{}\" {} in {passes} pass{}, {known} module{} known to fail left out",
        key.escape_debug(),
        describe_inputs(page.page_field(), page.template_field.as_ref()),
        if passes == 1 { "" } else { "es" },
        if known == 1 { "" } else { "s" },
    );
}

/// Log lines for what a rendered page left out.
fn left_out_lines(page: &Page, skipped: &[SkippedModule]) -> Vec<String> {
    page.skipped_modules
        .iter()
        .chain(skipped)
        .map(|m| format!("module \"{}\" left out: {}", m.name.escape_debug(), m.cause))
        .chain(page.bad_dimensions.iter().cloned())
        .collect()
}

/// Resolves and answers, or suspends. Returns what nginx's finalize expects.
fn run(r: *mut ngx_http_request_t, lcf: &LocConf, ctx: &mut ReqCtx) -> ngx_int_t {
    let key = match key_str(&ctx.key) {
        Ok(k) => k,
        Err(cause) => {
            log_request(r, NGX_LOG_INFO, &format!("dynpage: {cause}, answering 404"));
            return HTTP_NOT_FOUND;
        }
    };
    #[cfg(feature = "test-panic")]
    if ctx.fetched && key == "/dynpage-test-panic-resumed" {
        panic!("test-panic: a resumed request panics on purpose");
    }
    let now = now_ms();
    // SAFETY: live request; the headers_in element (if any) lives in the request pool. A
    // subrequest (SSI include, Lua capture) shares its main request's headers: like nginx's
    // not_modified filter, only the main request is answered 304.
    let if_none_match = unsafe {
        (*r).headers_in
            .if_none_match
            .as_ref()
            .filter(|_| r == (*r).main)
            .map(|h| h.value.as_bytes())
    };
    // Dimension mode: the dimensions with this request's keys.
    // SAFETY: `ctx.data_keys` was filled by `eval_all` with one string per declaration.
    let data_keys = unsafe { pool_strs(ctx.data_keys, lcf.data.len()) };
    let dimensions: Vec<Dimension<'_>> = lcf
        .data
        .iter()
        .zip(data_keys)
        .map(|(d, k)| Dimension {
            name: &d.name,
            key: usable_key(k).unwrap_or_default(),
            required: d.required,
        })
        .collect();
    let request = request_value(lcf, ctx);
    // SAFETY: `ctx.vars` was filled by `eval_all` with one string per declaration.
    let request_hash = unsafe { pool_strs(ctx.vars, lcf.vars().len()) }
        .iter()
        .fold(&mut Fnv::default(), |h, v| {
            h.write_u64(v.len as u64).write(v.as_bytes())
        })
        .finish();
    let skip_failed_modules = !lcf.module_errors_fail();
    // Once the source failed for this request (or is being skipped), stale inputs serve.
    let mut stale = ctx.fetch_failed;
    let step = worker::with(|rt| loop {
        let mut inputs = CacheInputs {
            rt: &mut *rt,
            now,
            ttl: lcf.cache_ttl_ms(),
            since: ctx.started_ms,
            stale_ttl: stale.then(|| lcf.stale_ttl_ms()),
        };
        let falling_back = ctx.fallback.active();
        let ask = if falling_back {
            ctx.fallback.ask()
        } else {
            Ask {
                predeploy: ctx.predeploy,
                gray_user: Some(ctx.gray_user.as_bytes()).filter(|u| !u.is_empty()),
                ..Ask::default()
            }
        };
        let source = if falling_back {
            Source::Fallback
        } else if stale {
            Source::Stale
        } else if ctx.fetched_from_cms {
            Source::Cms
        } else if ctx.fetched {
            Source::Redis
        } else {
            Source::L1
        };
        // A failed render is retried once its note expires, like any cached input.
        let retry_at = now + lcf.cache_ttl_ms();
        let give_up = |rt: &mut worker::Runtime, id: u64| {
            Step::FallbackFailed(
                rt.unlogged_broken(id)
                    .map(|b| format!("{} failed: {}; no earlier version renders", b.what, b.cause)),
            )
        };
        let outcome = match &lcf.template {
            Some(template) => resolve_dimensions(template, &dimensions, now, &ask, &mut inputs),
            None => resolve(key, now, &ask, &mut inputs),
        };
        break match outcome {
            // The failure was logged once for the fetch (or when the source was marked down).
            Outcome::Need(_) if stale => Step::Unavailable,
            Outcome::Need(_) if rt.source_down(now) => {
                stale = true;
                continue;
            }
            Outcome::Need(fetches) => match rt.request(fetches, r) {
                Ok(()) => Step::Suspend,
                Err(()) => Step::Failed(
                    HTTP_SERVICE_UNAVAILABLE,
                    "fetch threads are not running".into(),
                ),
            },
            Outcome::NotFound(_) | Outcome::Broken { .. } if falling_back => {
                if ctx.fallback.advance() {
                    continue;
                }
                give_up(rt, ctx.fallback.id)
            }
            Outcome::NotFound(cause) => Step::NotFound(cause),
            Outcome::Broken {
                version,
                template,
                cause,
            } => {
                let id = broken_id(key, version, template.as_ref());
                let what = describe_inputs(version, template.as_ref());
                rt.note_broken(id, now, retry_at, what, cause);
                let variant = match version {
                    Some(Field::Version(_)) | None => Variant::Production,
                    Some(_) => Variant::Gray,
                };
                let stages = fallback_stages(variant, version, template.map(|(_, f)| f));
                ctx.fallback = Fallback::start(id, &stages);
                if ctx.fallback.active() {
                    continue;
                }
                give_up(rt, id)
            }
            Outcome::Ready(page) => {
                // Per location too: whether an output fails depends on its dynpage_guard.
                let render_id = dynpage_core::version::Fnv::default()
                    .write_u64(page.etag)
                    .write_u64(lcf as *const LocConf as u64)
                    .finish();
                // Inputs that failed to render are not rendered again until the TTL passes
                // (a fallback stage's inputs included).
                if rt.known_broken(render_id, now) {
                    if falling_back {
                        if ctx.fallback.advance() {
                            continue;
                        }
                        break give_up(rt, ctx.fallback.id);
                    }
                    ctx.fallback = Fallback::start(render_id, &page_fallback(&page));
                    if ctx.fallback.active() {
                        continue;
                    }
                    break give_up(rt, render_id);
                }
                // Modules that failed for these inputs before are left out from the start.
                let inputs_id = Fnv::default()
                    .write_u64(render_id)
                    .write_u64(request_hash)
                    .finish();
                let known_failed = if skip_failed_modules {
                    known_failed_modules(inputs_id, now)
                } else {
                    Vec::new()
                };
                // The ETag names the output: the versions, the `dynpage_var` values and what
                // is left out (so a 304 or an If-Range never pairs another output's bytes).
                let vars_hash = (!lcf.vars().is_empty()).then_some(request_hash);
                let etag = output_etag(page.etag, vars_hash, &known_failed, &[]);
                if if_none_match.is_some_and(|v| dynpage_core::etag::etag_matches(v, &etag)) {
                    break Step::Respond(
                        Response::not_modified(&page, etag, source),
                        None,
                        Vec::new(),
                    );
                }
                rt.body.clear();
                let mut skipped = Vec::new();
                let options = RenderOptions {
                    limits: lcf.render_limits(),
                    skip_failed_modules,
                    known_failed_modules: &known_failed,
                };
                let rendered = match page.skipped_modules.first() {
                    Some(m) if !skip_failed_modules => Err(format!(
                        "module \"{}\" failed: {}",
                        m.name.escape_debug(),
                        m.cause
                    )),
                    _ => {
                        let result = page
                            .render_with(request.as_ref(), &options, &mut rt.body, &mut skipped)
                            .map_err(|e| e.to_string());
                        log_render(r, key, &page, 1 + skipped.len(), known_failed.len());
                        result
                    }
                }
                .and_then(|()| lcf.guard().map_or(Ok(()), |g| g.check(&rt.body)));
                let etag = if skipped.is_empty() {
                    etag
                } else {
                    let newly: Vec<&str> = skipped.iter().map(|m| m.name.as_str()).collect();
                    output_etag(page.etag, vars_hash, &known_failed, &newly)
                };
                if !skipped.is_empty() {
                    let mut failed = known_failed;
                    failed.extend(skipped.iter().map(|m| m.name.clone()));
                    note_failed_modules(inputs_id, now, retry_at, failed);
                }
                let left_out = if rendered.is_ok()
                    && (!skipped.is_empty()
                        || !page.skipped_modules.is_empty()
                        || !page.bad_dimensions.is_empty())
                    && rt.first_notice(render_id)
                {
                    left_out_lines(&page, &skipped)
                } else {
                    Vec::new()
                };
                match rendered {
                    Ok(()) if falling_back => {
                        let alert = rt.unlogged_broken(ctx.fallback.id).map(|b| {
                            format!(
                                "{} failed: {}; serving {} instead",
                                b.what,
                                b.cause,
                                describe_inputs(page.page_field(), page.template_field.as_ref())
                            )
                        });
                        Step::Respond(Response::ok(&page, etag, source), alert, left_out)
                    }
                    Ok(()) => Step::Respond(Response::ok(&page, etag, source), None, left_out),
                    Err(cause) if falling_back => {
                        let what = describe_inputs(page.page_field(), page.template_field.as_ref());
                        rt.note_broken(render_id, now, retry_at, what, cause);
                        if ctx.fallback.advance() {
                            continue;
                        }
                        give_up(rt, ctx.fallback.id)
                    }
                    Err(cause) => {
                        let what = describe_inputs(page.page_field(), page.template_field.as_ref());
                        rt.note_broken(render_id, now, retry_at, what, cause);
                        ctx.fallback = Fallback::start(render_id, &page_fallback(&page));
                        if ctx.fallback.active() {
                            continue;
                        }
                        give_up(rt, render_id)
                    }
                }
            }
        };
    });
    ctx.fetch_failed = stale;
    match step {
        None => {
            log_request(
                r,
                NGX_LOG_ERR,
                &format!(
                    "dynpage: page \"{}\": no source is running",
                    key.escape_debug()
                ),
            );
            HTTP_SERVICE_UNAVAILABLE
        }
        Some(Step::Unavailable) => {
            serve_stale_output(r, lcf, ctx, if_none_match, now).unwrap_or(HTTP_SERVICE_UNAVAILABLE)
        }
        Some(Step::Suspend) => {
            suspend(r, ctx);
            NGX_DONE as ngx_int_t
        }
        Some(Step::NotFound(cause)) => {
            log_request(
                r,
                NGX_LOG_INFO,
                &format!(
                    "dynpage: page \"{}\" not found: {cause}",
                    key.escape_debug()
                ),
            );
            HTTP_NOT_FOUND
        }
        Some(Step::Failed(status, cause)) => {
            log_request(
                r,
                NGX_LOG_ERR,
                &format!("dynpage: page \"{}\" {cause}", key.escape_debug()),
            );
            status
        }
        Some(Step::FallbackFailed(line)) => {
            if let Some(line) = line {
                log_request(
                    r,
                    NGX_LOG_ERR,
                    &format!("dynpage: page \"{}\" {line}", key.escape_debug()),
                );
            }
            HTTP_INTERNAL_SERVER_ERROR
        }
        Some(Step::Respond(resp, alert, left_out)) => {
            if let Some(line) = alert {
                log_request(
                    r,
                    NGX_LOG_ALERT,
                    &format!("dynpage: page \"{}\" {line}", key.escape_debug()),
                );
            }
            for line in left_out {
                log_request(
                    r,
                    NGX_LOG_WARN,
                    &format!("dynpage: page \"{}\": {line}", key.escape_debug()),
                );
            }
            ctx.served.set(resp.variant, resp.field, resp.source);
            let body = worker::with(|rt| {
                keep_for_stale(rt, lcf, ctx, &resp, now);
                response::copy_body(r, &rt.body)
            })
            .flatten();
            send(r, lcf, resp, body)
        }
    }
}

/// The ETag of an output: the inputs' (`page_etag`) alone when nothing else changes the bytes,
/// else mixed with the `dynpage_var` values and the names of the modules left out.
fn output_etag(
    page_etag: u64,
    vars_hash: Option<u64>,
    known_failed: &[String],
    newly_failed: &[&str],
) -> dynpage_core::etag::EtagBuf {
    if vars_hash.is_none() && known_failed.is_empty() && newly_failed.is_empty() {
        return dynpage_core::etag::etag_value(page_etag);
    }
    let mut names: Vec<&str> = known_failed.iter().map(String::as_str).collect();
    names.extend_from_slice(newly_failed);
    names.sort_unstable();
    names.dedup();
    let mut h = Fnv::default();
    h.write_u64(page_etag).write_u64(vars_hash.unwrap_or(0));
    for n in names {
        h.write_u64(n.len() as u64).write(n.as_bytes());
    }
    dynpage_core::etag::etag_value(h.finish())
}

/// What determines this request's production output besides the versions (see
/// `dynpage_core::stale_store::identity`).
fn output_identity(lcf: &LocConf, ctx: &ReqCtx) -> Identity {
    // SAFETY: `ctx.data_keys` and `ctx.vars` were filled by `eval_all` with one string per
    // declaration, in the request pool.
    let (data_keys, vars) = unsafe {
        (
            pool_strs(ctx.data_keys, lcf.data.len()),
            pool_strs(ctx.vars, lcf.vars().len()),
        )
    };
    dynpage_core::stale_store::identity(
        lcf.output_fingerprint,
        lcf.template.as_deref(),
        ctx.key.as_bytes(),
        data_keys.iter().map(|k| k.as_bytes()),
        vars.iter().map(|v| v.as_bytes()),
    )
}

/// Keeps a production output rendered from current inputs in the shared zone, so that it
/// still serves stale after a reload or a worker crash while no source answers.
fn keep_for_stale(
    rt: &mut worker::Runtime,
    lcf: &LocConf,
    ctx: &ReqCtx,
    resp: &Response,
    now: u64,
) {
    let current = matches!(resp.source, Source::L1 | Source::Redis | Source::Cms);
    let (Variant::Production, Field::Version(version), true, false) =
        (resp.variant, resp.field, current, resp.not_modified)
    else {
        return;
    };
    let id = output_identity(lcf, ctx);
    let body = std::mem::take(&mut rt.body);
    let stored = Stored {
        check: id.check,
        version,
        last_modified_secs: resp.last_modified_secs,
        etag: resp.etag,
        key: ctx.key.as_bytes(),
        body: &body,
    };
    let refresh_ms = lcf.cache_ttl_ms().max(1000);
    rt.keep_for_stale(id, &stored, now, refresh_ms);
    rt.body = body;
}

/// Serves the last good production output kept in the shared zone, if it was good within
/// `dynpage_stale_ttl`: what a new worker (after a reload or a crash) serves while no source
/// answers and its own cache is empty.
fn serve_stale_output(
    r: *mut ngx_http_request_t,
    lcf: &LocConf,
    ctx: &mut ReqCtx,
    if_none_match: Option<&[u8]>,
    now: u64,
) -> Option<ngx_int_t> {
    let identity = output_identity(lcf, ctx);
    let (resp, body) = worker::with(|rt| {
        rt.zone
            .as_ref()?
            .recall(identity, lcf.stale_ttl_ms(), now, |s| {
                let not_modified =
                    if_none_match.is_some_and(|v| dynpage_core::etag::etag_matches(v, &s.etag));
                let resp = Response {
                    not_modified,
                    etag: s.etag,
                    last_modified_secs: s.last_modified_secs,
                    variant: Variant::Production,
                    field: Field::Version(s.version),
                    source: Source::Stale,
                };
                let body = if not_modified {
                    None
                } else {
                    response::copy_body(r, s.body)
                };
                (resp, body)
            })
    })
    .flatten()?;
    ctx.served.set(resp.variant, resp.field, resp.source);
    Some(send(r, lcf, resp, body))
}

fn send(
    r: *mut ngx_http_request_t,
    lcf: &LocConf,
    resp: Response,
    body: Option<*mut ngx_buf_t>,
) -> ngx_int_t {
    if resp.not_modified {
        return response::send(r, lcf, &resp, ptr::null_mut());
    }
    match body {
        Some(b) => response::send(r, lcf, &resp, b),
        None => HTTP_INTERNAL_SERVER_ERROR,
    }
}

fn suspend(r: *mut ngx_http_request_t, ctx: &mut ReqCtx) {
    let wait_ms = worker::with(|rt| rt.wait_limit_ms).unwrap_or(1000);
    // SAFETY: live request. count/blocked keep nginx from freeing it while we hold it (the
    // content phase's NGX_DONE finalize consumes the count we add). The timer lives in the
    // request pool's ctx and is deleted before the request is finalized.
    unsafe {
        let main = &mut *(*r).main;
        main.set_count(main.count() + 1);
        main.set_blocked(main.blocked() + 1);
        ctx.timer.handler = Some(on_wait_timeout);
        ctx.timer.data = r.cast();
        ctx.timer.log = (*(*r).connection).log;
        ngx_add_timer(&mut ctx.timer, wait_ms as _);
    }
}

/// Called on the event loop when a fetch `r` waited for is done.
pub fn resume(r: *mut ngx_http_request_t, answer: Answer) {
    // SAFETY: `r` was suspended with blocked > 0, so nginx kept it alive; we are on the worker
    // thread. Its ctx was set in `content_handler`.
    unsafe {
        let ctx = &mut *ctx_of(r);
        if ctx.timer.timer_set() != 0 {
            ngx_del_timer(&mut ctx.timer);
        }
        ctx.fetched = true;
        ctx.fetched_from_cms |= answer == Answer::Cms;
        ctx.fetch_failed |= answer == Answer::Failed;
        let main = &mut *(*r).main;
        main.set_blocked(main.blocked() - 1);
        let c = (*r).connection;
        let rc = if (*c).error() != 0 {
            HTTP_CLIENT_CLOSED_REQUEST
        } else {
            run_guarded(r, ctx, "resuming a request")
        };
        ngx_http_finalize_request(r, rc);
        ngx_http_run_posted_requests(c);
    }
}

/// `run` for a resumed request, a panic answered with 500 (the request is still finalized).
fn run_guarded(r: *mut ngx_http_request_t, ctx: &mut ReqCtx, what: &str) -> ngx_int_t {
    crate::ffi_guard::catch_request(
        r,
        what,
        || key_for_log(r),
        HTTP_INTERNAL_SERVER_ERROR,
        || {
            // SAFETY: `r` is a live request (suspended by us, kept alive by `blocked`).
            match loc_conf(unsafe { &*r }) {
                Some(lcf) => run(r, lcf, ctx),
                None => HTTP_INTERNAL_SERVER_ERROR,
            }
        },
    )
}

unsafe extern "C" fn on_wait_timeout(ev: *mut ngx_event_t) {
    // SAFETY: the timer's data is the suspended request (see `suspend`), still alive; its ctx
    // was set in `content_handler`.
    unsafe {
        let r = (*ev).data.cast::<ngx_http_request_t>();
        // Only this request gives up: what failed (a source, or one document) is charged by
        // the fetch thread, whose round trips end within the timeout.
        worker::with(|rt| rt.forget(r));
        let ctx = &mut *ctx_of(r);
        let main = &mut *(*r).main;
        main.set_blocked(main.blocked() - 1);
        // Serve stale inputs if there are any, else 503.
        ctx.fetch_failed = true;
        let rc = run_guarded(r, ctx, "the wait timer");
        if rc == HTTP_SERVICE_UNAVAILABLE {
            log_request(
                r,
                NGX_LOG_ERR,
                &format!(
                    "dynpage: page \"{}\" timed out waiting for its sources",
                    String::from_utf8_lossy(ctx.key.as_bytes()).escape_debug()
                ),
            );
        }
        let c = (*r).connection;
        ngx_http_finalize_request(r, rc);
        ngx_http_run_posted_requests(c);
    }
}
