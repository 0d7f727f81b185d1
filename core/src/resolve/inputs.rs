//! What resolution reads from: the [`Inputs`] trait (the worker cache, or Redis for
//! `dynpagectl`), and what a looked-up piece holds ([`Slot`], [`Loaded`]).

use std::sync::Arc;

use crate::prepare::{PreparedData, PreparedSnapshot};
use crate::render::CompiledTemplate;
use crate::version::{DocMeta, Field};

/// Whether a cached piece is there. `Have(None)` means Redis said it does not exist.
pub enum Slot<T> {
    Have(T),
    Missing,
}

/// What a looked-up field holds.
pub type Loaded<T> = Option<Result<Arc<T>, Arc<str>>>;

/// Read access to the cache. `page` selects the page document space, else templates.
pub trait Inputs {
    fn meta(&mut self, page: bool, name: &str) -> Slot<Option<Arc<DocMeta>>>;
    fn snapshot(&mut self, key: &str, field: Field) -> Slot<Loaded<PreparedSnapshot>>;
    fn template(&mut self, name: &str, field: Field) -> Slot<Loaded<CompiledTemplate>>;
    /// One dimension's data key.
    fn data(&mut self, key: &str) -> Slot<Loaded<PreparedData>>;
}
