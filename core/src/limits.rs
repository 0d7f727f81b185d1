//! Limits that keep one template from crashing a thread or holding the event loop.
//!
//! - **Nesting**, checked on the source before upon sees it: upon's compiler recurses once per
//!   nested block and once per nested bracket or filter, so a template nested thousands deep
//!   overflows the stack of the thread that compiles it. [`scan`] walks the source without
//!   recursing, finding tags exactly where upon's lexer finds them, and refuses a template over
//!   [`MAX_BLOCK_NESTING`] or [`MAX_EXPR_NESTING`] with the line and column where it goes over.
//! - **A render budget** ([`Limits`]): bytes of output, includes expanded, and steps (each piece
//!   of text, `{{ }}` or block a render goes through, every turn of a loop counting its body
//!   again). Going over stops the render with [`Exceeded`], a render failure like any other.
//!
//! upon's renderer offers no hook per loop turn, so loops are made to report their turns: the
//! source upon compiles has `{{ N | __dynpage_turn }}` (a formatter that writes nothing) just
//! before each `{% endfor %}`, `N` being the steps in the loop's body ([`instrument`]). Error
//! positions in that source are mapped back to the author's ([`map_position`]).

use std::fmt;

use crate::render_syntax::{find_at, starts_with, Delim, KEYWORDS};

/// Deepest nesting of blocks (`if`, `for`, `with`), each `else if` counting one more level (upon
/// nests an `else if` inside the `else` of the `if` before it).
pub const MAX_BLOCK_NESTING: usize = 100;

/// Deepest nesting within one tag: brackets, braces and parentheses open at once, plus the
/// filters (`|`) before that point of the tag.
pub const MAX_EXPR_NESTING: usize = 100;

/// Stack of the threads that compile templates (the fetch threads). Compiling a template at both
/// nesting limits needs under 256 KiB in a release build (a test compiles such templates on a
/// quarter of this; a debug build, whose frames are about eight times larger, on all of it); the
/// rest is margin for JSON parsing and the Redis client. Pages are mapped only when touched.
pub const COMPILE_STACK_BYTES: usize = 4 << 20;

/// Default bound of one render's output (`dynpage_render_max_size`).
pub const DEFAULT_MAX_OUTPUT: usize = 4 << 20;

/// Includes one render may expand (a template included 8 times by each of 10 nested templates
/// would otherwise expand 8^9 times).
pub const MAX_INCLUDES: u32 = 10_000;

/// Steps one render may take: each piece of text, `{{ }}` and block it goes through (a loop's
/// body counted again on every turn, an include's template on every expansion). Measured on the
/// 2-core test machine, a step costs 15–80 ns in the fast renderer and 70–200 ns in upon's, so
/// a render that uses them all holds the event loop for tens of milliseconds; a page within the
/// default output bound rarely takes more than 100,000.
pub const MAX_STEPS: u64 = 500_000;

/// The budget of one render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of output.
    pub max_output: usize,
    /// Includes expanded.
    pub max_includes: u32,
    /// Steps taken.
    pub max_steps: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_output: DEFAULT_MAX_OUTPUT,
            max_includes: MAX_INCLUDES,
            max_steps: MAX_STEPS,
        }
    }
}

impl Limits {
    /// The default limits with another output bound.
    pub fn with_max_output(max_output: usize) -> Limits {
        Limits {
            max_output,
            ..Limits::default()
        }
    }
}

/// Which part of a render's budget ran out (with its bound).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exceeded {
    Output(usize),
    Includes(u32),
    Steps(u64),
}

impl fmt::Display for Exceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exceeded::Output(n) => write!(
                f,
                "the output is over {n} bytes (the limit set by dynpage_render_max_size)"
            ),
            Exceeded::Includes(n) => write!(
                f,
                "it expands over {n} includes (templates that include others many times over?)"
            ),
            Exceeded::Steps(n) => write!(
                f,
                "it takes over {n} steps (loops or includes that repeat too much?)"
            ),
        }
    }
}

/// A template nested deeper than the limits, and where it first goes over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooDeep {
    /// Blocks (`if`, `for`, `with`) rather than an expression's brackets and filters.
    pub blocks: bool,
    /// 1-based line of the tag (blocks) or character (expressions) that goes over.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl fmt::Display for TooDeep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.blocks {
            write!(
                f,
                "blocks (if, else if, for, with) nest more than {MAX_BLOCK_NESTING} deep"
            )?;
        } else {
            write!(
                f,
                "an expression nests brackets, parentheses and filters more than \
                 {MAX_EXPR_NESTING} deep"
            )?;
        }
        write!(f, " at line {}, column {}", self.line, self.column)
    }
}

impl std::error::Error for TooDeep {}

/// The end of a `for` loop, where its turns are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LoopEnd {
    /// Byte offset of the `{% endfor %}` tag.
    pub at: usize,
    /// Whether that tag trims the text before it (`{%-`).
    pub trim: bool,
    /// Steps in the loop's body (its end tag included): what one turn costs at most.
    pub weight: u64,
}

/// What [`scan`] found in a template within the limits.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// Every `for` loop's end, in source order.
    pub loop_ends: Vec<LoopEnd>,
    /// Steps in the whole template: pieces of text and tags.
    pub steps: u64,
}

/// A block left open.
enum Open {
    If { chained: bool, has_else: bool },
    For { steps_at: u64 },
    With,
}

/// 1-based line and column (in characters) of byte offset `at`.
pub(crate) fn line_column(source: &str, at: usize) -> (usize, usize) {
    let before = source.get(..at).unwrap_or(source);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    (line, before[line_start..].chars().count() + 1)
}

/// Walks `source` as upon's lexer and parser would, without recursing, and checks its nesting.
///
/// Where upon would fail with a syntax error, the walk stops and reports what it saw so far
/// (upon reports the error, and recurses no further than the walk went). Everything it counts
/// is an upper bound of what upon builds, so a template it passes compiles within
/// [`COMPILE_STACK_BYTES`].
pub(crate) fn scan(source: &str) -> Result<Scan, TooDeep> {
    let sb = source.as_bytes();
    let too_deep = |blocks: bool, at: usize| {
        let (line, column) = line_column(source, at);
        TooDeep {
            blocks,
            line,
            column,
        }
    };
    let mut found = Scan::default();
    let mut open: Vec<Open> = Vec::new();
    let mut pos = 0;
    loop {
        let Some((delim, trim, start, after)) = find_at(sb, pos) else {
            if pos < sb.len() {
                found.steps += 1;
            }
            return Ok(found);
        };
        if pos < start {
            found.steps += 1;
        }
        let close = match delim {
            Delim::BeginComment => {
                match find_at(sb, after) {
                    Some((Delim::EndComment, _, _, end)) => pos = end,
                    // Unclosed, or another tag inside: upon fails here.
                    _ => return Ok(found),
                }
                continue;
            }
            Delim::BeginExpr => Delim::EndExpr,
            Delim::BeginBlock => Delim::EndBlock,
            // An end tag in text: upon fails here.
            _ => return Ok(found),
        };
        let tag = match lex_tag(source, after, close) {
            Ok(Some(tag)) => tag,
            Ok(None) => return Ok(found),
            Err(at) => return Err(too_deep(false, at)),
        };
        found.steps += 1;
        pos = tag.end;
        if close != Delim::EndBlock {
            continue;
        }
        let applied = match tag.words {
            [Some("if"), _] => {
                open.push(Open::If {
                    chained: false,
                    has_else: false,
                });
                true
            }
            [Some("else"), second] => match open.last_mut() {
                Some(Open::If { has_else, .. }) if !*has_else => {
                    *has_else = true;
                    if second == Some("if") {
                        open.push(Open::If {
                            chained: true,
                            has_else: false,
                        });
                    }
                    true
                }
                _ => false,
            },
            [Some("endif"), _] => loop {
                match open.pop() {
                    Some(Open::If { chained: true, .. }) => {}
                    Some(Open::If { chained: false, .. }) => break true,
                    _ => break false,
                }
            },
            [Some("for"), _] => {
                open.push(Open::For {
                    steps_at: found.steps,
                });
                true
            }
            [Some("endfor"), _] => match open.pop() {
                Some(Open::For { steps_at }) => {
                    found.loop_ends.push(LoopEnd {
                        at: start,
                        trim,
                        weight: found.steps - steps_at,
                    });
                    true
                }
                _ => false,
            },
            [Some("with"), _] => {
                open.push(Open::With);
                true
            }
            [Some("endwith"), _] => matches!(open.pop(), Some(Open::With)),
            [Some("include"), _] => true,
            // Not a block upon knows: it fails here.
            _ => false,
        };
        if !applied {
            return Ok(found);
        }
        if open.len() > MAX_BLOCK_NESTING {
            return Err(too_deep(true, start));
        }
    }
}

/// A tag body as [`scan`] needs it.
struct Tag<'s> {
    /// Just past the end delimiter.
    end: usize,
    /// The first two tokens, when they are words (a block's keywords).
    words: [Option<&'s str>; 2],
}

/// Lexes a tag body from `i` like upon's lexer (`lex_block`): an end delimiter is looked for at
/// the start of every token. `Ok(None)` where upon fails (a character it does not know, an
/// unclosed string or bracket, another delimiter); `Err(at)` where the nesting goes over.
fn lex_tag(source: &str, mut i: usize, close: Delim) -> Result<Option<Tag<'_>>, usize> {
    let sb = source.as_bytes();
    let run = |from: usize, pred: fn(u8) -> bool| {
        from + sb.get(from..).map_or(0, |rest| {
            rest.iter().position(|&b| !pred(b)).unwrap_or(rest.len())
        })
    };
    // The closing character each open bracket waits for.
    let mut brackets: Vec<u8> = Vec::new();
    let mut filters = 0usize;
    // upon's `BlockState::Path`: digits right after a path are an index, not a number.
    let mut path = false;
    let mut words: [Option<&str>; 2] = [None, None];
    let mut tokens = 0usize;
    loop {
        if let Some((delim, _, end)) = starts_with(sb, i) {
            if delim != close || !brackets.is_empty() {
                return Ok(None);
            }
            return Ok(Some(Tag { end, words }));
        }
        let Some(&b) = sb.get(i) else {
            return Ok(None);
        };
        let mut word = None;
        let next = match b {
            b' ' | b'\t' | b'\r' | b'\n' => {
                i = run(i + 1, |b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'));
                continue;
            }
            b'.' => {
                path = true;
                i + 1
            }
            b'?' => {
                if sb.get(i + 1) != Some(&b'.') {
                    return Ok(None);
                }
                path = true;
                i + 2
            }
            b'|' => {
                filters += 1;
                if brackets.len() + filters > MAX_EXPR_NESTING {
                    return Err(i);
                }
                path = false;
                i + 1
            }
            b',' | b':' => {
                path = false;
                i + 1
            }
            b'+' | b'-' => i + 1,
            b'[' | b'{' | b'(' => {
                brackets.push(match b {
                    b'[' => b']',
                    b'{' => b'}',
                    _ => b')',
                });
                if brackets.len() + filters > MAX_EXPR_NESTING {
                    return Err(i);
                }
                if b == b'(' {
                    path = false;
                }
                i + 1
            }
            b']' | b'}' | b')' => {
                if brackets.pop() != Some(b) {
                    return Ok(None);
                }
                i + 1
            }
            b'"' => {
                // upon's `lex_string`: ends at a `"` not right after a `\`; a line break or the
                // end of the source first is an error.
                let mut prev = b'"';
                let mut j = i + 1;
                loop {
                    match sb.get(j) {
                        None | Some(b'\r' | b'\n') => return Ok(None),
                        Some(b'"') if prev != b'\\' => break j + 1,
                        Some(&c) => {
                            prev = c;
                            j += 1;
                        }
                    }
                }
            }
            b'0'..=b'9' if path => run(i + 1, |b| b.is_ascii_digit()),
            b'0'..=b'9' => run(i + 1, |b| {
                b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'+' | b'.')
            }),
            // Identifiers and keywords. Any non-ASCII character is taken as part of one: where
            // upon refuses it the walk goes on (and may count more than upon builds), but it
            // never stops where upon goes on.
            b'_' | b'a'..=b'z' | b'A'..=b'Z' | 0x80..=0xff => {
                let j = run(i + 1, |b| {
                    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
                });
                let w = source.get(i..j).unwrap_or("");
                if !KEYWORDS.contains(&w) {
                    path = true;
                }
                word = Some(w);
                j
            }
            _ => return Ok(None),
        };
        if let Some(slot) = words.get_mut(tokens) {
            *slot = word;
        }
        tokens += 1;
        i = next;
    }
}

/// Name of the formatter that counts loop turns in upon's renders (see [`instrument`]).
pub(crate) const TURN_FORMATTER: &str = "__dynpage_turn";

/// `source` with a turn counter before every loop end: `{{ N | __dynpage_turn }}` (`{{-` when
/// the end tag trims, so the text before it is trimmed as before). Writes nothing; the output of
/// every render is unchanged. Returns the new source and where text was inserted (offset in the
/// new source, length).
pub(crate) fn instrument(source: &str, ends: &[LoopEnd]) -> (String, Vec<(usize, usize)>) {
    let mut out = String::with_capacity(source.len() + ends.len() * 32);
    let mut inserted = Vec::with_capacity(ends.len());
    let mut last = 0;
    for end in ends {
        out.push_str(source.get(last..end.at).unwrap_or(""));
        let at = out.len();
        let trim = if end.trim { "-" } else { "" };
        out.push_str(&format!(
            "{{{{{trim} {} | {TURN_FORMATTER} }}}}",
            end.weight
        ));
        inserted.push((at, out.len() - at));
        last = end.at;
    }
    out.push_str(source.get(last..).unwrap_or(""));
    (out, inserted)
}

/// upon's width of a line, in its column arithmetic.
fn display_width(s: &str) -> usize {
    unicode_width::UnicodeWidthStr::width(s)
}

/// upon's `to_ln_col`, 1-based: the line and column it reports for byte offset `offset`.
fn upon_line_column(source: &str, offset: usize) -> (usize, usize) {
    let lines: Vec<&str> = source.split_terminator('\n').collect();
    let mut n = 0;
    for (i, line) in lines.iter().enumerate() {
        let len = display_width(line) + 1;
        if n + len > offset {
            return (i + 1, offset - n + 1);
        }
        n += len;
    }
    (
        lines.len() + 1,
        lines.last().map_or(0, |l| display_width(l)) + 1,
    )
}

/// Maps a position upon reported in the instrumented source (1-based line and column, as in
/// its error messages) to the one it would have reported in the original. `None` when it
/// cannot be inverted (a position upon would never report).
pub(crate) fn map_position(
    instrumented: &str,
    original: &str,
    inserted: &[(usize, usize)],
    line: usize,
    column: usize,
) -> Option<(usize, usize)> {
    let (line0, col0) = (line.checked_sub(1)?, column.checked_sub(1)?);
    // Invert upon's arithmetic: the offset is the widths of the lines before, plus the column.
    let mut offset = col0;
    let mut lines = instrumented.split_terminator('\n');
    for _ in 0..line0 {
        offset += display_width(lines.next()?) + 1;
    }
    if lines.next().is_none() {
        // Past the last line: upon's position for any offset past the (width-counted) end, as
        // it reports one when multi-byte characters put the byte offset beyond it. The
        // original's end is then past too (what was inserted is ASCII).
        return Some(upon_line_column(original, usize::MAX));
    }
    let mut shift = 0;
    for &(at, len) in inserted {
        if at >= offset {
            break;
        }
        // A position inside inserted text is where that text was inserted.
        shift += len.min(offset - at);
    }
    Some(upon_line_column(original, offset - shift))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested_ifs(n: usize) -> String {
        format!("{}x{}", "{% if a %}".repeat(n), "{% endif %}".repeat(n))
    }

    #[test]
    fn block_nesting_is_counted_as_upon_nests() {
        assert!(scan(&nested_ifs(MAX_BLOCK_NESTING)).is_ok());
        let e = scan(&nested_ifs(MAX_BLOCK_NESTING + 1)).unwrap_err();
        assert!(e.blocks);
        assert_eq!((e.line, e.column), (1, 10 * MAX_BLOCK_NESTING + 1));
        // Each `else if` nests one more level; `else` does not.
        let chain = |n: usize| {
            format!(
                "{{% if a %}}{}{{% else %}}{{% endif %}}",
                "{% else if b %}".repeat(n)
            )
        };
        assert!(scan(&chain(MAX_BLOCK_NESTING - 1)).is_ok());
        assert!(scan(&chain(MAX_BLOCK_NESTING)).unwrap_err().blocks);
        // Closed blocks do not add up.
        let siblings = "{% for x in xs %}{% with x as y %}{% endwith %}{% endfor %}\n".repeat(500);
        assert!(scan(&siblings).is_ok());
        // Lines and columns are reported in characters.
        let src = format!("é\n  {}", nested_ifs(MAX_BLOCK_NESTING + 1));
        let e = scan(&src).unwrap_err();
        assert_eq!((e.line, e.column), (2, 3 + 10 * MAX_BLOCK_NESTING));
        assert!(e
            .to_string()
            .ends_with(&format!("at line 2, column {}", 3 + 10 * MAX_BLOCK_NESTING)));
    }

    #[test]
    fn expression_nesting_counts_brackets_and_filters() {
        let parens = |n: usize| format!("{{{{ {}x{} }}}}", "(".repeat(n), ")".repeat(n));
        assert!(scan(&parens(MAX_EXPR_NESTING)).is_ok());
        let e = scan(&parens(MAX_EXPR_NESTING + 1)).unwrap_err();
        assert!(!e.blocks);
        assert_eq!((e.line, e.column), (1, 4 + MAX_EXPR_NESTING));
        // Even unclosed: upon's parser recurses before its lexer finds the missing `)`.
        assert!(scan(&format!("{{{{ {}", "(".repeat(5000))).is_err());
        let lists = format!(
            "{{% for x in {}1{} %}}{{% endfor %}}",
            "[".repeat(101),
            "]".repeat(101)
        );
        assert!(scan(&lists).is_err());
        let filters = |n: usize| format!("{{{{ x{} }}}}", " | raw".repeat(n));
        assert!(scan(&filters(MAX_EXPR_NESTING)).is_ok());
        assert!(scan(&filters(MAX_EXPR_NESTING + 1)).is_err());
        // Brackets inside strings and comments are text.
        let quoted = format!(
            "{{{{ \"{}\" }}}}{{# {} #}}",
            "(".repeat(500),
            "[".repeat(500)
        );
        assert!(scan(&quoted).is_ok());
        // Each tag on its own.
        assert!(scan(&"{{ ((((x)))) | raw }}".repeat(1000)).is_ok());
    }

    #[test]
    fn the_walk_stops_only_where_upon_fails() {
        // A tag upon refuses ends the walk: nothing after it is compiled.
        assert!(scan(&format!("{{% nope %}}{}", nested_ifs(5000))).is_ok());
        assert!(upon::Engine::new()
            .compile(format!("{{% nope %}}{}", nested_ifs(5000)))
            .is_err());
        // Text, `}` in text and strings with escaped quotes do not end it early.
        let tricky = format!(
            "a {{ b }} {{{{ \"x\\\"}}}}\" }}}}{{# }} #}}{}",
            nested_ifs(MAX_BLOCK_NESTING + 1)
        );
        assert!(scan(&tricky).is_err());
    }

    #[test]
    fn loops_are_found_with_their_weights() {
        let src = "a{% for x in xs %}b{{ x }}{% for y in ys %}c{%- endfor %}{% endfor %}d";
        let s = scan(src).unwrap();
        let ends: Vec<_> = s
            .loop_ends
            .iter()
            .map(|e| (e.at, e.trim, e.weight))
            .collect();
        let inner = src.find("{%- endfor").unwrap();
        let outer = src.rfind("{% endfor").unwrap();
        // Inner body: "c" and its end tag; outer body: "b", the emit, the inner loop and its
        // body, and its own end tag.
        assert_eq!(ends, vec![(inner, true, 2), (outer, false, 6)]);
        assert_eq!(s.steps, 9);
    }

    #[test]
    fn instrumented_positions_map_back() {
        let src = "{% for x in xs %}{{ x }}{% endfor %}{{ nope }}\n  {{ more }}";
        let s = scan(src).unwrap();
        let (inst, inserted) = instrument(src, &s.loop_ends);
        assert!(inst.contains("{{ 2 | __dynpage_turn }}{% endfor %}"));
        let nope = |s: &str| upon_line_column(s, s.find("{{ nope").unwrap());
        assert_eq!(
            map_position(&inst, src, &inserted, nope(&inst).0, nope(&inst).1),
            Some(nope(src))
        );
        let more = |s: &str| upon_line_column(s, s.find("{{ more").unwrap());
        assert_eq!(
            map_position(&inst, src, &inserted, more(&inst).0, more(&inst).1),
            Some((2, 3))
        );
        assert_eq!(map_position(&inst, src, &inserted, 9, 1), None);
    }
}
