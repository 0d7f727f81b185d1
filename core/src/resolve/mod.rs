//! From a request to everything its render needs: page version, snapshot (or dimensions),
//! template, includes.
//!
//! `resolve` (page mode) and `resolve_dimensions` (dimension mode) ask an [`Inputs`] (the
//! worker cache) for each piece. When pieces are missing they answer [`Outcome::Need`] with
//! every piece they can name at that point, so the caller fetches them in one round trip and
//! calls again.
//!
//! This file only names the parts and re-exports them, so every item is reached as
//! `resolve::<item>`.

mod identity;
mod inputs;
mod page;
mod resolvers;
mod templates;

pub use inputs::{Inputs, Loaded, Slot};
pub use page::{Body, Page, UsedTemplate};
pub use resolvers::{fallback_stages, resolve, resolve_dimensions, Dimension, Outcome};
