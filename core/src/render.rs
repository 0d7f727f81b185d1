//! Rendering with upon: HTML-escaped by default, `| raw` to write as-is, includes from the store.
//!
//! Templates in the subset that [`crate::render_fast`] understands are rendered by it instead,
//! with upon as the authority: any error there renders again with upon.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use serde_json::Value as Json;
pub use upon::Value;

use crate::render_fast;

/// Largest template source accepted, in bytes.
pub const MAX_TEMPLATE_BYTES: usize = 1024 * 1024;
/// Deepest `{% include %}` nesting; deeper (or recursive) includes fail the render.
pub const MAX_INCLUDE_DEPTH: usize = 16;

/// A compiled template and the names it includes.
#[derive(Debug)]
pub struct CompiledTemplate {
    template: upon::Template<'static>,
    /// The same template for the fast renderer, when it is within its subset.
    fast: Option<render_fast::Program>,
    includes: Vec<String>,
    /// The included names that are modules: included `with` their own data somewhere.
    modules: Vec<String>,
    source_len: usize,
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

    /// Whether the fast renderer can render this template (its includes aside).
    pub fn has_fast_path(&self) -> bool {
        self.fast.is_some()
    }

    #[cfg(test)]
    pub(crate) fn source(&self) -> &str {
        self.template.source()
    }
}

/// The shared engine: escaping default formatter, `raw` formatter.
pub fn engine() -> &'static upon::Engine<'static> {
    static ENGINE: OnceLock<upon::Engine<'static>> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut engine = upon::Engine::new();
        engine.set_default_formatter(&format_escaped);
        engine.add_formatter("raw", format_raw);
        engine.set_max_include_depth(MAX_INCLUDE_DEPTH);
        engine
    })
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
    Syntax(String),
}

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TemplateError::TooLarge(n) => write!(
                f,
                "template is {n} bytes, over the {MAX_TEMPLATE_BYTES} byte limit"
            ),
            TemplateError::Syntax(e) => write!(f, "template does not compile: {e}"),
        }
    }
}

impl std::error::Error for TemplateError {}

/// Compiles template source.
pub fn compile(source: String) -> Result<CompiledTemplate, TemplateError> {
    if source.len() > MAX_TEMPLATE_BYTES {
        return Err(TemplateError::TooLarge(source.len()));
    }
    let (includes, modules, include_in_with) = include_statements(&source);
    let source_len = source.len();
    let template = engine()
        .compile(source)
        .map_err(|e| TemplateError::Syntax(one_line(&e)))?;
    // Only after upon accepted the source, so that its syntax errors come first.
    if let Some(at) = include_in_with {
        return Err(include_in_with_error(template.source(), at));
    }
    // Only after upon accepted the source: the fast compiler refuses, never reports, errors.
    let fast = render_fast::compile(template.source());
    Ok(CompiledTemplate {
        template,
        fast,
        includes,
        modules,
        source_len,
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
    let pos = error_position(e);
    let msg = e.to_string().replace('\n', " ");
    // The position reads "<name>:<line>:<column>".
    let mut parts = pos.as_deref().unwrap_or("").rsplitn(3, ':');
    match (parts.next(), parts.next()) {
        (Some(col), Some(line)) if !col.is_empty() && !line.is_empty() => {
            format!("{msg} at line {line}, column {col}")
        }
        _ => msg,
    }
}

/// The template names in `{% include "name" %}` / `{% include "name" with x %}` statements.
pub fn include_names(source: &str) -> Vec<String> {
    include_statements(source).0
}

/// The names included, and those of them included `with` a value (modules), each list in
/// order of first appearance: the `include` tags as upon reads them (tags found where upon's
/// lexer finds them, so nothing inside a string literal; names unescaped as upon does). Also
/// where the first include without `with` inside a `with` block is, if any.
fn include_statements(source: &str) -> (Vec<String>, Vec<String>, Option<usize>) {
    use render_fast::{find_at, starts_with, Delim};
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
    let mut in_with = None;
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
                if !with && with_depth > 0 && in_with.is_none() {
                    in_with = Some(start);
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
                None => return (names, modules, in_with),
                Some(b'"') => match string_literal(source, j) {
                    Some((_, end)) => j = end,
                    None => return (names, modules, in_with),
                },
                Some(_) => j += 1,
            }
        };
    }
    (names, modules, in_with)
}

/// Refuses an include without `with` inside a `with` block (at byte `at` of `source`): upon
/// 0.11 looks the included template's variables up against the `with` variable by comparing
/// slices of the *included* source taken at the *including* template's offsets, so such a
/// render panics (an offset past the end) or reads a variable from the page data or from the
/// `with` block depending on unrelated characters of the included template.
fn include_in_with_error(source: &str, at: usize) -> TemplateError {
    let before = &source[..at];
    let line = before.matches('\n').count() + 1;
    let column = before[before.rfind('\n').map_or(0, |i| i + 1)..]
        .chars()
        .count()
        + 1;
    TemplateError::Syntax(format!(
        "an include without `with` inside a with block at line {line}, column {column}: \
         the template engine cannot render it reliably; include the template `with` a value, \
         or outside the with block"
    ))
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
}

impl RenderError {
    fn from_upon(e: &upon::Error) -> RenderError {
        let message = one_line(e);
        RenderError {
            template: error_template(e),
            too_deep: message.contains("maximum include depth"),
            message,
        }
    }
}

impl std::fmt::Display for RenderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "render failed: {}", self.message)
    }
}

impl std::error::Error for RenderError {}

/// Renders `template` with `ctx` into `out` (appending). `includes` resolves included names.
///
/// Uses the fast renderer when the template and every include it reaches have a fast program;
/// if that fails for any reason, the output is rolled back and upon renders it (so errors are
/// always upon's).
pub fn render_into<'a>(
    template: &'a CompiledTemplate,
    ctx: Scope<'a>,
    includes: &'a [(&'a str, &'a CompiledTemplate)],
    out: &mut Vec<u8>,
) -> Result<(), RenderError> {
    let start = out.len();
    match render_fast_only(template, ctx, includes, out) {
        Some(Ok(())) => return Ok(()),
        Some(Err(render_fast::Fallback)) => out.truncate(start),
        None => {}
    }
    render_with_upon(template, ctx, includes, out)
}

/// Renders with the fast renderer alone: `None` if `template` or an include it reaches has no
/// fast program, `Some(Err(_))` if the render failed (leaving partial output in `out`).
pub(crate) fn render_fast_only<'a>(
    template: &'a CompiledTemplate,
    ctx: Scope<'a>,
    includes: &'a [(&'a str, &'a CompiledTemplate)],
    out: &mut Vec<u8>,
) -> Option<Result<(), render_fast::Fallback>> {
    let program = fast_program(template, includes)?;
    let resolve = |name: &str| {
        let (_, t) = includes.iter().find(|(n, _)| *n == name)?;
        Some((t.fast.as_ref()?, t.template.source()))
    };
    Some(render_fast::render(
        program,
        template.template.source(),
        ctx,
        &resolve,
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

/// A module left out of a page because it failed to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedModule {
    pub name: String,
    pub cause: String,
}

/// Renders like [`render_into`], except that a module (a template included `with` a value) that
/// fails is left out, rendering as nothing wherever it is included, and reported in `skipped`,
/// instead of failing the page: the way nginx SSI leaves out a failed include. The page is
/// rendered again without it; errors outside modules still fail the page.
pub fn render_skipping_failed_modules<'a>(
    template: &'a CompiledTemplate,
    ctx: Scope<'a>,
    includes: &[(&'a str, &'a CompiledTemplate)],
    out: &mut Vec<u8>,
    skipped: &mut Vec<SkippedModule>,
) -> Result<(), RenderError> {
    let start = out.len();
    let mut err = match render_into(template, ctx, includes, out) {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    let Some(empty) = empty_template() else {
        return Err(err);
    };
    let mut current: Vec<(&str, &CompiledTemplate)> = includes.to_vec();
    let mut left_out: Vec<&str> = Vec::new();
    loop {
        out.truncate(start);
        let Some(culprit) = failed_module(template, &current, &left_out, &err) else {
            return Err(err);
        };
        skipped.push(SkippedModule {
            name: culprit.to_string(),
            cause: err.message.clone(),
        });
        left_out.push(culprit);
        match current.iter_mut().find(|(n, _)| *n == culprit) {
            Some(slot) => slot.1 = &*empty,
            None => current.push((culprit, &*empty)),
        }
        match render_into(template, ctx, &current, out) {
            Ok(()) => return Ok(()),
            Err(e) => err = e,
        }
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
    let ctx = ctx.to_value();
    let renderer = template.template.render_from(engine(), &ctx);
    let renderer = if template.includes.is_empty() && includes.is_empty() {
        renderer
    } else {
        renderer.with_template_fn(move |name| {
            includes
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, t)| &t.template)
                .ok_or_else(|| format!("included template \"{name}\" is not in the store"))
        })
    };
    // upon 0.11 can panic (an include without `with` inside a `with` block indexes the wrong
    // source): a render error, never a panic that would cross into nginx.
    let start = out.len();
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        renderer.to_writer(&mut *out)
    })) {
        Ok(result) => result.map_err(|e| RenderError::from_upon(&e)),
        Err(_) => {
            out.truncate(start);
            Err(RenderError {
                message:
                    "the template engine failed on this template (an include inside a with block?)"
                        .into(),
                template: None,
                too_deep: false,
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
