//! A tag's tokens parsed: the `{{ }}` expressions and `{% %}` blocks of the fast subset.

use super::lexer::Tok;
use super::program::{LoopVars, Member, Origin, Path};
use crate::render_syntax::KEYWORDS;

/// A cursor over a tag's tokens.
struct Tokens<'t, 's> {
    toks: &'t [Tok<'s>],
    i: usize,
}

impl<'s> Tokens<'_, 's> {
    fn skip_ws(&mut self) {
        while self.toks.get(self.i) == Some(&Tok::Ws) {
            self.i += 1;
        }
    }

    /// The next token after whitespace, consumed.
    fn next(&mut self) -> Option<Tok<'s>> {
        self.skip_ws();
        let t = *self.toks.get(self.i)?;
        self.i += 1;
        Some(t)
    }

    /// Whether the next token after whitespace is the word `w`; consumes it if so.
    fn eat_word(&mut self, w: &str) -> bool {
        self.skip_ws();
        if self.toks.get(self.i) == Some(&Tok::Word(w)) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn eat(&mut self, tok: Tok<'_>) -> bool {
        self.skip_ws();
        if self.toks.get(self.i) == Some(&tok) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn ident(&mut self) -> Option<Box<str>> {
        match self.next()? {
            Tok::Word(w) if !KEYWORDS.contains(&w) => Some(w.into()),
            _ => None,
        }
    }

    /// `ident(.ident|.digits)*` with nothing between the parts.
    fn path(&mut self) -> Option<Path> {
        let head = self.ident()?;
        let mut rest = Vec::new();
        while self.toks.get(self.i) == Some(&Tok::Dot) {
            let member = match *self.toks.get(self.i + 1)? {
                Tok::Word(w) if !KEYWORDS.contains(&w) => Member::Key(w.into()),
                // upon parses indexes with `str::parse::<usize>` too (so "01" is 1).
                Tok::Digits(d) => Member::Index(d.parse().ok()?),
                _ => return None,
            };
            rest.push(member);
            self.i += 2;
        }
        Some(Path {
            head,
            rest: rest.into(),
            origin: Origin::Outer,
        })
    }

    fn at_end(&mut self) -> bool {
        self.skip_ws();
        self.i == self.toks.len()
    }
}

/// `path` or `path | raw`.
pub(super) fn parse_expr(toks: &[Tok<'_>]) -> Option<(Path, bool)> {
    let mut t = Tokens { toks, i: 0 };
    let path = t.path()?;
    let raw = t.eat(Tok::Pipe);
    if raw && !t.eat_word("raw") {
        return None;
    }
    t.at_end().then_some((path, raw))
}

/// A parsed block tag.
pub(super) enum Block {
    If(bool, Path),
    ElseIf(bool, Path),
    Else,
    EndIf,
    For(LoopVars, Path),
    EndFor,
    With(Path, Box<str>),
    EndWith,
    Include(Box<str>, Option<Path>),
}

pub(super) fn parse_block(toks: &[Tok<'_>]) -> Option<Block> {
    let mut t = Tokens { toks, i: 0 };
    let cond = |t: &mut Tokens<'_, '_>| {
        let not = t.eat_word("not");
        Some((not, t.path()?))
    };
    let block = match t.next()? {
        Tok::Word("if") => {
            let (not, path) = cond(&mut t)?;
            Block::If(not, path)
        }
        Tok::Word("else") => {
            if t.eat_word("if") {
                let (not, path) = cond(&mut t)?;
                Block::ElseIf(not, path)
            } else {
                Block::Else
            }
        }
        Tok::Word("endif") => Block::EndIf,
        Tok::Word("for") => {
            let first = t.ident()?;
            let vars = if t.eat(Tok::Comma) {
                LoopVars::KeyValue(first, t.ident()?)
            } else {
                LoopVars::Item(first)
            };
            if !t.eat_word("in") {
                return None;
            }
            Block::For(vars, t.path()?)
        }
        Tok::Word("endfor") => Block::EndFor,
        Tok::Word("with") => {
            let expr = t.path()?;
            if !t.eat_word("as") {
                return None;
            }
            Block::With(expr, t.ident()?)
        }
        Tok::Word("endwith") => Block::EndWith,
        Tok::Word("include") => {
            let Tok::Str(name) = t.next()? else {
                return None;
            };
            let with = if t.eat_word("with") {
                Some(t.path()?)
            } else {
                None
            };
            Block::Include(name.into(), with)
        }
        _ => return None,
    };
    t.at_end().then_some(block)
}
