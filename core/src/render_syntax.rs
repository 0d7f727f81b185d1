//! upon 0.11's tag syntax as its lexer sees it: the delimiters, where it finds them, and its
//! keywords. Ported as is, so that the nesting scan ([`crate::limits`]), the include scan of
//! `render::compile` and the fast renderer's compiler (`render::fast`) all find tags exactly
//! where upon finds them.

/// upon's keywords: they are never identifiers.
pub(crate) const KEYWORDS: &[&str] = &[
    "if", "not", "else", "endif", "for", "in", "endfor", "with", "as", "endwith", "include",
    "true", "false",
];

/// A tag delimiter: the begin and end marks of `{{ }}`, `{% %}` and `{# #}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delim {
    BeginExpr,
    EndExpr,
    BeginBlock,
    EndBlock,
    BeginComment,
    EndComment,
}

/// upon's `DefaultSearcher::find_at`, ported as is (including how it looks back from a `}`), so
/// tags are found exactly where upon finds them. Returns the delimiter, whether it trims, and its
/// byte range.
pub(crate) fn find_at(sb: &[u8], mut at: usize) -> Option<(Delim, bool, usize, usize)> {
    use Delim::*;
    loop {
        let mark = at + sb.get(at..)?.iter().position(|&b| b == b'{' || b == b'}')?;
        if sb[mark] == b'{' {
            let i = mark;
            match &sb[i..] {
                [b'{', b'{', b'-', ..] => return Some((BeginExpr, true, i, i + 3)),
                [b'{', b'{', ..] => return Some((BeginExpr, false, i, i + 2)),
                [b'{', b'%', b'-', ..] => return Some((BeginBlock, true, i, i + 3)),
                [b'{', b'%', ..] => return Some((BeginBlock, false, i, i + 2)),
                [b'{', b'#', b'-', ..] => return Some((BeginComment, true, i, i + 3)),
                [b'{', b'#', ..] => return Some((BeginComment, false, i, i + 2)),
                _ => at = i + 1,
            }
        } else {
            let j = mark + 1;
            let i = j.saturating_sub(3);
            match &sb[i..] {
                [b'-', b'}', b'}', ..] => return Some((EndExpr, true, i, i + 3)),
                // Sic: upon reports this as a trimming end; it is an error wherever it is found.
                [_, b'}', b'}', ..] => return Some((EndExpr, true, i + 1, i + 3)),
                [b'}', b'}', ..] => return Some((EndExpr, false, i, i + 2)),
                [b'-', b'%', b'}', ..] => return Some((EndBlock, true, i, i + 3)),
                [_, b'%', b'}', ..] => return Some((EndBlock, false, i + 1, i + 3)),
                [b'%', b'}', ..] => return Some((EndBlock, false, i, i + 2)),
                [b'-', b'#', b'}', ..] => return Some((EndComment, true, i, i + 3)),
                [_, b'#', b'}', ..] => return Some((EndComment, false, i + 1, i + 3)),
                [b'#', b'}', ..] => return Some((EndComment, false, i, i + 2)),
                _ => at = j,
            }
        }
    }
}

/// upon's `DefaultSearcher::starts_with`: a delimiter at `i`, whether it trims, and its end.
pub(crate) fn starts_with(sb: &[u8], i: usize) -> Option<(Delim, bool, usize)> {
    use Delim::*;
    match sb.get(i..)? {
        [b'{', b'{', b'-', ..] => Some((BeginExpr, true, i + 3)),
        [b'{', b'{', ..] => Some((BeginExpr, false, i + 2)),
        [b'{', b'%', b'-', ..] => Some((BeginBlock, true, i + 3)),
        [b'{', b'%', ..] => Some((BeginBlock, false, i + 2)),
        [b'{', b'#', b'-', ..] => Some((BeginComment, true, i + 3)),
        [b'{', b'#', ..] => Some((BeginComment, false, i + 2)),
        [b'-', b'}', b'}', ..] => Some((EndExpr, true, i + 3)),
        [b'}', b'}', ..] => Some((EndExpr, false, i + 2)),
        [b'-', b'%', b'}', ..] => Some((EndBlock, true, i + 3)),
        [b'%', b'}', ..] => Some((EndBlock, false, i + 2)),
        [b'-', b'#', b'}', ..] => Some((EndComment, true, i + 3)),
        [b'#', b'}', ..] => Some((EndComment, false, i + 2)),
        _ => None,
    }
}
