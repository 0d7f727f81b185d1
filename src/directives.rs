//! The directives: the command table (what exists, where, with how many arguments) and the one
//! handler nginx calls for all of them, which takes nginx's pointers once and hands the row's
//! parser safe values: the directive's arguments and the conf struct it sets.
//!
//! A parser refuses with the end of the `[emerg]` line: `"<directive>" directive <reason>`.

use std::ffi::{c_char, c_void};
use std::ptr;

use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::ffi::{
    ngx_command_t, ngx_conf_t, ngx_http_compile_complex_value, ngx_http_compile_complex_value_t,
    ngx_http_complex_value_t, ngx_msec_t, ngx_parse_size, ngx_parse_time, ngx_pcalloc, ngx_str_t,
    ngx_uint_t, NGX_CONF_1MORE, NGX_CONF_FLAG, NGX_CONF_NOARGS, NGX_CONF_TAKE1, NGX_CONF_TAKE12,
    NGX_CONF_TAKE2, NGX_CONF_TAKE23, NGX_HTTP_LOC_CONF, NGX_HTTP_LOC_CONF_OFFSET,
    NGX_HTTP_MAIN_CONF, NGX_HTTP_MAIN_CONF_OFFSET, NGX_HTTP_SRV_CONF, NGX_LOG_EMERG,
};
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, NgxHttpCoreModule};
use ngx::{ngx_conf_log_error, ngx_string};

use dynpage_core::cidr::AllowList;
use dynpage_core::guard::Guard;
use dynpage_core::layout::MAX_NAME_LEN;
use dynpage_core::media_type::ContentType;

use crate::conf::{DataDecl, LocConf, MainConf, VarDecl};
use crate::module::Module;

/// Where a directive is allowed: in http{} only, in location{} only, or at any level.
const MAIN: u32 = NGX_HTTP_MAIN_CONF;
const LOC: u32 = NGX_HTTP_LOC_CONF;
const ANY: u32 = NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF;

/// A row of `COMMANDS`: `handle` for all, the row's `Parser` in `post`.
macro_rules! directive {
    ($name:literal, $flags:expr, $conf:ident($parse:ident)) => {
        row(
            ngx_string!($name),
            $flags,
            &Parser {
                what: concat!("the handler of ", stringify!($parse)),
                parse: Parse::$conf($parse),
            },
        )
    };
}

/// The directive table (ends with the empty command). A row: the name, where it is allowed and
/// how many arguments it takes, and the parser that sets the main (`Main`) or location
/// (`Loc`) conf.
#[rustfmt::skip]
pub static mut COMMANDS: [ngx_command_t; 31] = [
    directive!("dynpage_redis",            MAIN | NGX_CONF_TAKE1, Main(set_redis)),
    directive!("dynpage_redis_timeout",    MAIN | NGX_CONF_TAKE1, Main(set_redis_timeout)),
    directive!("dynpage_cms",              MAIN | NGX_CONF_TAKE1, Main(set_cms)),
    directive!("dynpage_prefix",           MAIN | NGX_CONF_TAKE1, Main(set_prefix)),
    directive!("dynpage_page",             LOC | NGX_CONF_TAKE1,  Loc(set_page)),
    directive!("dynpage_template",         LOC | NGX_CONF_TAKE1,  Loc(set_template)),
    directive!("dynpage_data",             LOC | NGX_CONF_TAKE23, Loc(set_data)),
    directive!("dynpage_var",              ANY | NGX_CONF_TAKE2,  Loc(set_var)),
    directive!("dynpage_module_errors",    ANY | NGX_CONF_TAKE1,  Loc(set_module_errors)),
    directive!("dynpage_cache_ttl",        ANY | NGX_CONF_TAKE1,  Loc(set_cache_ttl)),
    directive!("dynpage_stale_ttl",        ANY | NGX_CONF_TAKE1,  Loc(set_stale_ttl)),
    directive!("dynpage_cache_size",       ANY | NGX_CONF_TAKE1,  Loc(set_cache_size)),
    directive!("dynpage_zone_size",        MAIN | NGX_CONF_TAKE1, Main(set_zone_size)),
    directive!("dynpage_render_max_size",  ANY | NGX_CONF_TAKE1,  Loc(set_render_max_size)),
    directive!("dynpage_max_age",          ANY | NGX_CONF_TAKE1,  Loc(set_max_age)),
    directive!("dynpage_content_type",     ANY | NGX_CONF_TAKE1,  Loc(set_content_type)),
    directive!("dynpage_debug_header",     ANY | NGX_CONF_FLAG,   Loc(set_debug_header)),
    directive!("dynpage_output_cache",     ANY | NGX_CONF_FLAG,   Loc(set_output_cache)),
    directive!("dynpage_output_cache_size", MAIN | NGX_CONF_TAKE1, Main(set_output_cache_size)),
    directive!("dynpage_gzip",             ANY | NGX_CONF_FLAG,   Loc(set_gzip)),
    directive!("dynpage_gzip_comp_level",  ANY | NGX_CONF_TAKE1,  Loc(set_gzip_comp_level)),
    directive!("dynpage_brotli",           ANY | NGX_CONF_FLAG,   Loc(set_brotli)),
    directive!("dynpage_brotli_comp_level", ANY | NGX_CONF_TAKE1, Loc(set_brotli_comp_level)),
    directive!("dynpage_predeploy_allow",  ANY | NGX_CONF_1MORE,  Loc(set_predeploy_allow)),
    directive!("dynpage_guard",            ANY | NGX_CONF_TAKE12, Loc(set_guard)),
    directive!("dynpage_gray_by",          ANY | NGX_CONF_TAKE1,  Loc(set_gray_by)),
    directive!("dynpage_status",           LOC | NGX_CONF_NOARGS, Loc(set_status)),
    directive!("dynpage_counters",         MAIN | NGX_CONF_FLAG,  Main(set_counters)),
    directive!("dynpage_fetch_threads",    MAIN | NGX_CONF_TAKE1, Main(set_fetch_threads)),
    directive!("dynpage_background_update", ANY | NGX_CONF_FLAG,  Loc(set_background_update)),
    ngx_command_t::empty(),
];

const fn row(name: ngx_str_t, flags: u32, parser: &'static Parser) -> ngx_command_t {
    ngx_command_t {
        name,
        type_: flags as ngx_uint_t,
        set: Some(handle),
        conf: match parser.parse {
            Parse::Main(_) => NGX_HTTP_MAIN_CONF_OFFSET,
            Parse::Loc(_) => NGX_HTTP_LOC_CONF_OFFSET,
        },
        offset: 0,
        post: ptr::from_ref(parser).cast_mut().cast(),
    }
}

/// How a row's directive is read.
struct Parser {
    /// What a panic in it is logged as.
    what: &'static str,
    parse: Parse,
}

/// A parser, by the conf it sets (which also gives the row's `conf` offset).
enum Parse {
    Main(ParseMain),
    Loc(ParseLoc),
}

type ParseMain = fn(&mut Directive<'_>, &mut MainConf) -> Result<(), Refusal>;
type ParseLoc = fn(&mut Directive<'_>, &mut LocConf) -> Result<(), Refusal>;

/// Why a directive is refused.
enum Refusal {
    /// Logged as `"<directive>" directive <reason>`.
    Reason(String),
    /// Nothing to add: nginx logged why (compiling a complex value).
    Logged,
}

impl From<String> for Refusal {
    fn from(reason: String) -> Refusal {
        Refusal::Reason(reason)
    }
}

impl From<&str> for Refusal {
    fn from(reason: &str) -> Refusal {
        Refusal::Reason(reason.to_string())
    }
}

/// The handler of every directive: it turns nginx's pointers into references, runs the row's
/// parser (a panic there is logged at `alert` and fails the configuration) and logs a refusal.
///
/// # Safety
/// nginx calls it, as the `set` of a row of `COMMANDS`, while reading the configuration.
unsafe extern "C" fn handle(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: per the contract: `cmd` is a row of COMMANDS, whose `post` is the row's `Parser`
    // (a static); `cf` is the configuration being read, live for this call, whose `args` hold
    // the directive's name then its arguments (as many as the row's flags allow: nginx
    // checked); `conf` is our conf struct for the row's `conf` offset, which `row` chose from
    // the parser: a `MainConf` (created by `create_main_conf`) for `Main`, a `LocConf` (by
    // `create_loc_conf`) for `Loc`. Nothing else refers to that struct during the call.
    let (parser, name, args, cf, bound) = unsafe {
        let cmd = &*cmd;
        let parser = &*cmd.post.cast::<Parser>();
        let args = (*(*cf).args).as_slice();
        let bound = match parser.parse {
            Parse::Main(parse) => Bound::Main(parse, &mut *conf.cast::<MainConf>()),
            Parse::Loc(parse) => Bound::Loc(parse, &mut *conf.cast::<LocConf>()),
        };
        (
            parser,
            cmd.name.to_str().unwrap_or("dynpage"),
            args,
            &mut *cf,
            bound,
        )
    };
    crate::ffi_guard::catch(parser.what, NGX_CONF_ERROR, move || {
        let mut d = Directive { cf, name, args };
        let done = match bound {
            Bound::Main(parse, mcf) => parse(&mut d, mcf),
            Bound::Loc(parse, lcf) => parse(&mut d, lcf),
        };
        match done {
            Ok(()) => NGX_CONF_OK,
            Err(Refusal::Reason(why)) => {
                ngx_conf_log_error!(
                    NGX_LOG_EMERG,
                    ptr::from_mut(d.cf),
                    "\"{}\" directive {}",
                    d.name,
                    why
                );
                NGX_CONF_ERROR
            }
            Err(Refusal::Logged) => NGX_CONF_ERROR,
        }
    })
}

/// A parser with the conf it sets.
enum Bound<'a> {
    Main(ParseMain, &'a mut MainConf),
    Loc(ParseLoc, &'a mut LocConf),
}

/// The directive being read.
struct Directive<'a> {
    cf: &'a mut ngx_conf_t,
    name: &'a str,
    /// The name, then the arguments.
    args: &'a [ngx_str_t],
}

impl<'a> Directive<'a> {
    /// The first argument as UTF-8.
    fn arg(&self) -> Result<&'a str, String> {
        self.arg_at(1)
    }

    /// The first argument of a flag directive: `on` or `off`.
    fn on_off(&self) -> Result<bool, Refusal> {
        match self.arg() {
            Ok(v) if v.eq_ignore_ascii_case("on") => Ok(true),
            Ok(v) if v.eq_ignore_ascii_case("off") => Ok(false),
            _ => Err(Refusal::Reason("must be \"on\" or \"off\"".into())),
        }
    }

    /// Argument `i` as UTF-8.
    fn arg_at(&self, i: usize) -> Result<&'a str, String> {
        self.args
            .get(i)
            .ok_or_else(|| "missing argument".to_string())?
            .to_str()
            .map_err(|_| "argument is not UTF-8".to_string())
    }

    /// Whether argument `i` is missing or empty.
    fn empty_at(&self, i: usize) -> bool {
        self.args.get(i).is_none_or(|a| a.is_empty())
    }

    fn invalid(&self) -> Refusal {
        let value = self.arg().unwrap_or("?");
        format!("has invalid value \"{value}\"").into()
    }

    /// The first argument as a whole number within `range`, else refused saying the range.
    fn number_in<T>(&self, range: std::ops::RangeInclusive<T>) -> Result<T, Refusal>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display,
    {
        match self.arg().map(str::parse::<T>) {
            Ok(Ok(n)) if range.contains(&n) => Ok(n),
            _ => Err(format!(
                "has invalid value \"{}\": it must be {} to {}",
                self.arg().unwrap_or("?"),
                range.start(),
                range.end()
            )
            .into()),
        }
    }

    /// The http block's conf (for a location-level directive: a main-level one has it as its
    /// conf already).
    fn main_conf(&mut self) -> &mut MainConf {
        Module::main_conf_mut(&*self.cf).expect("dynpage main conf exists in http{}")
    }

    /// Compiles argument `i` as a complex value (variables allowed), in the conf pool.
    fn complex_value_at(&mut self, i: usize) -> Result<*mut ngx_http_complex_value_t, Refusal> {
        let mut value = *self.args.get(i).ok_or(Refusal::Logged)?;
        // SAFETY: the pool is the configuration's, live.
        let cv = unsafe {
            ngx_pcalloc(
                self.cf.pool,
                std::mem::size_of::<ngx_http_complex_value_t>(),
            )
        }
        .cast::<ngx_http_complex_value_t>();
        if cv.is_null() {
            return Err(Refusal::Logged);
        }
        // SAFETY: plain C data, which nginx wants zeroed.
        let mut ccv: ngx_http_compile_complex_value_t = unsafe { std::mem::zeroed() };
        ccv.cf = ptr::from_mut(self.cf);
        ccv.value = &mut value;
        ccv.complex_value = cv;
        // SAFETY: `ccv` points at the live configuration, our argument and the new complex
        // value (which lives as long as the configuration).
        let rc = unsafe { ngx_http_compile_complex_value(&mut ccv) };
        if rc == 0 {
            Ok(cv)
        } else {
            Err(Refusal::Logged)
        }
    }

    /// The first argument as an nginx time (`100ms`, `1s`, `10m`) in milliseconds.
    fn time_ms(&self) -> Option<u64> {
        let mut s = *self.args.get(1)?;
        // SAFETY: `s` is a copy of a conf argument; ngx_parse_time only reads it.
        let ms = unsafe { ngx_parse_time(&mut s, 0) };
        u64::try_from(ms).ok()
    }

    /// The first argument as an nginx time in seconds.
    fn time_secs(&self) -> Option<u64> {
        let mut s = *self.args.get(1)?;
        // SAFETY: as in `time_ms`.
        let secs = unsafe { ngx_parse_time(&mut s, 1) };
        u64::try_from(secs).ok()
    }

    /// The first argument as an nginx size (`512k`, `64m`) in bytes.
    fn size(&self) -> Option<usize> {
        let mut s = *self.args.get(1)?;
        // SAFETY: as in `time_ms`.
        let n = unsafe { ngx_parse_size(&mut s) };
        usize::try_from(n).ok()
    }

    /// Makes the current location's content handler ours, and notes that pages are served.
    fn serve_pages_here(&mut self) -> Result<(), Refusal> {
        let clcf = NgxHttpCoreModule::location_conf_mut(&*self.cf).ok_or(Refusal::Logged)?;
        clcf.handler = Some(crate::handler::content_handler);
        let name = self.name;
        let mcf = self.main_conf();
        if mcf.used_by.is_none() {
            mcf.used_by = Some(name.to_string());
        }
        Ok(())
    }
}

/// What a page directive in a `dynpage_status` location is told.
const WITH_STATUS: &str = "cannot be used with \"dynpage_status\" in the same location";

/// `dynpage_status`: this location answers the counters.
fn set_status(d: &mut Directive<'_>, lcf: &mut LocConf) -> Result<(), Refusal> {
    if lcf.status {
        return Err(DUPLICATE.into());
    }
    if !lcf.page.is_null() || lcf.template.is_some() {
        return Err(
            "cannot be used with \"dynpage_page\" or \"dynpage_template\" in the same location"
                .into(),
        );
    }
    let clcf = NgxHttpCoreModule::location_conf_mut(&*d.cf).ok_or(Refusal::Logged)?;
    clcf.handler = Some(crate::status::handler);
    lcf.status = true;
    d.main_conf().status_used = true;
    Ok(())
}

/// What a directive given twice at one level is told.
const DUPLICATE: &str = "is duplicate";

/// Sets `slot` to what `value` gives, unless the directive was given at this level already.
fn once<T>(
    slot: &mut Option<T>,
    value: impl FnOnce() -> Result<T, Refusal>,
) -> Result<(), Refusal> {
    if slot.is_some() {
        return Err(DUPLICATE.into());
    }
    *slot = Some(value()?);
    Ok(())
}

fn set_redis(d: &mut Directive<'_>, mcf: &mut MainConf) -> Result<(), Refusal> {
    let url = d.arg().map_err(|_| d.invalid())?;
    let shown = dynpage_core::store::redact_url(url);
    if let Err(e) = dynpage_core::store::check_url(url) {
        return Err(format!("has invalid URL \"{shown}\": {e}").into());
    }
    if mcf.redis.iter().any(|u| u == url) {
        return Err(format!("names \"{shown}\" twice").into());
    }
    mcf.redis.push(url.to_string());
    Ok(())
}

fn set_cms(d: &mut Directive<'_>, mcf: &mut MainConf) -> Result<(), Refusal> {
    once(&mut mcf.cms, || {
        let url = d.arg().map_err(|_| d.invalid())?;
        if let Err(e) = dynpage_core::cms::CmsUrl::parse(url) {
            return Err(format!("has invalid URL \"{url}\": {e}").into());
        }
        Ok(url.to_string())
    })
}

fn set_redis_timeout(d: &mut Directive<'_>, mcf: &mut MainConf) -> Result<(), Refusal> {
    once(&mut mcf.redis_timeout, || match d.time_ms() {
        Some(ms) if ms > 0 => Ok(ms as ngx_msec_t),
        _ => Err(d.invalid()),
    })
}

fn set_prefix(d: &mut Directive<'_>, mcf: &mut MainConf) -> Result<(), Refusal> {
    once(&mut mcf.prefix, || match d.arg() {
        Ok(p)
            if !p
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) =>
        {
            Ok(p.to_string())
        }
        _ => Err(d.invalid()),
    })
}

fn set_zone_size(d: &mut Directive<'_>, mcf: &mut MainConf) -> Result<(), Refusal> {
    once(&mut mcf.zone_size, || match d.size() {
        Some(n) if n >= crate::conf::MIN_ZONE_SIZE => Ok(n),
        Some(_) => Err("is too small: the minimum is 1m".into()),
        None => Err(d.invalid()),
    })
}

/// The bound of each worker's kept outputs; 0 keeps none.
fn set_output_cache_size(d: &mut Directive<'_>, mcf: &mut MainConf) -> Result<(), Refusal> {
    once(&mut mcf.output_cache_size, || {
        d.size().ok_or_else(|| d.invalid())
    })
}

/// How many fetch threads each worker runs.
fn set_fetch_threads(d: &mut Directive<'_>, mcf: &mut MainConf) -> Result<(), Refusal> {
    once(&mut mcf.fetch_threads, || {
        d.number_in(1..=crate::conf::MAX_FETCH_THREADS)
    })
}

fn set_counters(d: &mut Directive<'_>, mcf: &mut MainConf) -> Result<(), Refusal> {
    once(&mut mcf.counters, || d.on_off())
}

fn set_page(d: &mut Directive<'_>, lcf: &mut LocConf) -> Result<(), Refusal> {
    if !lcf.page.is_null() {
        return Err(DUPLICATE.into());
    }
    if lcf.status {
        return Err(WITH_STATUS.into());
    }
    if lcf.template.is_some() {
        return Err("cannot be used with \"dynpage_template\" in the same location".into());
    }
    if d.empty_at(1) {
        return Err("needs a non-empty key".into());
    }
    lcf.page = d.complex_value_at(1)?;
    d.serve_pages_here()
}

fn set_template(d: &mut Directive<'_>, lcf: &mut LocConf) -> Result<(), Refusal> {
    let status = lcf.status;
    once(&mut lcf.template, || {
        if !lcf.page.is_null() {
            return Err("cannot be used with \"dynpage_page\" in the same location".into());
        }
        if status {
            return Err(WITH_STATUS.into());
        }
        match d.arg() {
            Ok(name)
                if !name.is_empty()
                    && name.len() <= MAX_NAME_LEN
                    && !name.bytes().any(|b| b.is_ascii_control()) =>
            {
                Ok(name.to_string())
            }
            _ => Err(d.invalid()),
        }
    })?;
    d.serve_pages_here()
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

fn set_data(d: &mut Directive<'_>, lcf: &mut LocConf) -> Result<(), Refusal> {
    let name = d.arg().map_err(|_| d.invalid())?;
    check_template_name(name, "dimension name")?;
    if lcf.data.iter().any(|x| x.name == name) {
        return Err(format!("declares dimension \"{name}\" twice").into());
    }
    if d.empty_at(2) {
        return Err(format!("needs a non-empty key for dimension \"{name}\"").into());
    }
    let required = match d.args.len() {
        3 => false,
        _ => match d.arg_at(3)? {
            "required" => true,
            other => {
                return Err(format!(
                    "has invalid parameter \"{other}\": only \"required\" may follow the key"
                )
                .into())
            }
        },
    };
    let key = d.complex_value_at(2)?;
    lcf.data.push(DataDecl {
        name: name.to_string(),
        key,
        required,
    });
    Ok(())
}

fn set_var(d: &mut Directive<'_>, lcf: &mut LocConf) -> Result<(), Refusal> {
    let name = d.arg().map_err(|_| d.invalid())?;
    check_template_name(name, "name")?;
    let vars = lcf.vars.get_or_insert_with(Vec::new);
    if vars.iter().any(|v| v.name == name) {
        return Err(format!("declares \"request.{name}\" twice").into());
    }
    let value = d.complex_value_at(2)?;
    vars.push(VarDecl {
        name: name.to_string(),
        value,
    });
    Ok(())
}

fn set_module_errors(d: &mut Directive<'_>, lcf: &mut LocConf) -> Result<(), Refusal> {
    once(&mut lcf.module_errors_fail, || match d.arg() {
        Ok("skip") => Ok(false),
        Ok("fail") => Ok(true),
        _ => Err("must be \"skip\" or \"fail\"".into()),
    })
}

fn set_cache_ttl(d: &mut Directive<'_>, lcf: &mut LocConf) -> Result<(), Refusal> {
    once(&mut lcf.cache_ttl, || {
        d.time_ms().ok_or_else(|| d.invalid())
    })
}

fn set_stale_ttl(d: &mut Directive<'_>, lcf: &mut LocConf) -> Result<(), Refusal> {
    once(&mut lcf.stale_ttl, || {
        d.time_ms().ok_or_else(|| d.invalid())
    })
}

/// Sets the worker cache's bound: the largest size given at any level.
fn set_cache_size(d: &mut Directive<'_>, lcf: &mut LocConf) -> Result<(), Refusal> {
    if lcf.cache_size_given {
        return Err(DUPLICATE.into());
    }
    match d.size() {
        Some(n) if n >= 64 * 1024 => {
            lcf.cache_size_given = true;
            let mcf = d.main_conf();
            mcf.cache_size = Some(mcf.cache_size.map_or(n, |m| m.max(n)));
        }
        Some(_) => return Err("is too small: the minimum is 64k".into()),
        None => return Err(d.invalid()),
    }
    Ok(())
}

fn set_render_max_size(d: &mut Directive<'_>, lcf: &mut LocConf) -> Result<(), Refusal> {
    once(&mut lcf.render_max_size, || {
        d.size().filter(|&n| n > 0).ok_or_else(|| d.invalid())
    })
}

fn set_max_age(d: &mut Directive<'_>, lcf: &mut LocConf) -> Result<(), Refusal> {
    once(&mut lcf.max_age, || {
        d.time_secs().ok_or_else(|| d.invalid())
    })
}

fn set_content_type(d: &mut Directive<'_>, lcf: &mut LocConf) -> Result<(), Refusal> {
    once(&mut lcf.content_type, || {
        d.arg()
            .ok()
            .and_then(ContentType::parse)
            .ok_or_else(|| d.invalid())
    })
}

fn set_debug_header(d: &mut Directive<'_>, lcf: &mut LocConf) -> Result<(), Refusal> {
    once(&mut lcf.debug_header, || d.on_off())
}

fn set_background_update(d: &mut Directive<'_>, lcf: &mut LocConf) -> Result<(), Refusal> {
    once(&mut lcf.background_update, || d.on_off())
}

fn set_output_cache(d: &mut Directive<'_>, lcf: &mut LocConf) -> Result<(), Refusal> {
    once(&mut lcf.output_cache, || d.on_off())
}

fn set_gzip(d: &mut Directive<'_>, lcf: &mut LocConf) -> Result<(), Refusal> {
    once(&mut lcf.gzip, || d.on_off())
}

/// 1 (fastest) to 9 (smallest), as nginx's `gzip_comp_level`.
fn set_gzip_comp_level(d: &mut Directive<'_>, lcf: &mut LocConf) -> Result<(), Refusal> {
    once(&mut lcf.gzip_comp_level, || d.number_in(1..=9u32))
}

fn set_brotli(d: &mut Directive<'_>, lcf: &mut LocConf) -> Result<(), Refusal> {
    once(&mut lcf.brotli, || d.on_off())
}

/// 0 (fastest) to 11 (smallest), as ngx_brotli's `brotli_comp_level`.
fn set_brotli_comp_level(d: &mut Directive<'_>, lcf: &mut LocConf) -> Result<(), Refusal> {
    once(&mut lcf.brotli_comp_level, || d.number_in(0..=11u32))
}

fn set_guard(d: &mut Directive<'_>, lcf: &mut LocConf) -> Result<(), Refusal> {
    once(&mut lcf.guard, || {
        let args = d.args[1..]
            .iter()
            .map(|a| a.to_str())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| d.invalid())?;
        Ok(Guard::parse(&args)?)
    })
}

fn set_predeploy_allow(d: &mut Directive<'_>, lcf: &mut LocConf) -> Result<(), Refusal> {
    let list = lcf.predeploy_allow.get_or_insert_with(AllowList::default);
    for arg in &d.args[1..] {
        let arg = arg
            .to_str()
            .map_err(|_| "has an argument that is not UTF-8")?;
        list.add(arg)
            .map_err(|e| format!("has invalid value: {e}"))?;
    }
    Ok(())
}

fn set_gray_by(d: &mut Directive<'_>, lcf: &mut LocConf) -> Result<(), Refusal> {
    if !lcf.gray_by.is_null() {
        return Err(DUPLICATE.into());
    }
    if d.empty_at(1) {
        return Err("needs a non-empty value".into());
    }
    lcf.gray_by = d.complex_value_at(1)?;
    Ok(())
}
