//! Rendering with upon: HTML-escaped by default, `| raw` to write as-is, includes from the store.
//!
//! Templates in the subset that the fast renderer (`fast/`) understands are rendered by it
//! instead, with upon as the authority: any error there renders again with upon.
//!
//! One job a file: `compile.rs` (a template checked and compiled), `includes.rs` (its include
//! statements as upon reads them), `context.rs` (what a template sees), `engine.rs` (upon's
//! engine and formatters), `escape.rs` (HTML escaping), `steps.rs` (the step budget of an upon
//! render), `upon_render.rs` (rendering with upon), `fast_or_upon.rs` (which renderer renders),
//! `failed_modules.rs` (leaving failed modules out), `error.rs` and `upon_error.rs` (what
//! failed). This file only re-exports what the other crates use.

mod compile;
mod context;
mod engine;
mod error;
mod escape;
mod failed_modules;
mod fast;
mod fast_or_upon;
mod includes;
mod steps;
mod upon_error;
mod upon_render;

pub use upon::Value;

pub use compile::{compile, empty_template, CompiledTemplate, TemplateError, MAX_TEMPLATE_BYTES};
pub use context::{
    build_context, json_to_value, page_value, request_value, PageInfo, Scope, EMPTY_MAP,
};
pub use engine::{engine, MAX_INCLUDE_DEPTH};
pub use error::RenderError;
pub use failed_modules::{render_skipping_failed_modules, RenderOptions, SkippedModule};
pub use fast_or_upon::{render_into, render_limited};
pub use includes::include_names;
pub use upon_error::one_line;
pub use upon_render::{render_with_upon, render_with_upon_limited};
