//! The configuration: the http-level and location-level structs, their defaults, merge and
//! checks. The directives that fill them are in `directives`.

use std::ffi::{c_char, c_void};
use std::ptr;

use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::ffi::{ngx_conf_t, ngx_http_complex_value_t, ngx_msec_t, ngx_shm_zone_t, NGX_LOG_EMERG};
use ngx::http::{Merge, MergeConfigError};
use ngx::ngx_conf_log_error;

use dynpage_core::cidr::AllowList;
use dynpage_core::guard::Guard;
use dynpage_core::layout::DEFAULT_PREFIX;
use dynpage_core::limits::{Limits, DEFAULT_MAX_OUTPUT};
use dynpage_core::media_type::{self, ContentType};

/// Default `dynpage_redis_timeout`.
pub const DEFAULT_REDIS_TIMEOUT_MS: ngx_msec_t = 100;
/// Default `dynpage_cache_ttl`.
pub const DEFAULT_CACHE_TTL_MS: u64 = 1000;
/// Default `dynpage_cache_size` (per worker).
pub const DEFAULT_CACHE_SIZE: usize = 64 * 1024 * 1024;
/// Default `dynpage_output_cache_size` (per worker).
pub const DEFAULT_OUTPUT_CACHE_SIZE: usize = 32 * 1024 * 1024;
/// Default `dynpage_fetch_threads`.
pub const DEFAULT_FETCH_THREADS: usize = 2;
/// Most `dynpage_fetch_threads`.
pub const MAX_FETCH_THREADS: usize = 64;
/// Default `dynpage_zone_size`.
pub const DEFAULT_ZONE_SIZE: usize = 32 * 1024 * 1024;
/// Smallest `dynpage_zone_size`.
pub const MIN_ZONE_SIZE: usize = 1024 * 1024;
/// Default `dynpage_stale_ttl`.
pub const DEFAULT_STALE_TTL_MS: u64 = 10 * 60 * 1000;
/// Default `dynpage_max_age`.
pub const DEFAULT_MAX_AGE_SECS: u64 = 5;
/// Default `dynpage_gzip_comp_level`: zlib's own default. An output is compressed once, so a
/// better ratio than nginx's per-response `gzip_comp_level 1` is worth its cost.
pub const DEFAULT_GZIP_COMP_LEVEL: u32 = 6;
/// Default `dynpage_brotli_comp_level`: ngx_brotli's `brotli_comp_level` default. Higher ones
/// cost much more for little (on the benchmark's page: 0.45 ms at 6, 6 ms at 9, 110 ms at 11),
/// and an output is compressed on the event loop.
pub const DEFAULT_BROTLI_COMP_LEVEL: u32 = 6;

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
    /// `dynpage_output_cache_size`: each worker's bound for kept outputs.
    pub output_cache_size: Option<usize>,
    /// The shared zone, added once a location serves pages or `dynpage_status`.
    pub zone: Option<ptr::NonNull<ngx_shm_zone_t>>,
    /// A location has `dynpage_status` (then the zone holding the counters is added).
    pub status_used: bool,
    /// `dynpage_counters`: whether requests are counted for `dynpage_status` (default on).
    pub counters: Option<bool>,
    /// `dynpage_fetch_threads`: each worker's fetch threads.
    pub fetch_threads: Option<usize>,
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

    pub fn output_cache_size(&self) -> usize {
        self.output_cache_size.unwrap_or(DEFAULT_OUTPUT_CACHE_SIZE)
    }

    pub fn fetch_threads(&self) -> usize {
        self.fetch_threads.unwrap_or(DEFAULT_FETCH_THREADS)
    }

    pub fn counters(&self) -> bool {
        self.counters.unwrap_or(true)
    }

    pub fn zone_size(&self) -> usize {
        self.zone_size.unwrap_or(DEFAULT_ZONE_SIZE)
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
    /// Whether `dynpage_cache_size` was given at this level (only to refuse it twice: its
    /// value goes to `MainConf::cache_size`, the worker cache's bound).
    pub cache_size_given: bool,
    /// `dynpage_render_max_size`: bytes one render may write.
    pub render_max_size: Option<usize>,
    /// A hash of the settings that change a page's output (set when merged): part of the
    /// identity of the outputs kept for stale serving, the same across reloads.
    pub output_fingerprint: u64,
    pub max_age: Option<u64>,
    /// `public, max-age=<dynpage_max_age>`, written when merged: a production response's
    /// Cache-Control, not formatted per request.
    pub public_cache_control: String,
    pub content_type: Option<ContentType>,
    pub debug_header: Option<bool>,
    /// `dynpage_output_cache`: whether outputs are kept and served here.
    pub output_cache: Option<bool>,
    /// `dynpage_gzip`: whether kept outputs are served gzip-compressed to clients that take it.
    pub gzip: Option<bool>,
    /// `dynpage_gzip_comp_level`, 1–9.
    pub gzip_comp_level: Option<u32>,
    /// `dynpage_brotli`: the same with brotli.
    pub brotli: Option<bool>,
    /// `dynpage_brotli_comp_level`, 0–11.
    pub brotli_comp_level: Option<u32>,
    /// `dynpage_predeploy_allow`: a level with its own list replaces the inherited one.
    pub predeploy_allow: Option<AllowList>,
    /// `dynpage_gray_by` (a complex value); null means `$remote_addr`.
    pub gray_by: *mut ngx_http_complex_value_t,
    /// `dynpage_guard`: `Some(None)` is an explicit `off`.
    pub guard: Option<Option<Guard>>,
    /// `dynpage_status` is in this location; not inherited.
    pub status: bool,
    /// `dynpage_background_update`.
    pub background_update: Option<bool>,
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
            cache_size_given: false,
            render_max_size: None,
            output_fingerprint: 0,
            max_age: None,
            public_cache_control: String::new(),
            content_type: None,
            debug_header: None,
            output_cache: None,
            gzip: None,
            gzip_comp_level: None,
            brotli: None,
            brotli_comp_level: None,
            guard: None,
            status: false,
            background_update: None,
        }
    }
}

impl LocConf {
    pub fn cache_ttl_ms(&self) -> u64 {
        self.cache_ttl.unwrap_or(DEFAULT_CACHE_TTL_MS)
    }

    /// How long past its TTL an entry serves while one background fetch refreshes it:
    /// `dynpage_cache_ttl` again with `dynpage_background_update on`, else 0.
    pub fn background_update_ms(&self) -> u64 {
        if self.background_update.unwrap_or(false) {
            self.cache_ttl_ms()
        } else {
            0
        }
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

    pub fn output_cache(&self) -> bool {
        self.output_cache.unwrap_or(true)
    }

    pub fn gzip(&self) -> bool {
        self.gzip.unwrap_or(false)
    }

    pub fn gzip_comp_level(&self) -> u32 {
        self.gzip_comp_level.unwrap_or(DEFAULT_GZIP_COMP_LEVEL)
    }

    pub fn brotli(&self) -> bool {
        self.brotli.unwrap_or(false)
    }

    pub fn brotli_comp_level(&self) -> u32 {
        self.brotli_comp_level.unwrap_or(DEFAULT_BROTLI_COMP_LEVEL)
    }

    /// Whether responses here vary by Accept-Encoding (`dynpage_gzip` or `dynpage_brotli`).
    pub fn compresses(&self) -> bool {
        self.gzip() || self.brotli()
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
        inherit(&mut self.render_max_size, &prev.render_max_size);
        inherit(&mut self.max_age, &prev.max_age);
        inherit(&mut self.content_type, &prev.content_type);
        inherit(&mut self.debug_header, &prev.debug_header);
        inherit(&mut self.output_cache, &prev.output_cache);
        inherit(&mut self.gzip, &prev.gzip);
        inherit(&mut self.gzip_comp_level, &prev.gzip_comp_level);
        inherit(&mut self.brotli, &prev.brotli);
        inherit(&mut self.brotli_comp_level, &prev.brotli_comp_level);
        inherit(&mut self.background_update, &prev.background_update);
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

impl MainConf {
    /// Whether the http block as a whole holds together once it is parsed (an emerg logged when
    /// not).
    pub fn check(&self, cf: &mut ngx_conf_t) -> bool {
        if let (Some(directive), true) = (&self.used_by, self.redis.is_empty()) {
            ngx_conf_log_error!(
                NGX_LOG_EMERG,
                ptr::from_mut(cf),
                "\"{}\" is used but no \"dynpage_redis\" source is configured",
                directive
            );
            return false;
        }
        true
    }

    /// Whether the shared zone is wanted: a location serves pages or `dynpage_status`.
    pub fn needs_zone(&self) -> bool {
        self.used_by.is_some() || self.status_used
    }
}

/// Merges a location's conf with its parent's, then checks the location as a whole.
///
/// # Safety
/// nginx calls it with the configuration being read, the parent level's location conf and
/// this level's (two different ones, created by `create_loc_conf`).
pub unsafe extern "C" fn merge_loc_conf(
    cf: *mut ngx_conf_t,
    prev: *mut c_void,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: per the contract; nothing else refers to them during the call.
    let (cf, prev, lcf) = unsafe {
        (
            &mut *cf,
            &*prev.cast::<LocConf>(),
            &mut *conf.cast::<LocConf>(),
        )
    };
    crate::ffi_guard::catch("merge_loc_conf", NGX_CONF_ERROR, || {
        if lcf.merge(prev).is_err() {
            return NGX_CONF_ERROR;
        }
        if !lcf.data.is_empty() && lcf.template.is_none() {
            ngx_conf_log_error!(
                NGX_LOG_EMERG,
                ptr::from_mut(cf),
                "\"dynpage_data\" needs \"dynpage_template\" in the same location"
            );
            return NGX_CONF_ERROR;
        }
        lcf.output_fingerprint = lcf.fingerprint();
        lcf.public_cache_control = format!("public, max-age={}", lcf.max_age_secs());
        NGX_CONF_OK
    })
}
