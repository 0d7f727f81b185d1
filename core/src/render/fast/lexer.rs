//! A tag's body as tokens, up to its end delimiter: the fast subset's lexer (any character
//! outside the subset refuses the template).

use crate::render_syntax::{starts_with, Delim};

/// A token inside `{{ }}` or `{% %}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tok<'s> {
    /// Spaces, tabs, CRs and LFs (upon's whitespace).
    Ws,
    Dot,
    Pipe,
    Comma,
    /// An ASCII identifier or keyword.
    Word(&'s str),
    /// ASCII digits (only meaningful right after a `.`).
    Digits(&'s str),
    /// A string literal's content, without escapes.
    Str(&'s str),
}

/// Tokenizes a tag body starting at `i` up to its end delimiter, which must be `end`. Like
/// upon's lexer, an end delimiter is looked for at the start of every token. Returns the tokens,
/// the position after the end delimiter and whether that delimiter trims. Any character outside
/// the subset (including all non-ASCII ones) gives `None`.
pub(super) fn lex_tag(
    source: &str,
    mut i: usize,
    end: Delim,
) -> Option<(Vec<Tok<'_>>, usize, bool)> {
    let sb = source.as_bytes();
    let mut toks = Vec::new();
    let run = |from: usize, pred: fn(u8) -> bool| {
        from + sb[from..]
            .iter()
            .position(|&b| !pred(b))
            .unwrap_or(sb.len() - from)
    };
    loop {
        if let Some((d, trim, j)) = starts_with(sb, i) {
            return (d == end).then_some((toks, j, trim));
        }
        let (tok, j) = match *sb.get(i)? {
            b' ' | b'\t' | b'\r' | b'\n' => (
                Tok::Ws,
                run(i, |b| matches!(b, b' ' | b'\t' | b'\r' | b'\n')),
            ),
            b'.' => (Tok::Dot, i + 1),
            b'|' => (Tok::Pipe, i + 1),
            b',' => (Tok::Comma, i + 1),
            b'0'..=b'9' => {
                let j = run(i, |b| b.is_ascii_digit());
                (Tok::Digits(source.get(i..j)?), j)
            }
            b'A'..=b'Z' | b'a'..=b'z' | b'_' => {
                let j = run(i, |b| b.is_ascii_alphanumeric() || b == b'_');
                (Tok::Word(source.get(i..j)?), j)
            }
            b'"' => {
                let len = sb[i + 1..].iter().position(|&b| b == b'"')?;
                let j = i + 1 + len;
                let s = source.get(i + 1..j)?;
                // Escapes and line breaks: leave to upon.
                if s.bytes().any(|b| matches!(b, b'\\' | b'\r' | b'\n')) {
                    return None;
                }
                (Tok::Str(s), j + 1)
            }
            _ => return None,
        };
        toks.push(tok);
        i = j;
    }
}
