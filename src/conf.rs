//! Directives: the command table, the configuration structs and their handlers.

use std::ffi::{c_char, c_void};
use std::ptr;

use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::ffi::{
    ngx_command_t, ngx_conf_t, ngx_http_compile_complex_value, ngx_http_compile_complex_value_t,
    ngx_http_complex_value_t, ngx_msec_t, ngx_parse_size, ngx_parse_time, ngx_pcalloc, ngx_str_t,
    ngx_uint_t, NGX_CONF_1MORE, NGX_CONF_FLAG, NGX_CONF_TAKE1, NGX_CONF_TAKE12, NGX_CONF_TAKE2,
    NGX_CONF_TAKE23, NGX_HTTP_LOC_CONF, NGX_HTTP_LOC_CONF_OFFSET, NGX_HTTP_MAIN_CONF,
    NGX_HTTP_MAIN_CONF_OFFSET, NGX_HTTP_SRV_CONF, NGX_LOG_EMERG,
};
use ngx::http::HttpModuleLocationConf;
use ngx::http::{HttpModule, HttpModuleMainConf, Merge, MergeConfigError, NgxHttpCoreModule};
use ngx::{ngx_conf_log_error, ngx_string};

use dynpage_core::cidr::AllowList;
use dynpage_core::guard::Guard;
use dynpage_core::layout::{DEFAULT_PREFIX, MAX_NAME_LEN};
use dynpage_core::limits::{Limits, DEFAULT_MAX_OUTPUT};
use dynpage_core::media_type::{self, ContentType};

use crate::Module;

/// Default `dynpage_redis_timeout`.
pub const DEFAULT_REDIS_TIMEOUT_MS: ngx_msec_t = 100;
/// Default `dynpage_cache_ttl`.
pub const DEFAULT_CACHE_TTL_MS: u64 = 1000;
/// Default `dynpage_cache_size` (per worker).
pub const DEFAULT_CACHE_SIZE: usize = 64 * 1024 * 1024;
/// Default `dynpage_stale_ttl`.
pub const DEFAULT_STALE_TTL_MS: u64 = 10 * 60 * 1000;
/// Default `dynpage_max_age`.
pub const DEFAULT_MAX_AGE_SECS: u64 = 5;

/// http-level settings: the sources and the worker cache.
#[derive(Debug, Default)]
pub struct MainConf {
    /// `dynpage_redis` URLs: the chain, in the order given.
    pub redis: Vec<String>,
    /// `dynpage_cms` URL: the last resort when no Redis answers.
    pub cms: Option<String>,
    pub redis_timeout: Option<ngx_msec_t>,
    pub prefix: Option<String>,
    /// The largest `dynpage_cache_size` configured at any level: the worker cache's bound.
    pub cache_size: Option<usize>,
    /// The directive of the first location that serves pages (then a source is required).
    pub used_by: Option<String>,
    /// `dynpage_zone_size`.
    pub zone_size: Option<usize>,
    /// The shared zone, added once a location serves pages.
    pub zone: Option<std::ptr::NonNull<ngx::ffi::ngx_shm_zone_t>>,
}

impl MainConf {
    pub fn redis_timeout_ms(&self) -> ngx_msec_t {
        self.redis_timeout.unwrap_or(DEFAULT_REDIS_TIMEOUT_MS)
    }

    /// How many sources a miss may go through (each may take the timeout).
    pub fn chain_len(&self) -> usize {
        self.redis.len() + usize::from(self.cms.is_some())
    }

    pub fn prefix(&self) -> &str {
        self.prefix.as_deref().unwrap_or(DEFAULT_PREFIX)
    }

    pub fn cache_size(&self) -> usize {
        self.cache_size.unwrap_or(DEFAULT_CACHE_SIZE)
    }

    pub fn zone_size(&self) -> usize {
        self.zone_size.unwrap_or(crate::zone::DEFAULT_ZONE_SIZE)
    }
}

/// One `dynpage_data` declaration.
#[derive(Debug)]
pub struct DataDecl {
    /// The dimension's name in the template.
    pub name: String,
    /// Its data key (a complex value).
    pub key: *mut ngx_http_complex_value_t,
    pub required: bool,
}

/// One `dynpage_var` declaration.
#[derive(Debug, Clone)]
pub struct VarDecl {
    /// `request.<name>` in templates.
    pub name: String,
    pub value: *mut ngx_http_complex_value_t,
}

/// Location-level settings (inherited http → server → location where the context allows).
#[derive(Debug)]
pub struct LocConf {
    /// `dynpage_page` key (a complex value); not inherited.
    pub page: *mut ngx_http_complex_value_t,
    /// `dynpage_template`: the template of dimension mode; not inherited.
    pub template: Option<String>,
    /// `dynpage_data`, in the order given; not inherited.
    pub data: Vec<DataDecl>,
    /// `dynpage_var`: a level with none inherits its parent's list (like `proxy_set_header`).
    pub vars: Option<Vec<VarDecl>>,
    /// `dynpage_module_errors`: `Some(true)` for `fail`.
    pub module_errors_fail: Option<bool>,
    pub cache_ttl: Option<u64>,
    pub stale_ttl: Option<u64>,
    pub cache_size: Option<usize>,
    /// `dynpage_render_max_size`: bytes one render may write.
    pub render_max_size: Option<usize>,
    /// A hash of the settings that change a page's output (set when merged): part of the
    /// identity of the outputs kept for stale serving, the same across reloads.
    pub output_fingerprint: u64,
    pub max_age: Option<u64>,
    pub content_type: Option<ContentType>,
    pub debug_header: Option<bool>,
    /// `dynpage_predeploy_allow`: a level with its own list replaces the inherited one.
    pub predeploy_allow: Option<AllowList>,
    /// `dynpage_gray_by` (a complex value); null means `$remote_addr`.
    pub gray_by: *mut ngx_http_complex_value_t,
    /// `dynpage_guard`: `Some(None)` is an explicit `off`.
    pub guard: Option<Option<Guard>>,
}

impl Default for LocConf {
    fn default() -> Self {
        LocConf {
            page: ptr::null_mut(),
            template: None,
            data: Vec::new(),
            vars: None,
            module_errors_fail: None,
            predeploy_allow: None,
            gray_by: ptr::null_mut(),
            cache_ttl: None,
            stale_ttl: None,
            cache_size: None,
            render_max_size: None,
            output_fingerprint: 0,
            max_age: None,
            content_type: None,
            debug_header: None,
            guard: None,
        }
    }
}

impl LocConf {
    pub fn cache_ttl_ms(&self) -> u64 {
        self.cache_ttl.unwrap_or(DEFAULT_CACHE_TTL_MS)
    }

    pub fn stale_ttl_ms(&self) -> u64 {
        self.stale_ttl.unwrap_or(DEFAULT_STALE_TTL_MS)
    }

    pub fn max_age_secs(&self) -> u64 {
        self.max_age.unwrap_or(DEFAULT_MAX_AGE_SECS)
    }

    pub fn content_type(&self) -> &ContentType {
        self.content_type.as_ref().unwrap_or(&media_type::HTML_UTF8)
    }

    pub fn debug_header(&self) -> bool {
        self.debug_header.unwrap_or(false)
    }

    /// Whether a module that fails to render fails the page (`dynpage_module_errors fail`)
    /// rather than being left out (the default, `skip`).
    pub fn module_errors_fail(&self) -> bool {
        self.module_errors_fail.unwrap_or(false)
    }

    /// A hash of the settings that change what a page renders to (not of the keys, which the
    /// request gives): the template, the dimensions' names and `required`, the `dynpage_var`
    /// names, `dynpage_module_errors`, `dynpage_guard` and `dynpage_render_max_size`.
    fn fingerprint(&self) -> u64 {
        let mut h = dynpage_core::version::Fnv::default();
        let text = format!(
            "{:?}|{:?}|{:?}|{}|{:?}|{:?}",
            self.template,
            self.data
                .iter()
                .map(|d| (d.name.as_str(), d.required))
                .collect::<Vec<_>>(),
            self.vars()
                .iter()
                .map(|v| v.name.as_str())
                .collect::<Vec<_>>(),
            self.module_errors_fail(),
            self.guard(),
            self.render_max_size,
        );
        h.write(text.as_bytes());
        h.finish()
    }

    /// The `dynpage_var` declarations in effect.
    pub fn vars(&self) -> &[VarDecl] {
        self.vars.as_deref().unwrap_or_default()
    }

    /// The budget of one render: `dynpage_render_max_size`, and the fixed limits.
    pub fn render_limits(&self) -> Limits {
        Limits::with_max_output(self.render_max_size.unwrap_or(DEFAULT_MAX_OUTPUT))
    }

    pub fn guard(&self) -> Option<&Guard> {
        self.guard.as_ref().and_then(Option::as_ref)
    }

    /// Whether a client at `ip` may see pre-release versions (default: nobody).
    pub fn predeploy_allowed(&self, ip: Option<std::net::IpAddr>) -> bool {
        self.predeploy_allow.as_ref().is_some_and(|l| l.allows(ip))
    }
}

fn inherit<T: Clone>(this: &mut Option<T>, prev: &Option<T>) {
    if this.is_none() {
        this.clone_from(prev);
    }
}

impl Merge for LocConf {
    fn merge(&mut self, prev: &LocConf) -> Result<(), MergeConfigError> {
        inherit(&mut self.cache_ttl, &prev.cache_ttl);
        inherit(&mut self.stale_ttl, &prev.stale_ttl);
        inherit(&mut self.cache_size, &prev.cache_size);
        inherit(&mut self.render_max_size, &prev.render_max_size);
        inherit(&mut self.max_age, &prev.max_age);
        inherit(&mut self.content_type, &prev.content_type);
        inherit(&mut self.debug_header, &prev.debug_header);
        inherit(&mut self.predeploy_allow, &prev.predeploy_allow);
        inherit(&mut self.guard, &prev.guard);
        inherit(&mut self.vars, &prev.vars);
        inherit(&mut self.module_errors_fail, &prev.module_errors_fail);
        if self.gray_by.is_null() {
            self.gray_by = prev.gray_by;
        }
        Ok(())
    }
}

const HTTP_ANY: u32 = NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF;

/// A directive handler whose panic is logged at `alert` and fails the configuration, instead
/// of unwinding into nginx.
macro_rules! guarded {
    ($handler:ident) => {{
        unsafe extern "C" fn guarded_handler(
            cf: *mut ngx_conf_t,
            cmd: *mut ngx_command_t,
            conf: *mut c_void,
        ) -> *mut c_char {
            crate::ffi_guard::catch(
                concat!("the handler of ", stringify!($handler)),
                NGX_CONF_ERROR,
                // SAFETY: nginx calls a directive handler with its conf, command and slot.
                || unsafe { $handler(cf, cmd, conf) },
            )
        }
        guarded_handler
    }};
}

const fn command(
    name: ngx_str_t,
    kind: u32,
    set: unsafe extern "C" fn(*mut ngx_conf_t, *mut ngx_command_t, *mut c_void) -> *mut c_char,
    main: bool,
) -> ngx_command_t {
    ngx_command_t {
        name,
        type_: kind as ngx_uint_t,
        set: Some(set),
        conf: if main {
            NGX_HTTP_MAIN_CONF_OFFSET
        } else {
            NGX_HTTP_LOC_CONF_OFFSET
        },
        offset: 0,
        post: ptr::null_mut(),
    }
}

/// The directive table (ends with the empty command).
pub static mut COMMANDS: [ngx_command_t; 21] = [
    command(
        ngx_string!("dynpage_redis"),
        NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1,
        guarded!(set_redis),
        true,
    ),
    command(
        ngx_string!("dynpage_redis_timeout"),
        NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1,
        guarded!(set_redis_timeout),
        true,
    ),
    command(
        ngx_string!("dynpage_cms"),
        NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1,
        guarded!(set_cms),
        true,
    ),
    command(
        ngx_string!("dynpage_prefix"),
        NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1,
        guarded!(set_prefix),
        true,
    ),
    command(
        ngx_string!("dynpage_page"),
        NGX_HTTP_LOC_CONF | NGX_CONF_TAKE1,
        guarded!(set_page),
        false,
    ),
    command(
        ngx_string!("dynpage_template"),
        NGX_HTTP_LOC_CONF | NGX_CONF_TAKE1,
        guarded!(set_template),
        false,
    ),
    command(
        ngx_string!("dynpage_data"),
        NGX_HTTP_LOC_CONF | NGX_CONF_TAKE23,
        guarded!(set_data),
        false,
    ),
    command(
        ngx_string!("dynpage_var"),
        HTTP_ANY | NGX_CONF_TAKE2,
        guarded!(set_var),
        false,
    ),
    command(
        ngx_string!("dynpage_module_errors"),
        HTTP_ANY | NGX_CONF_TAKE1,
        guarded!(set_module_errors),
        false,
    ),
    command(
        ngx_string!("dynpage_cache_ttl"),
        HTTP_ANY | NGX_CONF_TAKE1,
        guarded!(set_cache_ttl),
        false,
    ),
    command(
        ngx_string!("dynpage_stale_ttl"),
        HTTP_ANY | NGX_CONF_TAKE1,
        guarded!(set_stale_ttl),
        false,
    ),
    command(
        ngx_string!("dynpage_cache_size"),
        HTTP_ANY | NGX_CONF_TAKE1,
        guarded!(set_cache_size),
        false,
    ),
    command(
        ngx_string!("dynpage_zone_size"),
        NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1,
        guarded!(set_zone_size),
        true,
    ),
    command(
        ngx_string!("dynpage_render_max_size"),
        HTTP_ANY | NGX_CONF_TAKE1,
        guarded!(set_render_max_size),
        false,
    ),
    command(
        ngx_string!("dynpage_max_age"),
        HTTP_ANY | NGX_CONF_TAKE1,
        guarded!(set_max_age),
        false,
    ),
    command(
        ngx_string!("dynpage_content_type"),
        HTTP_ANY | NGX_CONF_TAKE1,
        guarded!(set_content_type),
        false,
    ),
    command(
        ngx_string!("dynpage_debug_header"),
        HTTP_ANY | NGX_CONF_FLAG,
        guarded!(set_debug_header),
        false,
    ),
    command(
        ngx_string!("dynpage_predeploy_allow"),
        HTTP_ANY | NGX_CONF_1MORE,
        guarded!(set_predeploy_allow),
        false,
    ),
    command(
        ngx_string!("dynpage_guard"),
        HTTP_ANY | NGX_CONF_TAKE12,
        guarded!(set_guard),
        false,
    ),
    command(
        ngx_string!("dynpage_gray_by"),
        HTTP_ANY | NGX_CONF_TAKE1,
        guarded!(set_gray_by),
        false,
    ),
    ngx_command_t::empty(),
];

/// What a directive handler needs, taken from nginx's raw pointers once.
struct Directive<'a> {
    cf: *mut ngx_conf_t,
    name: &'a str,
    args: &'a [ngx_str_t],
}

impl<'a> Directive<'a> {
    /// # Safety
    /// `cf` and `cmd` are the pointers nginx passes to a directive handler.
    unsafe fn new(cf: *mut ngx_conf_t, cmd: *mut ngx_command_t) -> Directive<'a> {
        // SAFETY: nginx passes a live conf whose `args` array holds the directive name and its
        // arguments (the command's NGX_CONF_TAKE*/FLAG flags guarantee their count).
        unsafe {
            Directive {
                cf,
                name: (*cmd).name.to_str().unwrap_or("dynpage"),
                args: (*(*cf).args).as_slice(),
            }
        }
    }

    /// The first argument as UTF-8.
    fn arg(&self) -> Result<&'a str, String> {
        self.args
            .get(1)
            .ok_or_else(|| "missing argument".to_string())?
            .to_str()
            .map_err(|_| "argument is not UTF-8".to_string())
    }

    fn fail(&self, why: &str) -> *mut c_char {
        ngx_conf_log_error!(
            NGX_LOG_EMERG,
            self.cf,
            "\"{}\" directive {}",
            self.name,
            why
        );
        NGX_CONF_ERROR
    }

    fn invalid(&self) -> *mut c_char {
        let value = self.arg().unwrap_or("?");
        self.fail(&format!("has invalid value \"{value}\""))
    }

    fn duplicate(&self) -> *mut c_char {
        self.fail("is duplicate")
    }

    fn main_conf(&self) -> &'a mut MainConf {
        // SAFETY: `cf` is live during configuration and the http block created our main conf.
        Module::main_conf_mut(unsafe { &*self.cf }).expect("dynpage main conf exists in http{}")
    }

    /// Argument `i` as UTF-8.
    fn arg_at(&self, i: usize) -> Result<&'a str, String> {
        self.args
            .get(i)
            .ok_or_else(|| "missing argument".to_string())?
            .to_str()
            .map_err(|_| "argument is not UTF-8".to_string())
    }

    /// Compiles the first argument as a complex value (variables allowed), in the conf pool.
    fn complex_value(&self) -> Option<*mut ngx_http_complex_value_t> {
        self.complex_value_at(1)
    }

    /// Compiles argument `i` as a complex value, in the conf pool.
    fn complex_value_at(&self, i: usize) -> Option<*mut ngx_http_complex_value_t> {
        let mut value = *self.args.get(i)?;
        // SAFETY: `cf` is live; the pool outlives the configuration; the compile struct is
        // zeroed as nginx requires and points at our argument and the new complex value.
        unsafe {
            let cv = ngx_pcalloc(
                (*self.cf).pool,
                std::mem::size_of::<ngx_http_complex_value_t>(),
            )
            .cast::<ngx_http_complex_value_t>();
            if cv.is_null() {
                return None;
            }
            let mut ccv: ngx_http_compile_complex_value_t = std::mem::zeroed();
            ccv.cf = self.cf;
            ccv.value = &mut value;
            ccv.complex_value = cv;
            (ngx_http_compile_complex_value(&mut ccv) == 0).then_some(cv)
        }
    }

    /// An nginx time (`100ms`, `1s`, `10m`) in milliseconds.
    fn time_ms(&self) -> Option<u64> {
        let mut s = *self.args.get(1)?;
        // SAFETY: `s` is a valid ngx_str_t from the conf args; ngx_parse_time only reads it.
        let ms = unsafe { ngx_parse_time(&mut s, 0) };
        u64::try_from(ms).ok()
    }

    /// An nginx size (`512k`, `64m`) in bytes.
    fn size(&self) -> Option<usize> {
        let mut s = *self.args.get(1)?;
        // SAFETY: as in `time_ms`.
        let n = unsafe { ngx_parse_size(&mut s) };
        usize::try_from(n).ok()
    }
}

/// The typed conf struct behind a handler's `conf` pointer.
///
/// # Safety
/// `conf` is the pointer nginx passes for the command's `conf` offset, created for type `T`.
unsafe fn conf_mut<'a, T>(conf: *mut c_void) -> &'a mut T {
    // SAFETY: per the function contract.
    unsafe { &mut *conf.cast::<T>() }
}

unsafe extern "C" fn set_redis(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: called by nginx for a directive of this table, with main-conf offset.
    let (d, mcf) = unsafe { (Directive::new(cf, cmd), conf_mut::<MainConf>(conf)) };
    let Ok(url) = d.arg() else { return d.invalid() };
    let shown = dynpage_core::store::redact_url(url);
    if let Err(e) = dynpage_core::store::check_url(url) {
        return d.fail(&format!("has invalid URL \"{shown}\": {e}"));
    }
    if mcf.redis.iter().any(|u| u == url) {
        return d.fail(&format!("names \"{shown}\" twice"));
    }
    mcf.redis.push(url.to_string());
    NGX_CONF_OK
}

unsafe extern "C" fn set_cms(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: as in `set_redis`.
    let (d, mcf) = unsafe { (Directive::new(cf, cmd), conf_mut::<MainConf>(conf)) };
    if mcf.cms.is_some() {
        return d.duplicate();
    }
    let Ok(url) = d.arg() else { return d.invalid() };
    if let Err(e) = dynpage_core::cms::CmsUrl::parse(url) {
        return d.fail(&format!("has invalid URL \"{url}\": {e}"));
    }
    mcf.cms = Some(url.to_string());
    NGX_CONF_OK
}

unsafe extern "C" fn set_redis_timeout(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: as in `set_redis`.
    let (d, mcf) = unsafe { (Directive::new(cf, cmd), conf_mut::<MainConf>(conf)) };
    if mcf.redis_timeout.is_some() {
        return d.duplicate();
    }
    match d.time_ms() {
        Some(ms) if ms > 0 => mcf.redis_timeout = Some(ms as ngx_msec_t),
        _ => return d.invalid(),
    }
    NGX_CONF_OK
}

unsafe extern "C" fn set_prefix(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: as in `set_redis`.
    let (d, mcf) = unsafe { (Directive::new(cf, cmd), conf_mut::<MainConf>(conf)) };
    if mcf.prefix.is_some() {
        return d.duplicate();
    }
    match d.arg() {
        Ok(p)
            if !p
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) =>
        {
            mcf.prefix = Some(p.to_string())
        }
        _ => return d.invalid(),
    }
    NGX_CONF_OK
}

unsafe extern "C" fn set_page(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: called by nginx for a location-level directive of this table.
    let (d, lcf) = unsafe { (Directive::new(cf, cmd), conf_mut::<LocConf>(conf)) };
    if !lcf.page.is_null() {
        return d.duplicate();
    }
    if lcf.template.is_some() {
        return d.fail("cannot be used with \"dynpage_template\" in the same location");
    }
    if d.args.get(1).is_none_or(|a| a.is_empty()) {
        return d.fail("needs a non-empty key");
    }
    let Some(cv) = d.complex_value() else {
        return NGX_CONF_ERROR;
    };
    lcf.page = cv;
    serve_pages_here(&d)
}

/// Makes the current location's content handler ours.
fn serve_pages_here(d: &Directive<'_>) -> *mut c_char {
    // SAFETY: `cf` is live and inside a location block (the directive's context).
    let Some(clcf) = NgxHttpCoreModule::location_conf_mut(unsafe { &*d.cf }) else {
        return NGX_CONF_ERROR;
    };
    clcf.handler = Some(crate::handler::content_handler);
    let mcf = d.main_conf();
    if mcf.used_by.is_none() {
        mcf.used_by = Some(d.name.to_string());
    }
    NGX_CONF_OK
}

/// Whether `name` can be used as a top-level name in templates: an identifier that is not one
/// of the names every page has.
fn check_template_name(name: &str, what: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let identifier = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !identifier {
        return Err(format!(
            "has invalid {what} \"{name}\": use letters, digits and \"_\", not starting with a digit"
        ));
    }
    if what == "dimension name" && (name == "page" || name == "request") {
        return Err(format!(
            "cannot name a dimension \"{name}\": templates already have \"{name}\""
        ));
    }
    Ok(())
}

unsafe extern "C" fn set_template(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: as in `set_page`.
    let (d, lcf) = unsafe { (Directive::new(cf, cmd), conf_mut::<LocConf>(conf)) };
    if lcf.template.is_some() {
        return d.duplicate();
    }
    if !lcf.page.is_null() {
        return d.fail("cannot be used with \"dynpage_page\" in the same location");
    }
    match d.arg() {
        Ok(name)
            if !name.is_empty()
                && name.len() <= MAX_NAME_LEN
                && !name.bytes().any(|b| b.is_ascii_control()) =>
        {
            lcf.template = Some(name.to_string())
        }
        _ => return d.invalid(),
    }
    serve_pages_here(&d)
}

unsafe extern "C" fn set_data(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: as in `set_page`.
    let (d, lcf) = unsafe { (Directive::new(cf, cmd), conf_mut::<LocConf>(conf)) };
    let Ok(name) = d.arg() else {
        return d.invalid();
    };
    if let Err(e) = check_template_name(name, "dimension name") {
        return d.fail(&e);
    }
    if lcf.data.iter().any(|x| x.name == name) {
        return d.fail(&format!("declares dimension \"{name}\" twice"));
    }
    if d.args.get(2).is_none_or(|a| a.is_empty()) {
        return d.fail(&format!("needs a non-empty key for dimension \"{name}\""));
    }
    let required = match d.args.len() {
        3 => false,
        _ => match d.arg_at(3) {
            Ok("required") => true,
            Ok(other) => {
                return d.fail(&format!(
                    "has invalid parameter \"{other}\": only \"required\" may follow the key"
                ))
            }
            Err(e) => return d.fail(&e),
        },
    };
    let Some(key) = d.complex_value_at(2) else {
        return NGX_CONF_ERROR;
    };
    lcf.data.push(DataDecl {
        name: name.to_string(),
        key,
        required,
    });
    NGX_CONF_OK
}

unsafe extern "C" fn set_var(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: as in `set_page`.
    let (d, lcf) = unsafe { (Directive::new(cf, cmd), conf_mut::<LocConf>(conf)) };
    let Ok(name) = d.arg() else {
        return d.invalid();
    };
    if let Err(e) = check_template_name(name, "name") {
        return d.fail(&e);
    }
    let vars = lcf.vars.get_or_insert_with(Vec::new);
    if vars.iter().any(|v| v.name == name) {
        return d.fail(&format!("declares \"request.{name}\" twice"));
    }
    let Some(value) = d.complex_value_at(2) else {
        return NGX_CONF_ERROR;
    };
    vars.push(VarDecl {
        name: name.to_string(),
        value,
    });
    NGX_CONF_OK
}

unsafe extern "C" fn set_module_errors(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: as in `set_page`.
    let (d, lcf) = unsafe { (Directive::new(cf, cmd), conf_mut::<LocConf>(conf)) };
    if lcf.module_errors_fail.is_some() {
        return d.duplicate();
    }
    match d.arg() {
        Ok("skip") => lcf.module_errors_fail = Some(false),
        Ok("fail") => lcf.module_errors_fail = Some(true),
        _ => return d.fail("must be \"skip\" or \"fail\""),
    }
    NGX_CONF_OK
}

unsafe extern "C" fn set_cache_ttl(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: as in `set_page`.
    let (d, lcf) = unsafe { (Directive::new(cf, cmd), conf_mut::<LocConf>(conf)) };
    if lcf.cache_ttl.is_some() {
        return d.duplicate();
    }
    match d.time_ms() {
        Some(ms) => lcf.cache_ttl = Some(ms),
        None => return d.invalid(),
    }
    NGX_CONF_OK
}

unsafe extern "C" fn set_stale_ttl(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: as in `set_page`.
    let (d, lcf) = unsafe { (Directive::new(cf, cmd), conf_mut::<LocConf>(conf)) };
    if lcf.stale_ttl.is_some() {
        return d.duplicate();
    }
    match d.time_ms() {
        Some(ms) => lcf.stale_ttl = Some(ms),
        None => return d.invalid(),
    }
    NGX_CONF_OK
}

unsafe extern "C" fn set_cache_size(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: as in `set_page`.
    let (d, lcf) = unsafe { (Directive::new(cf, cmd), conf_mut::<LocConf>(conf)) };
    if lcf.cache_size.is_some() {
        return d.duplicate();
    }
    match d.size() {
        Some(n) if n >= 64 * 1024 => {
            lcf.cache_size = Some(n);
            let mcf = d.main_conf();
            mcf.cache_size = Some(mcf.cache_size.map_or(n, |m| m.max(n)));
        }
        Some(_) => return d.fail("is too small: the minimum is 64k"),
        None => return d.invalid(),
    }
    NGX_CONF_OK
}

unsafe extern "C" fn set_zone_size(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: as in `set_redis`.
    let (d, mcf) = unsafe { (Directive::new(cf, cmd), conf_mut::<MainConf>(conf)) };
    if mcf.zone_size.is_some() {
        return d.duplicate();
    }
    match d.size() {
        Some(n) if n >= crate::zone::MIN_ZONE_SIZE => mcf.zone_size = Some(n),
        Some(_) => return d.fail("is too small: the minimum is 1m"),
        None => return d.invalid(),
    }
    NGX_CONF_OK
}

unsafe extern "C" fn set_render_max_size(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: as in `set_page`.
    let (d, lcf) = unsafe { (Directive::new(cf, cmd), conf_mut::<LocConf>(conf)) };
    if lcf.render_max_size.is_some() {
        return d.duplicate();
    }
    match d.size() {
        Some(n) if n > 0 => lcf.render_max_size = Some(n),
        _ => return d.invalid(),
    }
    NGX_CONF_OK
}

unsafe extern "C" fn set_max_age(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: as in `set_page`.
    let (d, lcf) = unsafe { (Directive::new(cf, cmd), conf_mut::<LocConf>(conf)) };
    if lcf.max_age.is_some() {
        return d.duplicate();
    }
    let mut s = match d.args.get(1) {
        Some(s) => *s,
        None => return d.invalid(),
    };
    // SAFETY: `s` is a valid ngx_str_t from the conf args; ngx_parse_time only reads it.
    let secs = unsafe { ngx_parse_time(&mut s, 1) };
    match u64::try_from(secs) {
        Ok(secs) => lcf.max_age = Some(secs),
        Err(_) => return d.invalid(),
    }
    NGX_CONF_OK
}

unsafe extern "C" fn set_content_type(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: as in `set_page`.
    let (d, lcf) = unsafe { (Directive::new(cf, cmd), conf_mut::<LocConf>(conf)) };
    if lcf.content_type.is_some() {
        return d.duplicate();
    }
    match d.arg().ok().and_then(ContentType::parse) {
        Some(t) => lcf.content_type = Some(t),
        None => return d.invalid(),
    }
    NGX_CONF_OK
}

unsafe extern "C" fn set_debug_header(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: as in `set_page`.
    let (d, lcf) = unsafe { (Directive::new(cf, cmd), conf_mut::<LocConf>(conf)) };
    if lcf.debug_header.is_some() {
        return d.duplicate();
    }
    match d.arg() {
        Ok(v) if v.eq_ignore_ascii_case("on") => lcf.debug_header = Some(true),
        Ok(v) if v.eq_ignore_ascii_case("off") => lcf.debug_header = Some(false),
        _ => return d.fail("must be \"on\" or \"off\""),
    }
    NGX_CONF_OK
}

unsafe extern "C" fn set_guard(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: as in `set_page`.
    let (d, lcf) = unsafe { (Directive::new(cf, cmd), conf_mut::<LocConf>(conf)) };
    if lcf.guard.is_some() {
        return d.duplicate();
    }
    let mut args = Vec::new();
    for a in d.args.iter().skip(1) {
        match a.to_str() {
            Ok(s) => args.push(s),
            Err(_) => return d.invalid(),
        }
    }
    match Guard::parse(&args) {
        Ok(g) => lcf.guard = Some(g),
        Err(e) => return d.fail(&e),
    }
    NGX_CONF_OK
}

unsafe extern "C" fn set_predeploy_allow(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: as in `set_page`.
    let (d, lcf) = unsafe { (Directive::new(cf, cmd), conf_mut::<LocConf>(conf)) };
    let list = lcf.predeploy_allow.get_or_insert_with(AllowList::default);
    for arg in &d.args[1..] {
        let Ok(arg) = arg.to_str() else {
            return d.fail("has an argument that is not UTF-8");
        };
        if let Err(e) = list.add(arg) {
            return d.fail(&format!("has invalid value: {e}"));
        }
    }
    NGX_CONF_OK
}

unsafe extern "C" fn set_gray_by(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: as in `set_page`.
    let (d, lcf) = unsafe { (Directive::new(cf, cmd), conf_mut::<LocConf>(conf)) };
    if !lcf.gray_by.is_null() {
        return d.duplicate();
    }
    if d.args.get(1).is_none_or(|a| a.is_empty()) {
        return d.fail("needs a non-empty value");
    }
    match d.complex_value() {
        Some(cv) => lcf.gray_by = cv,
        None => return NGX_CONF_ERROR,
    }
    NGX_CONF_OK
}

/// Checks the http block as a whole once it is parsed.
pub unsafe extern "C" fn init_main_conf(cf: *mut ngx_conf_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: nginx passes the configuration and our main conf.
    crate::ffi_guard::catch("init_main_conf", NGX_CONF_ERROR, || unsafe {
        check_main_conf(cf, conf)
    })
}

/// Checks the http-level conf as a whole.
///
/// # Safety
/// `cf` is the configuration being read; `conf` our main conf, created by `create_main_conf`.
unsafe fn check_main_conf(cf: *mut ngx_conf_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: per the contract.
    let mcf = unsafe { conf_mut::<MainConf>(conf) };
    if let (Some(directive), true) = (&mcf.used_by, mcf.redis.is_empty()) {
        ngx_conf_log_error!(
            NGX_LOG_EMERG,
            cf,
            "\"{}\" is used but no \"dynpage_redis\" source is configured",
            directive
        );
        return NGX_CONF_ERROR;
    }
    if mcf.used_by.is_some() {
        // SAFETY: `cf` is the configuration being read.
        mcf.zone = unsafe { crate::zone::add(cf, mcf.zone_size()) };
        if mcf.zone.is_none() {
            return NGX_CONF_ERROR;
        }
    }
    NGX_CONF_OK
}

/// Merges a location's conf with its parent's, then checks the location as a whole.
pub unsafe extern "C" fn merge_loc_conf(
    cf: *mut ngx_conf_t,
    prev: *mut c_void,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx passes the configuration and the parent's and this level's confs.
    crate::ffi_guard::catch("merge_loc_conf", NGX_CONF_ERROR, || unsafe {
        merge_and_check(cf, prev, conf)
    })
}

/// Merges a location's conf with its parent's and checks the result.
///
/// # Safety
/// `cf` is the configuration being read; `prev` and `conf` are our location confs.
unsafe fn merge_and_check(
    cf: *mut ngx_conf_t,
    prev: *mut c_void,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: per the contract.
    let rc = unsafe { Module::merge_loc_conf(cf, prev, conf) };
    if rc != NGX_CONF_OK {
        return rc;
    }
    // SAFETY: as above.
    let lcf = unsafe { conf_mut::<LocConf>(conf) };
    if !lcf.data.is_empty() && lcf.template.is_none() {
        ngx_conf_log_error!(
            NGX_LOG_EMERG,
            cf,
            "\"dynpage_data\" needs \"dynpage_template\" in the same location"
        );
        return NGX_CONF_ERROR;
    }
    lcf.output_fingerprint = lcf.fingerprint();
    NGX_CONF_OK
}

/// The location conf of a request.
pub fn loc_conf(r: &ngx::ffi::ngx_http_request_t) -> Option<&'static LocConf> {
    Module::location_conf(r)
}
