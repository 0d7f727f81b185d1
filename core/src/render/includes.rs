//! The `include` statements of a template source, read as upon reads them, and the first
//! construct in it that upon 0.11 cannot render reliably.

/// The template names in `{% include "name" %}` / `{% include "name" with x %}` statements.
pub fn include_names(source: &str) -> Vec<String> {
    include_statements(source).0
}

/// What upon 0.11 cannot render reliably, refused at compile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Unreliable {
    /// An include without `with` inside a `with` block.
    IncludeInWith,
    /// A filter given arguments in `{{ }}` (`{{ x | raw: 1 }}`).
    FilterArguments,
}

/// The names included, and those of them included `with` a value (modules), each list in
/// order of first appearance: the `include` tags as upon reads them (tags found where upon's
/// lexer finds them, so nothing inside a string literal; names unescaped as upon does). Also
/// where the first construct upon cannot render reliably is, if any.
pub(super) fn include_statements(
    source: &str,
) -> (Vec<String>, Vec<String>, Option<(usize, Unreliable)>) {
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
