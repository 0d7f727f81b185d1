//! [`Page`]: everything a render needs (versions, data, templates, ETag), and its render.

use std::sync::Arc;

use upon::Value;

use crate::prepare::{PreparedData, PreparedSnapshot};
use crate::render::{
    render_limited, render_skipping_failed_modules, CompiledTemplate, RenderError, RenderOptions,
    Scope, SkippedModule, EMPTY_MAP,
};
use crate::version::{Field, Variant};

/// One template used by a render.
#[derive(Debug, Clone)]
pub struct UsedTemplate {
    pub name: String,
    pub field: Field,
    pub compiled: Arc<CompiledTemplate>,
}

/// Where a page's data comes from.
#[derive(Debug)]
pub enum Body {
    /// Page mode: the snapshot, whose context holds `data`'s fields and `page`.
    Snapshot(Arc<PreparedSnapshot>),
    /// Dimension mode: `page`, and each dimension under its name (`None`: null).
    Dimensions {
        page: Value,
        values: Vec<(String, Option<Arc<PreparedData>>)>,
    },
}

/// Everything a render needs.
#[derive(Debug)]
pub struct Page {
    pub variant: Variant,
    /// The version served: the page's (page mode) or the template's (dimension mode).
    pub field: Field,
    pub body: Body,
    /// The main template: the snapshot's inline one, or a template document's version.
    pub template: Arc<CompiledTemplate>,
    pub template_field: Option<(String, Field)>,
    /// Included templates, transitively (allocated only when there are any).
    pub includes: Vec<UsedTemplate>,
    /// Modules that could not be loaded (missing, broken): they render as nothing.
    pub skipped_modules: Vec<SkippedModule>,
    /// Dimensions that could not be used and render as null, with why (for one log line).
    pub bad_dimensions: Vec<String>,
    /// Activation time of the newest production version involved (production page-mode pages
    /// only: a dimension changes without a version).
    pub last_modified_ms: Option<u64>,
    /// Identifies the inputs: page key (or template and dimensions), chosen versions, variant.
    pub etag: u64,
}

/// A dimension that is missing.
static NULL: Value = Value::None;

impl Page {
    /// Dimensions whose key does not exist (not required: they render as null); the
    /// unusable ones are in `bad_dimensions`.
    pub fn missing_dimensions(&self) -> usize {
        match &self.body {
            Body::Dimensions { values, .. } => values
                .iter()
                .filter(|(_, v)| v.is_none())
                .count()
                .saturating_sub(self.bad_dimensions.len()),
            Body::Snapshot(_) => 0,
        }
    }

    /// The page document's version (page mode).
    pub fn page_field(&self) -> Option<Field> {
        match self.body {
            Body::Snapshot(_) => Some(self.field),
            Body::Dimensions { .. } => None,
        }
    }

    /// Renders the page into `out`, appending, within the default limits. `request` is the
    /// `request` value (`dynpage_var`), if the location declares any. With
    /// `skip_failed_modules`, a module that fails is left out and added to `skipped` instead of
    /// failing the render.
    pub fn render_into(
        &self,
        request: Option<&Value>,
        skip_failed_modules: bool,
        out: &mut Vec<u8>,
        skipped: &mut Vec<SkippedModule>,
    ) -> Result<(), RenderError> {
        let options = RenderOptions {
            skip_failed_modules,
            ..RenderOptions::default()
        };
        self.render_with(request, &options, out, skipped)
    }

    /// Renders the page into `out`, appending, as `options` say.
    pub fn render_with(
        &self,
        request: Option<&Value>,
        options: &RenderOptions<'_>,
        out: &mut Vec<u8>,
        skipped: &mut Vec<SkippedModule>,
    ) -> Result<(), RenderError> {
        let includes: Vec<(&str, &CompiledTemplate)> = self
            .includes
            .iter()
            .map(|u| (u.name.as_str(), &*u.compiled))
            .collect();
        let mut named: Vec<(&str, &Value)> = Vec::new();
        let doc = match &self.body {
            Body::Snapshot(snapshot) => {
                // `request` and `page` hide members of the data with those names.
                named.push(("request", request.unwrap_or(&EMPTY_MAP)));
                named.push(("page", &snapshot.page));
                Some(&snapshot.data)
            }
            Body::Dimensions { page, values } => {
                if let Some(req) = request {
                    named.push(("request", req));
                }
                named.push(("page", page));
                named.extend(
                    values
                        .iter()
                        .map(|(name, v)| (name.as_str(), v.as_ref().map_or(&NULL, |d| &d.value))),
                );
                None
            }
        };
        let scope = Scope {
            named: &named,
            doc,
            base: None,
        };
        if options.skip_failed_modules {
            render_skipping_failed_modules(
                &self.template,
                scope,
                &includes,
                &options.limits,
                options.known_failed_modules,
                out,
                skipped,
            )
        } else {
            render_limited(&self.template, scope, &includes, &options.limits, out)
        }
    }
}
