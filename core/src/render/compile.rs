//! Compiling a template: checked (size, nesting, what upon cannot render reliably) before and
//! after upon compiles it, with its loops counting their turns, its includes and modules
//! listed, and a fast program when it is within the fast renderer's subset.

use std::sync::{Arc, OnceLock};

use super::engine::engine;
use super::fast as render_fast;
use super::includes::{include_statements, Unreliable};
use super::upon_error::one_line;
use crate::limits::{self, TooDeep};

/// Largest template source accepted, in bytes.
pub const MAX_TEMPLATE_BYTES: usize = 1024 * 1024;

/// A compiled template and the names it includes.
#[derive(Debug)]
pub struct CompiledTemplate {
    /// What upon renders: the source with its loops counting their turns (see
    /// [`limits::instrument`]).
    pub(super) template: upon::Template<'static>,
    /// The author's source, when upon's differs from it (the fast renderer's raw text and
    /// upon's error positions refer to this one).
    original: Option<Box<str>>,
    /// Where upon's source has text the author's has not: (offset, length).
    inserted: Box<[(usize, usize)]>,
    /// The same template for the fast renderer, when it is within its subset.
    pub(super) fast: Option<render_fast::Program>,
    includes: Vec<String>,
    /// The included names that are modules: included `with` their own data somewhere.
    modules: Vec<String>,
    source_len: usize,
    /// Pieces of text and tags: what one expansion costs upon's renders at most.
    pub(super) steps: u64,
    /// See [`CompiledTemplate::source_hash`].
    source_hash: u64,
}

impl CompiledTemplate {
    /// Names of the templates this one includes, in order of first appearance.
    pub fn includes(&self) -> &[String] {
        &self.includes
    }

    /// The names this one includes as modules (`{% include "name" with value %}`).
    pub fn modules(&self) -> &[String] {
        &self.modules
    }

    /// Bytes of source, for cache accounting.
    pub fn source_len(&self) -> usize {
        self.source_len
    }

    /// A hash of the author's source: what a page's identity takes from a template whose
    /// field can change without a new version (`predeploy`, `abVersion`).
    pub fn source_hash(&self) -> u64 {
        self.source_hash
    }

    /// Approximate bytes held (source, compiled forms), for cache accounting.
    pub fn weight(&self) -> usize {
        let upon_source = if self.original.is_some() {
            self.template.source().len()
        } else {
            0
        };
        self.source_len * 4 + upon_source * 2
    }

    /// The author's source.
    pub(super) fn source_text(&self) -> &str {
        self.original.as_deref().unwrap_or(self.template.source())
    }

    /// The position upon gives (1-based line, column) in its source, in the author's source.
    pub(super) fn author_position(&self, line: usize, column: usize) -> Option<(usize, usize)> {
        let original = self.original.as_deref()?;
        limits::map_position(
            self.template.source(),
            original,
            &self.inserted,
            line,
            column,
        )
    }

    /// Whether the fast renderer can render this template (its includes aside).
    pub fn has_fast_path(&self) -> bool {
        self.fast.is_some()
    }

    #[cfg(test)]
    pub(crate) fn source(&self) -> &str {
        self.source_text()
    }
}

/// Why a template cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateError {
    TooLarge(usize),
    /// Nested deeper than the limits (checked before upon compiles it).
    TooDeep(TooDeep),
    Syntax(String),
}

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TemplateError::TooLarge(n) => write!(
                f,
                "template is {n} bytes, over the {MAX_TEMPLATE_BYTES} byte limit"
            ),
            TemplateError::TooDeep(e) => write!(f, "template is nested too deep: {e}"),
            TemplateError::Syntax(e) => write!(f, "template does not compile: {e}"),
        }
    }
}

impl std::error::Error for TemplateError {}

/// Compiles template source.
///
/// Its nesting is checked first, without recursing ([`limits::scan`]): upon's compiler recurses
/// once per level, so only a template within the limits reaches it.
pub fn compile(source: String) -> Result<CompiledTemplate, TemplateError> {
    if source.len() > MAX_TEMPLATE_BYTES {
        return Err(TemplateError::TooLarge(source.len()));
    }
    let scan = limits::scan(&source).map_err(TemplateError::TooDeep)?;
    let (includes, modules, unreliable) = include_statements(&source);
    let source_len = source.len();
    let source_hash = crate::version::Fnv::default()
        .write(source.as_bytes())
        .finish();
    let syntax = |e: upon::Error| TemplateError::Syntax(one_line(&e));
    let (template, original, inserted) = if scan.loop_ends.is_empty() {
        (engine().compile(source).map_err(syntax)?, None, Vec::new())
    } else {
        let (counting, inserted) = limits::instrument(&source, &scan.loop_ends);
        match engine().compile(counting) {
            Ok(t) => (t, Some(source.into_boxed_str()), inserted),
            // The error as upon gives it for the author's source. (Were that to compile, it
            // would be rendered as it is: upon would not count its loops' turns.)
            Err(_) => {
                let t = engine().compile(source).map_err(syntax)?;
                debug_assert!(false, "counting turns broke {:?}", t.source());
                (t, None, Vec::new())
            }
        }
    };
    // Only after upon accepted the source, so that its syntax errors come first.
    if let Some((at, what)) = unreliable {
        return Err(unreliable_error(
            original.as_deref().unwrap_or(template.source()),
            at,
            what,
        ));
    }
    // Only after upon accepted the source: the fast compiler refuses, never reports, errors.
    let fast = render_fast::compile(original.as_deref().unwrap_or(template.source()));
    Ok(CompiledTemplate {
        template,
        original,
        inserted: inserted.into_boxed_slice(),
        fast,
        includes,
        modules,
        source_len,
        source_hash,
        steps: scan.steps,
    })
}

/// A template that renders nothing: what a module that cannot be used is replaced with.
pub fn empty_template() -> Option<Arc<CompiledTemplate>> {
    static EMPTY: OnceLock<Option<Arc<CompiledTemplate>>> = OnceLock::new();
    EMPTY
        .get_or_init(|| compile(String::new()).ok().map(Arc::new))
        .clone()
}

/// Refuses what upon 0.11 cannot render reliably (at byte `at` of `source`):
/// - an include without `with` inside a `with` block: upon looks the included template's
///   variables up against the `with` variable by comparing slices of the *included* source
///   taken at the *including* template's offsets, so such a render panics (an offset past the
///   end) or reads a variable from the page data or from the `with` block depending on
///   unrelated characters of the included template;
/// - a filter given arguments in `{{ }}`: upon hands the formatter the last argument instead
///   of the value and panics on what is left (no filter takes arguments here: `raw` is a
///   formatter and no functions are registered).
fn unreliable_error(source: &str, at: usize, what: Unreliable) -> TemplateError {
    let before = &source[..at];
    let line = before.matches('\n').count() + 1;
    let column = before[before.rfind('\n').map_or(0, |i| i + 1)..]
        .chars()
        .count()
        + 1;
    TemplateError::Syntax(match what {
        Unreliable::IncludeInWith => format!(
            "an include without `with` inside a with block at line {line}, column {column}: \
             the template engine cannot render it reliably; include the template `with` a \
             value, or outside the with block"
        ),
        Unreliable::FilterArguments => format!(
            "a filter given arguments at line {line}, column {column}: filters take none here \
             (the template engine fails on them)"
        ),
    })
}
