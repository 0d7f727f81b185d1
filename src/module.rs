//! The module's identity: `Module`, through which the other files find the module's context
//! index (`ngx_module_t::ctx_index`, set by nginx while loading) and its configuration slots.
//!
//! The `ngx_module_t` static itself is in `lib.rs`, beside what it lists (the directive table,
//! the configuration hooks, the process hooks), all of which need this identity: it is reached
//! here by its symbol, as nginx's C modules declare `extern ngx_module_t ngx_http_..._module;`,
//! so no file imports the crate root.

use std::ptr::addr_of;

use ngx::ffi::{ngx_http_request_t, ngx_module_t};
use ngx::http::{HttpModule, HttpModuleLocationConf, HttpModuleMainConf};

use crate::conf::{LocConf, MainConf};

extern "C" {
    /// Defined in `lib.rs` (`#[no_mangle]`), written only by nginx while it loads the module.
    static mut ngx_http_dynpage_module: ngx_module_t;
}

pub struct Module;

impl HttpModule for Module {
    fn module() -> &'static ngx_module_t {
        // SAFETY: the module static is only written by nginx while loading, before any use.
        unsafe { &*addr_of!(ngx_http_dynpage_module) }
    }
}

// SAFETY: the main conf slot holds a `MainConf`, created by `create_main_conf`.
unsafe impl HttpModuleMainConf for Module {
    type MainConf = MainConf;
}

// SAFETY: the location conf slot holds a `LocConf`, created by `create_loc_conf`.
unsafe impl HttpModuleLocationConf for Module {
    type LocationConf = LocConf;
}

/// The location conf of a request (borrowed for as long as the request is).
pub fn loc_conf(r: &ngx_http_request_t) -> Option<&LocConf> {
    Module::location_conf(r)
}
