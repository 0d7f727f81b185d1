//! dynpage's pure core: everything that decides what a request gets, with no nginx types.
//!
//! The nginx module (`ngx_http_dynpage_module`) and the control tool (`dynpagectl`) both build on
//! it, so the Redis layout, the version rules and the rendering rules are written once.
#![deny(unsafe_code)]

pub mod accept_encoding;
pub mod cache_entry;
pub mod chain;
pub mod cidr;
pub mod cms;
pub mod coding;
pub mod doc;
pub mod etag;
pub mod events;
pub mod failures;
pub mod from_redis;
pub mod guard;
mod json_reader;
pub mod json_value;
pub mod layout;
pub mod limits;
pub mod lru;
pub mod media_type;
pub mod memory_release;
pub mod metrics;
pub mod output_cache;
pub mod prepare;
pub mod render;
mod render_syntax;
pub mod resolve;
pub mod resp;
pub mod serve;
pub mod snapshot;
pub mod stale_store;
pub mod status_page;
pub mod store;
pub mod topology;
pub mod version;
pub mod weight;
