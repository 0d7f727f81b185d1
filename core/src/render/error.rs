//! Why a render failed ([`RenderError`]): upon's error with its position in the author's
//! source, or the budget it went over.

use super::compile::CompiledTemplate;
use super::upon_error::{error_template, one_line_mapped};
use crate::limits::Exceeded;

/// Why a render failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderError {
    /// upon's message, on one line.
    pub message: String,
    /// The included template it failed in (`None`: the main template, or not known).
    pub template: Option<String>,
    /// Includes nested deeper than [`MAX_INCLUDE_DEPTH`] (a template including itself).
    ///
    /// [`MAX_INCLUDE_DEPTH`]: super::MAX_INCLUDE_DEPTH
    pub too_deep: bool,
    /// The render went over its budget (the page's fault, never one module's).
    pub exceeded: Option<Exceeded>,
}

impl RenderError {
    /// upon's error, its position in the author's source of the template it names.
    pub(super) fn from_upon(
        e: &upon::Error,
        main: &CompiledTemplate,
        includes: &[(&str, &CompiledTemplate)],
    ) -> RenderError {
        let message = one_line_mapped(e, |name, line, col| {
            let t = match name {
                None => main,
                Some(name) => includes.iter().find(|(n, _)| *n == name)?.1,
            };
            t.author_position(line, col)
        });
        RenderError {
            template: error_template(e),
            too_deep: message.contains("maximum include depth"),
            exceeded: None,
            message,
        }
    }

    pub(super) fn over(exceeded: Exceeded) -> RenderError {
        RenderError {
            message: exceeded.to_string(),
            template: None,
            too_deep: false,
            exceeded: Some(exceeded),
        }
    }
}

impl std::fmt::Display for RenderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "render failed: {}", self.message)
    }
}

impl std::error::Error for RenderError {}
