//! Rendering with upon: HTML-escaped by default, `| raw` to write as-is, includes from the store.
//!
//! Templates in the subset that [`fast`] understands are rendered by it instead,
//! with upon as the authority: any error there renders again with upon.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use serde_json::Value as Json;
pub use upon::Value;

use crate::limits::{self, Exceeded, Limits, TooDeep};
use self::fast::{self as render_fast, Stop};

pub(crate) mod fast;

/// Largest template source accepted, in bytes.
pub const MAX_TEMPLATE_BYTES: usize = 1024 * 1024;
/// Deepest `{% include %}` nesting; deeper (or recursive) includes fail the render.
pub const MAX_INCLUDE_DEPTH: usize = 16;

/// A compiled template and the names it includes.
#[derive(Debug)]
pub struct CompiledTemplate {
    /// What upon renders: the source with its loops counting their turns (see
    /// [`limits::instrument`]).
    template: upon::Template<'static>,
    /// The author's source, when upon's differs from it (the fast renderer's raw text and
    /// upon's error positions refer to this one).
    original: Option<Box<str>>,
    /// Where upon's source has text the author's has not: (offset, length).
    inserted: Box<[(usize, usize)]>,
    /// The same template for the fast renderer, when it is within its subset.
    fast: Option<render_fast::Program>,
    includes: Vec<String>,
    /// The included names that are modules: included `with` their own data somewhere.
    modules: Vec<String>,
    source_len: usize,
    /// Pieces of text and tags: what one expansion costs upon's renders at most.
    steps: u64,
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
    fn source_text(&self) -> &str {
        self.original.as_deref().unwrap_or(self.template.source())
    }

    /// The position upon gives (1-based line, column) in its source, in the author's source.
    fn author_position(&self, line: usize, column: usize) -> Option<(usize, usize)> {
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

/// The shared engine: escaping default formatter, `raw` formatter.
pub fn engine() -> &'static upon::Engine<'static> {
    static ENGINE: OnceLock<upon::Engine<'static>> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut engine = upon::Engine::new();
        engine.set_default_formatter(&format_escaped);
        engine.add_formatter("raw", format_raw);
        engine.add_formatter(limits::TURN_FORMATTER, format_turn);
        engine.set_max_include_depth(MAX_INCLUDE_DEPTH);
        engine
    })
}

/// The steps an upon render may still take on this thread (`None`: not counting).
#[derive(Clone, Copy)]
struct Meter {
    left: Option<u64>,
    over: bool,
}

thread_local! {
    static UPON_STEPS: Cell<Meter> = const { Cell::new(Meter { left: None, over: false }) };
}

/// Takes `steps` from the thread's running upon render; false if that goes over its budget.
fn charge_steps(steps: u64) -> bool {
    UPON_STEPS.with(|m| {
        let mut meter = m.get();
        let Some(left) = meter.left else {
            return true;
        };
        match left.checked_sub(steps) {
            Some(left) => meter.left = Some(left),
            None => meter.over = true,
        }
        m.set(meter);
        !meter.over
    })
}

/// Counts the steps of the upon render it is alive for (and restores the meter after).
struct Metered {
    before: Meter,
}

impl Metered {
    fn start(steps: u64) -> Metered {
        let before = UPON_STEPS.with(|m| {
            m.replace(Meter {
                left: Some(steps),
                over: false,
            })
        });
        Metered { before }
    }

    fn went_over(&self) -> bool {
        UPON_STEPS.with(|m| m.get().over)
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        UPON_STEPS.with(|m| m.set(self.before));
    }
}

/// The formatter put before every `{% endfor %}` of upon's source: writes nothing, takes one
/// turn's steps (its value) from the budget.
fn format_turn(_: &mut upon::fmt::Formatter<'_>, value: &Value) -> upon::fmt::Result {
    let steps = match value {
        Value::Integer(n) => u64::try_from(*n).unwrap_or(1).max(1),
        _ => 1,
    };
    if charge_steps(steps) {
        Ok(())
    } else {
        Err("the render is over its budget of steps".into())
    }
}

fn format_escaped(f: &mut upon::fmt::Formatter<'_>, value: &Value) -> upon::fmt::Result {
    match value {
        Value::String(s) => escape_html_into(f, s),
        Value::None => Ok(()),
        other => upon::fmt::default(f, other),
    }
}

fn format_raw(f: &mut upon::fmt::Formatter<'_>, value: &Value) -> upon::fmt::Result {
    match value {
        Value::String(s) => {
            std::fmt::Write::write_str(f, s)?;
            Ok(())
        }
        Value::None => Ok(()),
        other => upon::fmt::default(f, other),
    }
}

/// What HTML-escaping replaces a byte with, if anything.
fn escape_of(b: u8) -> Option<&'static str> {
    match b {
        b'&' => Some("&amp;"),
        b'<' => Some("&lt;"),
        b'>' => Some("&gt;"),
        b'"' => Some("&quot;"),
        b'\'' => Some("&#x27;"),
        _ => None,
    }
}

/// The position of the first byte at or after `from` that HTML-escaping replaces.
///
/// Most values need no escaping at all, so this is the hot loop: it tests eight bytes at a time.
/// `&`/`'` and `<`/`>` differ in one bit, so three byte-wise compares cover all five bytes.
fn find_escape(bytes: &[u8], from: usize) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    // Non-zero in a byte's high bit where that byte of `v` was zero (exact as a whole).
    let zero = |v: u64| v.wrapping_sub(LO) & !v;
    let mut i = from;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let Ok(word) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let w = u64::from_le_bytes(word);
        let amp_apos = zero((w & !LO) ^ (LO * 0x26));
        let lt_gt = zero((w & !(LO * 2)) ^ (LO * 0x3c));
        let quot = zero(w ^ (LO * 0x22));
        if (amp_apos | lt_gt | quot) & HI != 0 {
            break;
        }
        i += 8;
    }
    let rest = bytes.get(i..)?;
    rest.iter()
        .position(|&b| escape_of(b).is_some())
        .map(|p| i + p)
}

fn escape_html_into(f: &mut impl std::fmt::Write, s: &str) -> upon::fmt::Result {
    escape_html_with(s, |part| f.write_str(part))?;
    Ok(())
}

/// HTML-escapes `s`, handing the pieces to `write`: shared by upon's formatter and the fast
/// renderer, so both escape identically.
pub(crate) fn escape_html_with<E>(
    s: &str,
    mut write: impl FnMut(&str) -> Result<(), E>,
) -> Result<(), E> {
    let bytes = s.as_bytes();
    let mut start = 0;
    while let Some(i) = find_escape(bytes, start) {
        // Escaped bytes are ASCII, so these cuts are on char boundaries.
        write(&s[start..i])?;
        write(escape_of(bytes[i]).unwrap_or_default())?;
        start = i + 1;
    }
    write(&s[start..])
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

/// Where upon's alternate form says an error is: `<name>:<line>:<column>`.
fn error_position(e: &upon::Error) -> Option<String> {
    format!("{e:#}")
        .lines()
        .find_map(|l| l.trim().strip_prefix("--> ").map(|p| p.trim().to_string()))
}

/// The included template an error happened in (upon names the main template `<anonymous>`).
fn error_template(e: &upon::Error) -> Option<String> {
    let pos = error_position(e)?;
    let mut parts = pos.rsplitn(3, ':');
    let (_, _, name) = (parts.next()?, parts.next()?, parts.next()?);
    (name != "<anonymous>").then(|| name.to_string())
}

/// An upon error as one line, with its line and column when upon gives them.
pub fn one_line(e: &upon::Error) -> String {
    one_line_mapped(e, |_, _, _| None)
}

/// [`one_line`], with upon's position moved by `map` (given the template's name, `None` for
/// the main one, and the line and column; `None`: keep it).
fn one_line_mapped(
    e: &upon::Error,
    map: impl Fn(Option<&str>, usize, usize) -> Option<(usize, usize)>,
) -> String {
    let pos = error_position(e);
    let msg = e.to_string().replace('\n', " ");
    // The position reads "<name>:<line>:<column>".
    let mut parts = pos.as_deref().unwrap_or("").rsplitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(col), Some(line), name) if !col.is_empty() && !line.is_empty() => {
            let name = name.filter(|n| *n != "<anonymous>");
            match (line.parse(), col.parse()) {
                (Ok(l), Ok(c)) => {
                    let (l, c) = map(name, l, c).unwrap_or((l, c));
                    format!("{msg} at line {l}, column {c}")
                }
                _ => format!("{msg} at line {line}, column {col}"),
            }
        }
        _ => msg,
    }
}

/// The template names in `{% include "name" %}` / `{% include "name" with x %}` statements.
pub fn include_names(source: &str) -> Vec<String> {
    include_statements(source).0
}

/// What upon 0.11 cannot render reliably, refused at compile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unreliable {
    /// An include without `with` inside a `with` block.
    IncludeInWith,
    /// A filter given arguments in `{{ }}` (`{{ x | raw: 1 }}`).
    FilterArguments,
}

/// The names included, and those of them included `with` a value (modules), each list in
/// order of first appearance: the `include` tags as upon reads them (tags found where upon's
/// lexer finds them, so nothing inside a string literal; names unescaped as upon does). Also
/// where the first construct upon cannot render reliably is, if any.
fn include_statements(source: &str) -> (Vec<String>, Vec<String>, Option<(usize, Unreliable)>) {
    use crate::render_syntax::{find_at, starts_with, Delim};
    let sb = source.as_bytes();
    let ws = |i: usize| {
        i + sb[i..]
            .iter()
            .take_while(|b| b.is_ascii_whitespace())
            .count()
    };
    let mut names: Vec<String> = Vec::new();
    let mut modules: Vec<String> = Vec::new();
    let mut with_depth = 0usize;
    let mut unreliable = None;
    let mut pos = 0;
    while let Some((delim, _, start, after)) = find_at(sb, pos) {
        if !matches!(delim, Delim::BeginExpr | Delim::BeginBlock) {
            pos = after;
            continue;
        }
        let i = ws(after);
        let word = |w: &[u8]| {
            sb[i..].starts_with(w)
                && !sb
                    .get(i + w.len())
                    .is_some_and(|&b| b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80)
        };
        if delim == Delim::BeginBlock && word(b"with") {
            with_depth += 1;
        } else if delim == Delim::BeginBlock && word(b"endwith") {
            with_depth = with_depth.saturating_sub(1);
        } else if delim == Delim::BeginBlock && word(b"include") {
            let at = ws(i + 7);
            if let Some((name, end)) = string_literal(source, at) {
                let rest = &sb[ws(end)..];
                let with =
                    rest.starts_with(b"with") && rest.get(4).is_some_and(u8::is_ascii_whitespace);
                if with && !modules.contains(&name) {
                    modules.push(name.clone());
                }
                if !with && with_depth > 0 && unreliable.is_none() {
                    unreliable = Some((start, Unreliable::IncludeInWith));
                }
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        // On to the end of the tag: a delimiter outside string literals.
        let mut j = after;
        pos = loop {
            if let Some((_, _, end)) = starts_with(sb, j) {
                break end;
            }
            match sb.get(j) {
                None => return (names, modules, unreliable),
                Some(b'"') => match string_literal(source, j) {
                    Some((_, end)) => j = end,
                    None => return (names, modules, unreliable),
                },
                // `| name:` in an expression: a filter with arguments.
                Some(b'|') if delim == Delim::BeginExpr => {
                    let k = ws(j + 1);
                    let name = sb[k..]
                        .iter()
                        .take_while(|&&b| b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80)
                        .count();
                    if name > 0 && sb.get(ws(k + name)) == Some(&b':') && unreliable.is_none() {
                        unreliable = Some((j, Unreliable::FilterArguments));
                    }
                    j += 1;
                }
                Some(_) => j += 1,
            }
        };
    }
    (names, modules, unreliable)
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

/// The string literal at `at` as upon's lexer and parser read it (it ends at a `"` not right
/// after a `\`; `\n`, `\r`, `\t`, `\\`, `\"` are escapes), and where it ends.
fn string_literal(source: &str, at: usize) -> Option<(String, usize)> {
    let body = source.get(at..)?.strip_prefix('"')?;
    let mut prev = '"';
    let len = body.char_indices().find_map(|(i, c)| {
        let end = c == '"' && prev != '\\';
        prev = c;
        end.then_some(i)
    })?;
    let raw = &body[..len];
    if raw.contains(['\r', '\n']) {
        return None;
    }
    let mut name = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        name.push(match c {
            '\\' => match chars.next()? {
                'n' => '\n',
                'r' => '\r',
                't' => '\t',
                c @ ('\\' | '"') => c,
                _ => return None,
            },
            c => c,
        });
    }
    Some((name, at + 1 + len + 1))
}

/// Converts JSON to upon's value type (once per snapshot, not per request).
pub fn json_to_value(v: &Json) -> Value {
    match v {
        Json::Null => Value::None,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::String(s.clone()),
        Json::Array(a) => Value::List(a.iter().map(json_to_value).collect()),
        Json::Object(o) => Value::Map(
            o.iter()
                .map(|(k, v)| (k.clone(), json_to_value(v)))
                .collect(),
        ),
    }
}

/// The template context in layers, so that a request's values and a page's dimensions are
/// looked up where they are held rather than copied into one map per request.
#[derive(Clone, Copy, Debug)]
pub struct Scope<'a> {
    /// Top-level names, searched first; the first match wins.
    pub named: &'a [(&'a str, &'a Value)],
    /// A map whose members are the other top-level names (page mode: the snapshot's context).
    pub base: Option<&'a Value>,
}

impl<'a> Scope<'a> {
    /// A context that is one value.
    pub fn of(ctx: &'a Value) -> Scope<'a> {
        Scope {
            named: &[],
            base: Some(ctx),
        }
    }

    /// The context as one value, for upon: borrowed when there is nothing to add, else a copy.
    pub fn to_value(&self) -> Cow<'a, Value> {
        match (self.named, self.base) {
            ([], Some(base)) => Cow::Borrowed(base),
            (named, base) => {
                let mut map = match base {
                    Some(Value::Map(m)) => m.clone(),
                    _ => BTreeMap::new(),
                };
                for (name, v) in named.iter().rev() {
                    map.insert((*name).to_string(), (*v).clone());
                }
                Cow::Owned(Value::Map(map))
            }
        }
    }
}

/// What the template sees as `page`.
#[derive(Debug, Clone, Copy)]
pub struct PageInfo<'a> {
    pub key: &'a str,
    /// The version number, or the field name (`predeploy`, `abVersion`).
    pub version: &'a str,
    pub variant: &'a str,
}

/// `page` as the template sees it.
pub fn page_value(page: PageInfo<'_>) -> Value {
    let mut p = BTreeMap::new();
    p.insert("key".to_string(), Value::String(page.key.to_string()));
    p.insert(
        "version".to_string(),
        Value::String(page.version.to_string()),
    );
    p.insert(
        "variant".to_string(),
        Value::String(page.variant.to_string()),
    );
    Value::Map(p)
}

/// `request` as the template sees it: the `dynpage_var` values, by name.
pub fn request_value(request: impl IntoIterator<Item = (String, String)>) -> Value {
    Value::Map(
        request
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect(),
    )
}

/// The template context: `data`'s fields at top level, plus `page` and `request`.
pub fn build_context(
    data: &serde_json::Map<String, Json>,
    page: PageInfo<'_>,
    request: &[(String, String)],
) -> Value {
    let mut ctx: BTreeMap<String, Value> = data
        .iter()
        .map(|(k, v)| (k.clone(), json_to_value(v)))
        .collect();
    ctx.insert("page".to_string(), page_value(page));
    ctx.insert(
        "request".to_string(),
        request_value(request.iter().cloned()),
    );
    Value::Map(ctx)
}

/// Why a render failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderError {
    /// upon's message, on one line.
    pub message: String,
    /// The included template it failed in (`None`: the main template, or not known).
    pub template: Option<String>,
    /// Includes nested deeper than [`MAX_INCLUDE_DEPTH`] (a template including itself).
    pub too_deep: bool,
    /// The render went over its budget (the page's fault, never one module's).
    pub exceeded: Option<Exceeded>,
}

impl RenderError {
    /// upon's error, its position in the author's source of the template it names.
    fn from_upon(
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

    fn over(exceeded: Exceeded) -> RenderError {
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

/// Renders `template` with `ctx` into `out` (appending), within the default [`Limits`].
/// `includes` resolves included names.
pub fn render_into<'a>(
    template: &'a CompiledTemplate,
    ctx: Scope<'a>,
    includes: &'a [(&'a str, &'a CompiledTemplate)],
    out: &mut Vec<u8>,
) -> Result<(), RenderError> {
    render_limited(template, ctx, includes, &Limits::default(), out)
}

/// Renders `template` with `ctx` into `out` (appending), within `limits`. `includes` resolves
/// included names.
///
/// Uses the fast renderer when the template and every include it reaches have a fast program;
/// if that fails for any reason but its budget, the output is rolled back and upon renders it
/// (so errors are always upon's). Over budget, the output is rolled back and the render fails.
pub fn render_limited<'a>(
    template: &'a CompiledTemplate,
    ctx: Scope<'a>,
    includes: &'a [(&'a str, &'a CompiledTemplate)],
    limits: &Limits,
    out: &mut Vec<u8>,
) -> Result<(), RenderError> {
    let start = out.len();
    match render_fast_only(template, ctx, includes, limits, out) {
        Some(Ok(())) => return Ok(()),
        Some(Err(Stop::Over(over))) => {
            out.truncate(start);
            return Err(RenderError::over(over.exceeded(limits)));
        }
        Some(Err(Stop::Fallback)) => out.truncate(start),
        None => {}
    }
    render_with_upon_limited(template, ctx, includes, limits, out)
}

/// Renders with the fast renderer alone: `None` if `template` or an include it reaches has no
/// fast program, `Some(Err(_))` if the render failed (leaving partial output in `out`).
pub(crate) fn render_fast_only<'a>(
    template: &'a CompiledTemplate,
    ctx: Scope<'a>,
    includes: &'a [(&'a str, &'a CompiledTemplate)],
    limits: &Limits,
    out: &mut Vec<u8>,
) -> Option<Result<(), Stop>> {
    let program = fast_program(template, includes)?;
    let resolve = |name: &str| {
        let (_, t) = includes.iter().find(|(n, _)| *n == name)?;
        Some((t.fast.as_ref()?, t.source_text()))
    };
    Some(render_fast::render(
        program,
        template.source_text(),
        ctx,
        &resolve,
        limits,
        out,
    ))
}

/// `template`'s fast program if it and every template it can reach through `includes` have one.
///
/// Names missing from `includes` do not matter here: upon fails only if such an include is
/// actually reached, and then so does the fast renderer, which falls back to upon.
fn fast_program<'a>(
    template: &'a CompiledTemplate,
    includes: &'a [(&'a str, &'a CompiledTemplate)],
) -> Option<&'a render_fast::Program> {
    let main = template.fast.as_ref()?;
    let mut seen: Vec<&str> = Vec::new();
    let mut todo = vec![main];
    while let Some(program) = todo.pop() {
        for name in program.include_names() {
            if seen.contains(&name) {
                continue;
            }
            seen.push(name);
            if let Some((_, t)) = includes.iter().find(|(n, _)| *n == name) {
                todo.push(t.fast.as_ref()?);
            }
        }
    }
    Some(main)
}

/// How a page is rendered.
#[derive(Debug, Clone, Copy, Default)]
pub struct RenderOptions<'a> {
    /// The render's budget.
    pub limits: Limits,
    /// Leave out a module that fails (`dynpage_module_errors skip`) instead of failing the page.
    pub skip_failed_modules: bool,
    /// Modules found failing for the same inputs before: left out from the first render on.
    pub known_failed_modules: &'a [String],
}

/// A module left out of a page because it failed to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedModule {
    pub name: String,
    pub cause: String,
}

/// Renders like [`render_limited`], except that a module (a template included `with` a value)
/// that fails is left out, rendering as nothing wherever it is included, and reported in
/// `skipped`, instead of failing the page: the way nginx SSI leaves out a failed include. The
/// page is rendered again without it; errors outside modules, and a render over its budget,
/// still fail the page. The modules named in `known_failed` (found failing for the same inputs
/// before) are left out from the first render on, and not reported again.
pub fn render_skipping_failed_modules<'a>(
    template: &'a CompiledTemplate,
    ctx: Scope<'a>,
    includes: &[(&'a str, &'a CompiledTemplate)],
    limits: &Limits,
    known_failed: &'a [String],
    out: &mut Vec<u8>,
    skipped: &mut Vec<SkippedModule>,
) -> Result<(), RenderError> {
    let start = out.len();
    let empty = empty_template();
    let mut current: Vec<(&str, &CompiledTemplate)> = includes.to_vec();
    let mut left_out: Vec<&str> = Vec::new();
    if let Some(empty) = empty.as_deref() {
        for name in known_failed {
            leave_out(&mut current, name, empty);
            left_out.push(name);
        }
    }
    loop {
        let err = match render_limited(template, ctx, &current, limits, out) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        out.truncate(start);
        let Some(empty) = empty.as_deref() else {
            return Err(err);
        };
        if err.exceeded.is_some() {
            return Err(err);
        }
        let Some(culprit) = failed_module(template, &current, &left_out, &err) else {
            return Err(err);
        };
        skipped.push(SkippedModule {
            name: culprit.to_string(),
            cause: err.message.clone(),
        });
        left_out.push(culprit);
        leave_out(&mut current, culprit, empty);
    }
}

/// Replaces the template included as `name` with `empty`.
fn leave_out<'t>(
    current: &mut Vec<(&'t str, &'t CompiledTemplate)>,
    name: &'t str,
    empty: &'t CompiledTemplate,
) {
    match current.iter_mut().find(|(n, _)| *n == name) {
        Some(slot) => slot.1 = empty,
        None => current.push((name, empty)),
    }
}

/// The module to leave out for `err`: the one it happened in, else one that includes where it
/// happened, else (includes too deep) one that includes itself. `None`: not a module's fault.
fn failed_module<'a>(
    main: &'a CompiledTemplate,
    includes: &[(&'a str, &'a CompiledTemplate)],
    left_out: &[&str],
    err: &RenderError,
) -> Option<&'a str> {
    let mut modules: Vec<&'a str> = Vec::new();
    for t in std::iter::once(main).chain(includes.iter().map(|(_, t)| *t)) {
        for m in t.modules() {
            if !left_out.contains(&m.as_str()) && !modules.contains(&m.as_str()) {
                modules.push(m.as_str());
            }
        }
    }
    let reaches = |from: &str, to: &str| -> bool {
        let mut seen: Vec<&str> = Vec::new();
        let mut todo: Vec<&str> = vec![from];
        while let Some(name) = todo.pop() {
            let Some((_, t)) = includes.iter().find(|(n, _)| *n == name) else {
                continue;
            };
            for inc in t.includes() {
                if inc == to {
                    return true;
                }
                if !seen.contains(&inc.as_str()) {
                    seen.push(inc.as_str());
                    todo.push(inc.as_str());
                }
            }
        }
        false
    };
    if let Some(at) = err.template.as_deref() {
        if let Some(m) = modules.iter().find(|m| **m == at) {
            return Some(m);
        }
        return modules.into_iter().find(|m| reaches(m, at));
    }
    if err.too_deep {
        return modules.into_iter().find(|m| reaches(m, m));
    }
    None
}

/// Renders like [`render_into`], always with upon: the reference the fast renderer must match.
pub fn render_with_upon<'a>(
    template: &'a CompiledTemplate,
    ctx: Scope<'a>,
    includes: &'a [(&'a str, &'a CompiledTemplate)],
    out: &mut Vec<u8>,
) -> Result<(), RenderError> {
    render_with_upon_limited(template, ctx, includes, &Limits::default(), out)
}

/// An output that refuses to grow past a length.
struct Bounded<'o> {
    out: &'o mut Vec<u8>,
    limit: usize,
    over: &'o Cell<Option<Exceeded>>,
    max_output: usize,
}

impl std::io::Write for Bounded<'_> {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_all(buf).map(|()| buf.len())
    }

    #[inline]
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if self.out.len().saturating_add(buf.len()) > self.limit {
            self.over.set(Some(Exceeded::Output(self.max_output)));
            return Err(std::io::Error::other("the output is over its bound"));
        }
        self.out.extend_from_slice(buf);
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Renders like [`render_limited`], always with upon. Its budget: the output goes through a
/// bounded writer, includes are counted where upon asks for them (with their steps), and loop
/// turns by the formatter each loop ends with (see [`limits::instrument`]).
pub fn render_with_upon_limited<'a>(
    template: &'a CompiledTemplate,
    ctx: Scope<'a>,
    includes: &'a [(&'a str, &'a CompiledTemplate)],
    limits: &Limits,
    out: &mut Vec<u8>,
) -> Result<(), RenderError> {
    let start = out.len();
    let meter = Metered::start(limits.max_steps);
    if !charge_steps(template.steps) {
        return Err(RenderError::over(Exceeded::Steps(limits.max_steps)));
    }
    let over: Cell<Option<Exceeded>> = Cell::new(None);
    let includes_left = Cell::new(limits.max_includes);
    let ctx = ctx.to_value();
    let renderer = template
        .template
        .render_from(engine(), &ctx)
        .with_template_fn(|name| {
            let (_, t) = includes
                .iter()
                .find(|(n, _)| *n == name)
                .ok_or_else(|| format!("included template \"{name}\" is not in the store"))?;
            let exceeded = match includes_left.get().checked_sub(1) {
                None => Some(Exceeded::Includes(limits.max_includes)),
                Some(_) if !charge_steps(t.steps) => Some(Exceeded::Steps(limits.max_steps)),
                Some(left) => {
                    includes_left.set(left);
                    None
                }
            };
            if let Some(exceeded) = exceeded {
                over.set(Some(exceeded));
                return Err(exceeded.to_string());
            }
            Ok(&t.template)
        });
    let mut writer = Bounded {
        out: &mut *out,
        limit: start.saturating_add(limits.max_output),
        over: &over,
        max_output: limits.max_output,
    };
    // upon 0.11 can panic (the cases known are refused at compile, see `unreliable_error`):
    // a render error, never a panic that would cross into nginx.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        renderer.to_writer(&mut writer)
    }));
    let steps_over = meter.went_over();
    drop(meter);
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            let exceeded = over
                .get()
                .or(steps_over.then_some(Exceeded::Steps(limits.max_steps)));
            match exceeded {
                Some(exceeded) => {
                    out.truncate(start);
                    Err(RenderError::over(exceeded))
                }
                None => Err(RenderError::from_upon(&e, template, includes)),
            }
        }
        Err(_) => {
            out.truncate(start);
            Err(RenderError {
                message: "the template engine failed on this template".into(),
                template: None,
                too_deep: false,
                exceeded: None,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(src: &str, data: &str) -> Result<String, String> {
        let t = compile(src.to_string()).map_err(|e| e.to_string())?;
        let data: Json = serde_json::from_str(data).unwrap();
        let ctx = build_context(
            data.as_object().unwrap(),
            PageInfo {
                key: "/k",
                version: "7",
                variant: "production",
            },
            &[],
        );
        let mut out = Vec::new();
        render_into(&t, Scope::of(&ctx), &[], &mut out).map_err(|e| e.to_string())?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn escapes_by_default_raw_opts_out() {
        assert_eq!(
            render("{{ x }}|{{ x | raw }}", r#"{"x":"<a href='1'>&\"</a>"}"#).unwrap(),
            "&lt;a href=&#x27;1&#x27;&gt;&amp;&quot;&lt;/a&gt;|<a href='1'>&\"</a>"
        );
    }

    #[test]
    fn scalars_loops_and_page_info() {
        assert_eq!(
            render(
                "{% for i in xs %}{{ i }},{% endfor %}{{ b }} {{ f }} {{ page.key }}@{{ page.version }} {{ page.variant }}",
                r#"{"xs":[1,2],"b":true,"f":1.5}"#
            )
            .unwrap(),
            "1,2,true 1.5 /k@7 production"
        );
    }

    #[test]
    fn escaping_matches_a_byte_by_byte_reference() {
        let reference = |s: &str| {
            s.chars()
                .map(|c| match c {
                    '&' => "&amp;".to_string(),
                    '<' => "&lt;".to_string(),
                    '>' => "&gt;".to_string(),
                    '"' => "&quot;".to_string(),
                    '\'' => "&#x27;".to_string(),
                    c => c.to_string(),
                })
                .collect::<String>()
        };
        // Every ASCII character and a few multi-byte ones, at every offset within a word.
        let alphabet: Vec<char> = (0u8..128).map(char::from).chain(['é', '✓', '世']).collect();
        let mut cases = Vec::new();
        for c in &alphabet {
            for pad in 0..17 {
                cases.push(format!("{}{c}{}", "a".repeat(pad), "b".repeat(16 - pad)));
            }
        }
        cases.push(alphabet.iter().collect());
        cases.push("plain text that needs no escaping at all, twice as long".into());
        cases.push("&&<<>>\"\"''".into());
        for s in cases {
            let mut out = String::new();
            escape_html_into(&mut out, &s).unwrap();
            assert_eq!(out, reference(&s), "{s:?}");
        }
    }

    #[test]
    fn null_renders_empty() {
        assert_eq!(render("[{{ n }}]", r#"{"n":null}"#).unwrap(), "[]");
    }

    #[test]
    fn syntax_errors_name_the_position() {
        let e = compile("line one\n{{ x ".to_string())
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2, column"), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn missing_variable_is_a_render_error() {
        let e = render("{{ nope.deeper }}", "{}").unwrap_err();
        assert!(e.starts_with("render failed"), "{e}");
    }

    #[test]
    fn includes_are_found_and_rendered() {
        let src =
            r#"<{% include "banner" %}>{%- include "foot" with page -%}{% include "banner" %}"#;
        assert_eq!(include_names(src), vec!["banner", "foot"]);
        let main = compile(src.to_string()).unwrap();
        let banner = compile("B{{ page.key }}".to_string()).unwrap();
        let foot = compile("F{{ key }}".to_string()).unwrap();
        let ctx = build_context(
            &serde_json::Map::new(),
            PageInfo {
                key: "/k",
                version: "1",
                variant: "production",
            },
            &[],
        );
        let mut out = Vec::new();
        render_into(
            &main,
            Scope::of(&ctx),
            &[("banner", &banner), ("foot", &foot)],
            &mut out,
        )
        .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "<B/k>F/kB/k");
        let mut out = Vec::new();
        let e = render_into(&main, Scope::of(&ctx), &[("banner", &banner)], &mut out).unwrap_err();
        assert!(e.message.contains("foot"), "{e}");
    }

    #[test]
    fn recursive_include_fails_instead_of_looping() {
        let me = compile(r#"x{% include "me" %}"#.to_string()).unwrap();
        let ctx = Value::Map(BTreeMap::new());
        let mut out = Vec::new();
        assert!(render_into(&me, Scope::of(&ctx), &[("me", &me)], &mut out).is_err());
    }

    #[test]
    fn request_values_are_visible() {
        let t = compile("{{ request.device }}".to_string()).unwrap();
        let ctx = build_context(
            &serde_json::Map::new(),
            PageInfo {
                key: "k",
                version: "1",
                variant: "gray",
            },
            &[("device".into(), "<m>".into())],
        );
        let mut out = Vec::new();
        render_into(&t, Scope::of(&ctx), &[], &mut out).unwrap();
        assert_eq!(out, b"&lt;m&gt;");
    }
}

/// Nesting limits, the compile stack and the render budget, through compile and both renderers.
#[cfg(test)]
mod limit_tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::limits::{
        COMPILE_STACK_BYTES, MAX_BLOCK_NESTING, MAX_EXPR_NESTING, MAX_INCLUDES, MAX_STEPS,
    };

    fn ctx_of(data: serde_json::Value) -> Value {
        build_context(
            data.as_object().expect("an object"),
            PageInfo {
                key: "/k",
                version: "1",
                variant: "production",
            },
            &[],
        )
    }

    fn on_stack<T: Send + 'static>(bytes: usize, f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new()
            .stack_size(bytes)
            .spawn(f)
            .expect("spawn")
            .join()
            .expect("no panic")
    }

    /// Templates at both limits at once, in every shape upon's compiler recurses on.
    fn at_the_limits() -> Vec<String> {
        let n = MAX_BLOCK_NESTING;
        let e = MAX_EXPR_NESTING;
        let parens = format!("{}x{}", "(".repeat(e), ")".repeat(e));
        // (After `for z in`, upon lexes a number as an index: a literal list of names.)
        let list = format!("{}y{}", "[".repeat(e), "]".repeat(e));
        vec![
            // Nested ifs, the deepest with the deepest condition.
            format!(
                "{}{{% if {parens} %}}y{{% endif %}}{}",
                "{% if a %}".repeat(n - 1),
                "{% endif %}".repeat(n - 1)
            ),
            // for and with, the deepest looping over a nested list literal.
            format!(
                "{}{{% for z in {list} %}}{{{{ z }}}}{{% endfor %}}{}",
                "{% for x in xs %}{% with x as y %}".repeat((n - 1) / 2),
                "{% endwith %}{% endfor %}".repeat((n - 1) / 2)
            ),
            // An else-if chain.
            format!(
                "{{% if a %}}1{}{{% else %}}{{{{ {parens} }}}}{{% endif %}}",
                "{% else if b %}2".repeat(n - 1)
            ),
            // Filters, and a map literal.
            format!(
                "{}{{{{ x{} }}}}{{{{ {}1{} | raw }}}}{}",
                "{% if a %}".repeat(n - 1),
                " | raw".repeat(e),
                "{\"k\": ".repeat(e - 2),
                " }".repeat(e - 2),
                "{% endif %}".repeat(n - 1)
            ),
        ]
    }

    #[test]
    fn templates_at_the_limits_compile_on_a_quarter_of_the_compile_stack() {
        // Measured: a release build compiles these within 256 KiB; a debug build's frames are
        // about eight times larger, so it gets the whole stack the fetch threads get.
        let stack = if cfg!(debug_assertions) {
            COMPILE_STACK_BYTES
        } else {
            COMPILE_STACK_BYTES / 4
        };
        for src in at_the_limits() {
            let shown = src.chars().take(60).collect::<String>();
            let result = on_stack(stack, move || {
                compile(src)
                    .map(|t| t.has_fast_path())
                    .map_err(|e| e.to_string())
            });
            assert!(result.is_ok(), "{shown}...: {result:?}");
        }
    }

    #[test]
    fn deeper_templates_are_refused_before_upon_without_recursing() {
        // The shapes of issue 12 D1, and far deeper: refused on a stack far too small for upon
        // to compile them, so nothing recursed.
        let cases = [
            (
                format!("{{{{ {}x{} }}}}", "(".repeat(1500), ")".repeat(1500)),
                false,
                (1, 104),
            ),
            (
                format!("{{{{ {}x{} }}}}", "(".repeat(10_000), ")".repeat(10_000)),
                false,
                (1, 104),
            ),
            (
                format!(
                    "{}x{}",
                    "{% if a %}".repeat(3000),
                    "{% endif %}".repeat(3000)
                ),
                true,
                (1, 1001),
            ),
            (
                format!(
                    "\n{}x{}",
                    "{% if a %}\n".repeat(10_000),
                    "{% endif %}".repeat(10_000)
                ),
                true,
                (102, 1),
            ),
            (
                format!(
                    "{}1{}",
                    "{{ [".to_string() + &"[".repeat(10_000),
                    "]".repeat(10_001) + " }}"
                ),
                false,
                (1, 104),
            ),
            (
                format!("{{{{ x{} }}}}", " | raw".repeat(10_000)),
                false,
                (1, 6 + 6 * 100),
            ),
        ];
        for (src, blocks, (line, column)) in cases {
            let e = on_stack(128 << 10, move || compile(src).map(|_| ()));
            match e {
                Err(TemplateError::TooDeep(d)) => {
                    assert_eq!((d.blocks, d.line, d.column), (blocks, line, column), "{d}");
                }
                other => panic!("refused as too deep expected, got {other:?}"),
            }
        }
        let e = compile(format!(
            "{}x{}",
            "{% if a %}".repeat(101),
            "{% endif %}".repeat(101)
        ))
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "template is nested too deep: blocks (if, else if, for, with) nest more than 100 \
             deep at line 1, column 1001"
        );
    }

    /// `n` templates `t0`..: each includes the next `per` times; the last writes `leaf`.
    fn fan_out(n: usize, per: usize, leaf: &str) -> Vec<(String, CompiledTemplate)> {
        (0..n)
            .map(|i| {
                let src = if i + 1 == n {
                    leaf.to_string()
                } else {
                    format!("{{% include \"t{}\" %}}", i + 1).repeat(per)
                };
                (format!("t{i}"), compile(src).expect("compiles"))
            })
            .collect()
    }

    fn render_fan_out(leaf: &str, limits: &Limits) -> (Result<(), RenderError>, Vec<u8>, Duration) {
        let ts = fan_out(10, 8, leaf);
        let incs: Vec<(&str, &CompiledTemplate)> =
            ts.iter().skip(1).map(|(n, t)| (n.as_str(), t)).collect();
        let ctx = ctx_of(serde_json::json!({}));
        let mut out = Vec::new();
        let start = Instant::now();
        let r = render_limited(&ts[0].1, Scope::of(&ctx), &incs, limits, &mut out);
        (r, out, start.elapsed())
    }

    #[test]
    fn an_include_fan_out_stops_at_the_include_budget() {
        // 8^9 expansions: hours without a budget. The leaf with a string literal is outside the
        // fast subset, so that one renders with upon.
        for leaf in ["x", "{{ \"x\" }}"] {
            let (r, out, took) = render_fan_out(leaf, &Limits::default());
            let e = r.unwrap_err();
            assert_eq!(e.exceeded, Some(Exceeded::Includes(MAX_INCLUDES)), "{leaf}");
            assert!(e.template.is_none());
            assert!(out.is_empty());
            assert!(took < Duration::from_secs(2), "{leaf}: {took:?}");
            assert!(e.to_string().contains("over 10000 includes"), "{e}");
        }
        // With includes to spare, the steps run out instead.
        let limits = Limits {
            max_includes: u32::MAX,
            max_steps: 50_000,
            ..Limits::default()
        };
        for leaf in ["x", "{{ \"x\" }}"] {
            let (r, _, _) = render_fan_out(leaf, &limits);
            assert_eq!(
                r.unwrap_err().exceeded,
                Some(Exceeded::Steps(50_000)),
                "{leaf}"
            );
        }
    }

    #[test]
    fn output_stops_at_its_bound_in_both_renderers() {
        let data = serde_json::json!({"xs": vec![0; 1000], "s": "0123456789".repeat(10)});
        let ctx = ctx_of(data);
        for extra in ["", "{{ \"\" }}"] {
            // 100 MB of output without a bound.
            let t = compile(format!(
                "{{% for a in xs %}}{{% for b in xs %}}{{{{ s }}}}{{% endfor %}}{{% endfor %}}{extra}"
            ))
            .unwrap();
            assert_eq!(t.has_fast_path(), extra.is_empty());
            let mut out = Vec::new();
            let e = render_limited(
                &t,
                Scope::of(&ctx),
                &[],
                &Limits::with_max_output(1 << 20),
                &mut out,
            )
            .unwrap_err();
            assert_eq!(e.exceeded, Some(Exceeded::Output(1 << 20)), "{extra:?}");
            assert!(out.is_empty());
            // Exactly at the bound is fine, a byte over is not.
            let t = compile(format!("{{{{ s }}}}{extra}")).unwrap();
            let mut out = Vec::new();
            render_limited(
                &t,
                Scope::of(&ctx),
                &[],
                &Limits::with_max_output(100),
                &mut out,
            )
            .unwrap();
            assert_eq!(out.len(), 100);
            let mut out = b"before".to_vec();
            let e = render_limited(
                &t,
                Scope::of(&ctx),
                &[],
                &Limits::with_max_output(99),
                &mut out,
            )
            .unwrap_err();
            assert_eq!(e.exceeded, Some(Exceeded::Output(99)));
            assert_eq!(out, b"before");
        }
    }

    #[test]
    fn loops_that_write_nothing_still_count_their_turns() {
        // 10^9 turns that write nothing: upon has no hook per turn, so its source counts them.
        let ctx = ctx_of(serde_json::json!({"xs": vec![0; 1000]}));
        for extra in ["", "{{ \"\" }}"] {
            let t = compile(format!(
                "{{% for a in xs %}}{{% for b in xs -%}}  {{%- for c in xs %}}{{%- endfor %}}\
                 {{% endfor %}}{{% endfor %}}{extra}"
            ))
            .unwrap();
            let start = Instant::now();
            let e = render_into(&t, Scope::of(&ctx), &[], &mut Vec::new()).unwrap_err();
            assert_eq!(e.exceeded, Some(Exceeded::Steps(MAX_STEPS)), "{extra:?}");
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "{:?}",
                start.elapsed()
            );
        }
    }

    #[test]
    fn a_large_legitimate_page_is_within_the_default_budget() {
        // 100,000 loop turns, 20 includes per item of a 40-item list, 1.5 MB of output.
        let skus: Vec<serde_json::Value> = (0..40)
            .map(|i| serde_json::json!({"id": i, "name": format!("sku <{i}>")}))
            .collect();
        let ctx = ctx_of(serde_json::json!({"xs": vec![1; 100_000], "skus": skus}));
        let card = compile("<li>{{ id }}: {{ name }}</li>".to_string()).unwrap();
        for extra in ["", "{{ \"\" }}"] {
            let t = compile(format!(
                "{{% for x in xs %}}{{{{ x }}}},{{% endfor %}}\
                 {{% for s in skus %}}{}{{% endfor %}}{extra}",
                "{% include \"card\" with s %}".repeat(20)
            ))
            .unwrap();
            let mut limited = Vec::new();
            render_limited(
                &t,
                Scope::of(&ctx),
                &[("card", &card)],
                &Limits::default(),
                &mut limited,
            )
            .unwrap();
            let unbounded = Limits {
                max_output: usize::MAX,
                max_includes: u32::MAX,
                max_steps: u64::MAX,
            };
            let mut reference = Vec::new();
            render_limited(
                &t,
                Scope::of(&ctx),
                &[("card", &card)],
                &unbounded,
                &mut reference,
            )
            .unwrap();
            assert_eq!(limited, reference);
            assert!(limited.len() > 200_000);
        }
    }

    #[test]
    fn a_render_over_budget_is_the_page_failing_not_a_module() {
        let ts = fan_out(10, 8, "x");
        let mut incs: Vec<(&str, &CompiledTemplate)> =
            ts.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let main = compile("<{% include \"t0\" with page %}>".to_string()).unwrap();
        let ctx = ctx_of(serde_json::json!({}));
        let (mut out, mut skipped) = (Vec::new(), Vec::new());
        let e = render_skipping_failed_modules(
            &main,
            Scope::of(&ctx),
            &incs,
            &Limits::default(),
            &[],
            &mut out,
            &mut skipped,
        )
        .unwrap_err();
        assert!(e.exceeded.is_some());
        assert!(skipped.is_empty());
        // A module known to fail is left out from the start: one render, nothing reported.
        let bad = compile("{{ nope.deeper }}".to_string()).unwrap();
        incs.push(("bad", &bad));
        let main =
            compile("<{% include \"bad\" with page %}|{% include \"bad\" with page %}>".into())
                .unwrap();
        let known = vec!["bad".to_string()];
        render_skipping_failed_modules(
            &main,
            Scope::of(&ctx),
            &incs,
            &Limits::default(),
            &known,
            &mut out,
            &mut skipped,
        )
        .unwrap();
        assert_eq!(out, b"<|>");
        assert!(skipped.is_empty());
        // Not known: found, reported, left out.
        out.clear();
        render_skipping_failed_modules(
            &main,
            Scope::of(&ctx),
            &incs,
            &Limits::default(),
            &[],
            &mut out,
            &mut skipped,
        )
        .unwrap();
        assert_eq!(out, b"<|>");
        assert_eq!(skipped.len(), 1);
    }

    /// A tiny xorshift, for reproducible random templates.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    /// What plain upon (the author's source, no turn counting) says of `src`: its output or
    /// its error on one line.
    fn plain_upon(src: &str, inc: &str, ctx: &Value) -> Option<Result<String, String>> {
        let main = engine().compile(src.to_string()).ok()?;
        let inc = engine().compile(inc.to_string()).ok()?;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            main.render_from(engine(), ctx)
                .with_template_fn(|_| Ok(&inc))
                .to_string()
        }));
        Some(match result.ok()? {
            Ok(s) => Ok(s),
            Err(e) => Err(one_line(&e)),
        })
    }

    #[test]
    fn counting_turns_changes_nothing_upon_does() {
        // Random fragments, loops and literals among them (outside the fast subset, so upon
        // renders): compiling and rendering the counting source gives exactly what upon gives
        // for the author's source, errors and their positions included.
        let pieces = [
            "{% for x in xs %}",
            "{% for k, v in m %}",
            "{%- for x in xs -%}",
            "{% endfor %}",
            "{%- endfor %}",
            "{% endfor -%}",
            "{{ x }}",
            "{{ k }}",
            "{{ v }}",
            "{{ nope }}",
            "{{ x.y }}",
            "{{ \"lit\" }}",
            "{{ loop.index }}",
            "{% if x %}",
            "{% else %}",
            "{% endif %}",
            "{% include \"inc\" %}",
            "{% include \"inc\" with x %}",
            " ",
            "\n",
            "  ",
            "a",
            "é",
            "世界",
            "{#",
            "#}",
            "{",
            "}",
            "-",
            "{{ [1, 2] }}",
            "{% with x as w %}",
            "{% endwith %}",
            "{{ xs }}",
        ];
        let ctx = ctx_of(serde_json::json!({"xs": [1, 2, 3], "m": {"a": 1, "b": 2}}));
        let inc_src = "<{% for i in xs %}{{ i }}{% endfor %}{{ nope2 }}>";
        let inc = compile(inc_src.to_string()).unwrap();
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        let (mut same_output, mut same_error) = (0, 0);
        for _ in 0..30_000 {
            let n = 1 + rng.below(12);
            let src: String = (0..n).map(|_| pieces[rng.below(pieces.len())]).collect();
            let ours = compile(src.clone());
            let plain = engine().compile(src.clone());
            match (&ours, &plain) {
                (Ok(_), Ok(_)) => {}
                (Err(TemplateError::Syntax(a)), Err(b)) => {
                    assert_eq!(a, &one_line(b), "{src:?}");
                    continue;
                }
                // Refused (see include_in_with_error), though upon compiles it.
                (Err(TemplateError::Syntax(a)), Ok(_)) if a.contains("inside a with block") => {
                    continue
                }
                _ => panic!("{src:?}: ours {:?}, upon's {:?}", ours.err(), plain.err()),
            }
            let Some(expected) = plain_upon(&src, inc_src, &ctx) else {
                continue;
            };
            let Ok(t) = ours else { continue };
            let mut out = Vec::new();
            let got = render_with_upon(&t, Scope::of(&ctx), &[("inc", &inc)], &mut out)
                .map(|()| String::from_utf8(out).unwrap())
                .map_err(|e| e.message);
            match (&got, &expected) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(a, b, "{src:?}");
                    same_output += 1;
                }
                (Err(a), Err(b)) => {
                    assert_eq!(a, b, "{src:?}");
                    same_error += 1;
                }
                _ => panic!("{src:?}: ours {got:?}, upon's {expected:?}"),
            }
        }
        assert!(
            same_output > 1000 && same_error > 1000,
            "{same_output} {same_error}"
        );
    }
}
