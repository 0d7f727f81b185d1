//! ngx_http_dynpage_module: renders pages from templates and JSON in Redis at request time.
//!
//! This file is only the module shell: the nginx statics and process hooks. The directives are
//! in `directives`, the configuration they fill in `conf`, the request path in `handler` (which
//! carries out `dynpage_core::serve`'s decisions), `request_ctx` and `response`, the per-worker runtime in `worker` and `fetcher`, the error log's macros in
//! `log`; everything that decides what a page is lives in the `dynpage-core` crate.

// First: its level macros (`error!`, `warn!`, ...) are in scope in the modules below.
#[macro_use]
mod log;

mod clock;
mod conf;
mod directives;
mod encoding;
mod fetcher;
mod ffi_guard;
mod free_memory;
mod handler;
mod metrics;
mod module;
mod request_ctx;
mod request_log;
mod response;
mod send_page;
mod served;
mod stack_fmt;
mod stale_output;
mod status;
mod subscriber;
mod variables;
mod wait;
mod worker;
mod worker_env;
mod zone;

use std::ptr::addr_of;

use ngx::ffi::{ngx_cycle_t, ngx_http_module_t, ngx_int_t, ngx_module_t, NGX_HTTP_MODULE};
use ngx::http::HttpModule;

use module::Module;

static MODULE_CTX: ngx_http_module_t = ngx_http_module_t {
    preconfiguration: Some(variables::add_variables),
    postconfiguration: None,
    create_main_conf: Some(Module::create_main_conf),
    init_main_conf: Some(zone::init_main_conf),
    create_srv_conf: None,
    merge_srv_conf: None,
    create_loc_conf: Some(Module::create_loc_conf),
    merge_loc_conf: Some(conf::merge_loc_conf),
};

extern "C" fn init_process(cycle: *mut ngx_cycle_t) -> ngx_int_t {
    // A worker that fails init_process exits for good (the master does not respawn it): after a
    // panic it goes on without dynpage's runtime (its pages answer 503), logged at alert.
    // SAFETY: nginx passes the live cycle to init_process; it outlives the call.
    let Some(cycle) = (unsafe { cycle.as_ref() }) else {
        return ngx::ffi::NGX_ERROR as ngx_int_t;
    };
    ffi_guard::catch("init_process", ngx::ffi::NGX_OK as ngx_int_t, || {
        worker::start(cycle, handler::resume)
    })
}

extern "C" fn exit_process(_cycle: *mut ngx_cycle_t) {
    ffi_guard::catch("exit_process", (), worker::stop);
}

ngx::ngx_modules!(ngx_http_dynpage_module);

// `#[no_mangle]`: `module.rs` reaches it by this symbol.
#[used]
#[no_mangle]
#[allow(non_upper_case_globals)]
pub static mut ngx_http_dynpage_module: ngx_module_t = ngx_module_t {
    ctx: addr_of!(MODULE_CTX) as _,
    commands: addr_of!(directives::COMMANDS) as *mut _,
    type_: NGX_HTTP_MODULE as _,
    init_process: Some(init_process),
    exit_process: Some(exit_process),
    ..ngx_module_t::default()
};
