//! A fast renderer for a strict subset of upon 0.11's template syntax.
//!
//! upon stays the authority: `render::compile` always compiles with upon first and only then asks
//! [`compile`] for a [`Program`]; anything outside the subset gets `None` and is rendered by upon.
//! The subset is:
//!
//! - raw text, comments, and the trim markers `{{-` `-}}` `{%-` `-%}` `{#-` `-#}`;
//! - `{{ path }}` and `{{ path | raw }}`;
//! - `{% if [not] path %}`, `{% else if [not] path %}`, `{% else %}`, `{% endif %}`;
//! - `{% for x in path %}`, `{% for k, v in path %}`, `{% endfor %}`;
//! - `{% with path as name %}`, `{% endwith %}`;
//! - `{% include "name" %}`, `{% include "name" with path %}`;
//!
//! where a path is an ASCII identifier followed by `.ident` / `.digits` members, with no
//! whitespace inside and no optional (`?.`) access.
//!
//! For every template both accept, a successful fast render writes exactly what upon writes.
//! The fast renderer does not reproduce upon's errors: on any error it returns [`Fallback`] and
//! the caller renders again with upon, so error messages stay upon's own.

use std::io::Write as _;

use upon::Value;

use crate::limits::{Exceeded, Limits};
use crate::render::{escape_html_with, Scope, MAX_INCLUDE_DEPTH};
use crate::render_syntax::{find_at, starts_with, Delim, KEYWORDS};

/// The fast path cannot vouch for this render: render it again with upon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fallback;

/// Why a fast render stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Render it again with upon (see [`Fallback`]).
    Fallback,
    /// The render went over its budget: it fails, and upon is not asked (it would go over too:
    /// it writes the same bytes, expands the same includes and counts at least as many steps).
    Over(Over),
}

/// Which part of the budget ran out (a byte: the renderer's results stay in registers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Over {
    Output,
    Includes,
    Steps,
}

impl Over {
    /// What ran out, with its bound.
    pub(crate) fn exceeded(self, limits: &Limits) -> Exceeded {
        match self {
            Over::Output => Exceeded::Output(limits.max_output),
            Over::Includes => Exceeded::Includes(limits.max_includes),
            Over::Steps => Exceeded::Steps(limits.max_steps),
        }
    }
}

impl From<Fallback> for Stop {
    fn from(_: Fallback) -> Stop {
        Stop::Fallback
    }
}

/// A template compiled for the fast renderer.
#[derive(Debug)]
pub(crate) struct Program {
    nodes: Vec<Node>,
    /// Bytes of raw text, a lower bound for the output's size when nothing is skipped.
    raw_len: usize,
    /// Included template names, each once, in order of first appearance.
    includes: Vec<Box<str>>,
}

impl Program {
    /// Names of the templates this one includes.
    pub(crate) fn include_names(&self) -> impl Iterator<Item = &str> {
        self.includes.iter().map(|n| &**n)
    }
}

#[derive(Debug)]
enum Node {
    /// Bytes `start..end` of the template source (raw text is not copied).
    Raw {
        start: usize,
        end: usize,
    },
    Emit {
        path: Path,
        raw: bool,
    },
    /// `else if` chains are nested `If`s in `els`, as upon desugars them.
    If {
        not: bool,
        cond: Path,
        then: Vec<Node>,
        els: Vec<Node>,
    },
    For {
        vars: LoopVars,
        iterable: Path,
        body: Vec<Node>,
    },
    With {
        expr: Path,
        name: Box<str>,
        body: Vec<Node>,
    },
    Include {
        name: Box<str>,
        with: Option<Path>,
    },
}

#[derive(Debug)]
enum LoopVars {
    Item(Box<str>),
    KeyValue(Box<str>, Box<str>),
}

#[derive(Debug)]
struct Path {
    head: Box<str>,
    rest: Box<[Member]>,
    /// Where `head` is bound, worked out by the compiler.
    origin: Origin,
}

/// Where a path's first segment is found.
///
/// While a template renders, the stack above the point where it started holds exactly its own
/// open `for` and `with` blocks (includes pop whatever they push), so a name bound by one of
/// them resolves at compile time, by the same innermost-first rules upon applies at run time.
/// Other names are searched for below: the globals, or the including template's frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// Bound by the template's `slot`-th open `for`/`with` (0 is the outermost).
    Local {
        slot: usize,
        head: Head,
    },
    Outer,
}

/// What a local name stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Head {
    /// A `with` variable.
    Var,
    /// A loop's item, or the value in a `k, v` loop.
    LoopItem,
    /// The key in a `k, v` loop.
    LoopKey,
    /// `loop`.
    LoopMeta,
}

#[derive(Debug)]
enum Member {
    Key(Box<str>),
    Index(usize),
}

// ---------------------------------------------------------------------------------------------
// Compiling
// ---------------------------------------------------------------------------------------------

/// Deepest block nesting compiled here (each `else if` nests one level, as in upon). Rendering
/// recurses once per level, so deeper (pathological) templates are left to upon, whose renderer
/// does not recurse.
const MAX_NESTING: usize = 64;

/// A token inside `{{ }}` or `{% %}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok<'s> {
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
fn lex_tag(source: &str, mut i: usize, end: Delim) -> Option<(Vec<Tok<'_>>, usize, bool)> {
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
fn parse_expr(toks: &[Tok<'_>]) -> Option<(Path, bool)> {
    let mut t = Tokens { toks, i: 0 };
    let path = t.path()?;
    let raw = t.eat(Tok::Pipe);
    if raw && !t.eat_word("raw") {
        return None;
    }
    t.at_end().then_some((path, raw))
}

/// A parsed block tag.
enum Block {
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

fn parse_block(toks: &[Tok<'_>]) -> Option<Block> {
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

/// A block still waiting for its end tag.
enum Open {
    If {
        /// An `else if`: its `endif` also closes the enclosing `if`.
        chained: bool,
        not: bool,
        cond: Path,
        then: Vec<Node>,
        els: Option<Vec<Node>>,
    },
    For {
        vars: LoopVars,
        iterable: Path,
        body: Vec<Node>,
    },
    With {
        expr: Path,
        name: Box<str>,
        body: Vec<Node>,
    },
}

struct Builder {
    root: Vec<Node>,
    open: Vec<Open>,
    includes: Vec<Box<str>>,
}

impl Builder {
    /// Where the next node goes.
    fn current(&mut self) -> &mut Vec<Node> {
        match self.open.last_mut() {
            None => &mut self.root,
            Some(Open::If { els: Some(els), .. }) => els,
            Some(Open::If { then, .. }) => then,
            Some(Open::For { body, .. } | Open::With { body, .. }) => body,
        }
    }

    /// Resolves `path`'s head against the open `for`/`with` blocks, as `LoopFrame::lookup` and
    /// upon's stack search would: innermost first, `loop` before a loop's own variables.
    fn resolve(&self, mut path: Path) -> Path {
        let name = &*path.head;
        let frames = self.open.iter().filter_map(|open| match open {
            Open::If { .. } => None,
            Open::For { vars, .. } => Some(Ok(vars)),
            Open::With { name, .. } => Some(Err(name)),
        });
        let frames: Vec<_> = frames.collect();
        for (slot, frame) in frames.iter().enumerate().rev() {
            let head = match frame {
                Ok(_) if name == "loop" => Some(Head::LoopMeta),
                Ok(LoopVars::Item(i)) => (**i == *name).then_some(Head::LoopItem),
                Ok(LoopVars::KeyValue(k, v)) => {
                    if **k == *name {
                        Some(Head::LoopKey)
                    } else {
                        (**v == *name).then_some(Head::LoopItem)
                    }
                }
                Err(var) => (***var == *name).then_some(Head::Var),
            };
            if let Some(head) = head {
                path.origin = Origin::Local { slot, head };
                break;
            }
        }
        path
    }

    fn push_open(&mut self, open: Open) -> Option<()> {
        if self.open.len() >= MAX_NESTING {
            return None;
        }
        self.open.push(open);
        Some(())
    }

    /// Starts the `else` branch of the innermost `if` (which must not have one yet).
    fn start_else(&mut self) -> Option<()> {
        match self.open.last_mut() {
            Some(Open::If {
                els: els @ None, ..
            }) => {
                *els = Some(Vec::new());
                Some(())
            }
            _ => None,
        }
    }

    fn block(&mut self, block: Block) -> Option<()> {
        match block {
            Block::If(not, cond) => self.push_open(Open::If {
                chained: false,
                not,
                cond: self.resolve(cond),
                then: Vec::new(),
                els: None,
            })?,
            Block::ElseIf(not, cond) => {
                self.start_else()?;
                let cond = self.resolve(cond);
                self.push_open(Open::If {
                    chained: true,
                    not,
                    cond,
                    then: Vec::new(),
                    els: None,
                })?;
            }
            Block::Else => self.start_else()?,
            Block::EndIf => loop {
                let Some(Open::If {
                    chained,
                    not,
                    cond,
                    then,
                    els,
                }) = self.open.pop()
                else {
                    return None;
                };
                let node = Node::If {
                    not,
                    cond,
                    then,
                    els: els.unwrap_or_default(),
                };
                self.current().push(node);
                if !chained {
                    break;
                }
            },
            Block::For(vars, iterable) => self.push_open(Open::For {
                vars,
                iterable: self.resolve(iterable),
                body: Vec::new(),
            })?,
            Block::EndFor => {
                let Some(Open::For {
                    vars,
                    iterable,
                    body,
                }) = self.open.pop()
                else {
                    return None;
                };
                self.current().push(Node::For {
                    vars,
                    iterable,
                    body,
                });
            }
            Block::With(expr, name) => self.push_open(Open::With {
                expr: self.resolve(expr),
                name,
                body: Vec::new(),
            })?,
            Block::EndWith => {
                let Some(Open::With { expr, name, body }) = self.open.pop() else {
                    return None;
                };
                self.current().push(Node::With { expr, name, body });
            }
            Block::Include(name, with) => {
                if !self.includes.contains(&name) {
                    self.includes.push(name.clone());
                }
                let with = with.map(|path| self.resolve(path));
                self.current().push(Node::Include { name, with });
            }
        }
        Some(())
    }
}

/// Compiles `source` for the fast renderer, or `None` when it uses anything outside the subset.
///
/// `source` must already have compiled with upon: syntax errors are not reported, only refused.
pub(crate) fn compile(source: &str) -> Option<Program> {
    let sb = source.as_bytes();
    let mut b = Builder {
        root: Vec::new(),
        open: Vec::new(),
        includes: Vec::new(),
    };
    let mut pos = 0;
    let mut raw_len = 0;
    // Set by a trimming end tag: the raw text right after it loses its leading whitespace.
    let mut left_trim = false;
    loop {
        let tag = find_at(sb, pos);
        let (raw_end, right_trim) = match tag {
            Some((_, trim, j, _)) => (j, trim),
            None => (sb.len(), false),
        };
        if pos < raw_end {
            // upon's `trim_raw_token`: the right trim looks at everything before the tag, but
            // the text before `pos` ends with a tag's `}`, so it never trims past `pos`.
            let mut i = pos;
            let mut j = raw_end;
            if right_trim {
                j = source.get(..j)?.trim_end().len();
            }
            if left_trim {
                let s = source.get(i..j)?;
                i += s.len() - s.trim_start().len();
            }
            if j < i {
                return None;
            }
            if i < j {
                b.current().push(Node::Raw { start: i, end: j });
                raw_len += j - i;
            }
        }
        let Some((delim, _, _, k)) = tag else {
            break;
        };
        let (next, trim) = match delim {
            Delim::BeginComment => match find_at(sb, k)? {
                (Delim::EndComment, trim, _, n) => (n, trim),
                _ => return None,
            },
            Delim::BeginExpr => {
                let (toks, n, trim) = lex_tag(source, k, Delim::EndExpr)?;
                let (path, raw) = parse_expr(&toks)?;
                let path = b.resolve(path);
                b.current().push(Node::Emit { path, raw });
                (n, trim)
            }
            Delim::BeginBlock => {
                let (toks, n, trim) = lex_tag(source, k, Delim::EndBlock)?;
                b.block(parse_block(&toks)?)?;
                (n, trim)
            }
            _ => return None,
        };
        pos = next;
        // upon clears `left_trim` only when raw text takes it, but every tag's end sets it anew,
        // so it only ever applies to the raw text right after that end.
        left_trim = trim;
    }
    if !b.open.is_empty() {
        return None;
    }
    Some(Program {
        nodes: b.root,
        raw_len,
        includes: b.includes,
    })
}

// ---------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------

/// Maps up to this size are searched linearly (the capacity of one std B-tree node).
const SMALL_MAP: usize = 11;

/// The keys of upon's loop map, in its (BTreeMap) order.
static LOOP_KEYS: [&str; 3] = ["first", "index", "last"];

/// A value during rendering. upon copies some values (map keys, loop info) into owned values;
/// these variants stand for those copies without allocating. Two words, cheap to copy.
#[derive(Debug, Clone, Copy)]
enum Val<'a> {
    Ref(&'a Value),
    /// A map key in a `k, v` loop: a string.
    Key(&'a String),
    /// A key of the loop map in `{% for k, v in loop %}`: a string.
    LoopKey(&'static &'static str),
    /// `loop.index`.
    Int(i64),
    /// `loop.first` / `loop.last`.
    Bool(bool),
    /// The bare `loop`: upon's map `{first, index, last}`.
    LoopMap {
        index: u32,
        len: u32,
    },
}

impl<'a> Val<'a> {
    /// Member `k` of a map (upon's key access); `None` where upon errors.
    #[inline(always)]
    fn key(self, k: &str) -> Option<Val<'a>> {
        match self {
            // Scanning a small map, where most keys are told apart by length alone, beats `get`'s
            // ordered string comparisons (a `memcmp` call each); keys are unique, so it finds
            // the same entry.
            Val::Ref(Value::Map(map)) if map.len() <= SMALL_MAP => map
                .iter()
                .find(|(key, _)| key.as_str() == k)
                .map(|(_, v)| Val::Ref(v)),
            Val::Ref(Value::Map(map)) => map.get(k).map(Val::Ref),
            Val::LoopMap { index, len } => match k {
                "index" => Some(Val::Int(i64::from(index))),
                "first" => Some(Val::Bool(index == 0)),
                "last" => Some(Val::Bool(index.checked_add(1) == Some(len))),
                _ => None,
            },
            _ => None,
        }
    }

    /// upon's `lookup` along direct members; `None` where upon errors.
    #[inline(always)]
    fn members(mut self, rest: &[Member]) -> Option<Val<'a>> {
        for m in rest {
            self = match (m, self) {
                (Member::Key(k), _) => self.key(k)?,
                (Member::Index(i), Val::Ref(Value::List(list))) => Val::Ref(list.get(*i)?),
                (Member::Index(_), _) => return None,
            };
        }
        Some(self)
    }

    /// upon's `as_bool`.
    fn truthy(self) -> bool {
        match self {
            Val::Ref(v) => match v {
                Value::None => false,
                Value::Bool(b) => *b,
                Value::Integer(n) => *n != 0,
                Value::Float(n) => *n != 0.0,
                Value::String(s) => !s.is_empty(),
                Value::List(l) => !l.is_empty(),
                Value::Map(m) => !m.is_empty(),
            },
            Val::Key(s) => !s.is_empty(),
            Val::LoopKey(s) => !s.is_empty(),
            Val::Int(n) => n != 0,
            Val::Bool(b) => b,
            Val::LoopMap { .. } => true,
        }
    }
}

/// The current iteration of a loop.
///
/// Item and key are plain references rather than `Val`s: the body reads them right after they
/// are written, and a multi-part `Val` store followed by a wide load stalls store forwarding.
struct LoopFrame<'a> {
    vars: &'a LoopVars,
    index: usize,
    len: usize,
    item: &'a Value,
    /// The key in a `k, v` loop over a map.
    key: &'a String,
    /// Set when looping over a loop map (`{% for k, v in loop %}`): `(index, len)` of that
    /// map; the key and item then come from it rather than from `key` and `item`.
    over_loop_map: Option<(u32, u32)>,
}

/// `LoopFrame::key` in list loops, where it is never read.
static NO_KEY: String = String::new();

impl<'a> LoopFrame<'a> {
    #[inline(always)]
    fn item(&self) -> Option<Val<'a>> {
        match self.over_loop_map {
            None => Some(Val::Ref(self.item)),
            Some((index, len)) => Val::LoopMap { index, len }.key(LOOP_KEYS.get(self.index)?),
        }
    }

    #[inline(always)]
    fn key(&self) -> Option<Val<'a>> {
        match self.over_loop_map {
            None => Some(Val::Key(self.key)),
            Some(_) => LOOP_KEYS.get(self.index).map(Val::LoopKey),
        }
    }

    /// The bare `loop` map.
    #[inline(always)]
    fn meta(&self) -> Option<Val<'a>> {
        Some(Val::LoopMap {
            index: u32::try_from(self.index).ok()?,
            len: u32::try_from(self.len).ok()?,
        })
    }

    /// upon's `LoopState::lookup_var` for a first path segment: `loop` first, then the key,
    /// then the item. (The compiler's `Builder::resolve` mirrors this.)
    fn lookup(&self, name: &str) -> Option<Val<'a>> {
        if name == "loop" {
            return self.meta();
        }
        match self.vars {
            LoopVars::Item(i) if **i == *name => self.item(),
            LoopVars::KeyValue(k, _) if **k == *name => self.key(),
            LoopVars::KeyValue(_, v) if **v == *name => self.item(),
            _ => None,
        }
    }
}

/// upon's render stack, innermost last.
enum State<'a> {
    /// The main template's context.
    Root(Scope<'a>),
    /// The globals of an `include … with`.
    Scope(Val<'a>),
    /// A `with` variable.
    Var(&'a str, Val<'a>),
    Loop(LoopFrame<'a>),
    /// Where an `include … with` starts: lookups stop here.
    Boundary,
}

/// Finds an included template's program and source; `None` if it is missing or has no program.
pub(crate) type Resolve<'r, 'a> = dyn Fn(&str) -> Option<(&'a Program, &'a str)> + 'r;

struct Renderer<'a, 'r> {
    out: &'r mut Vec<u8>,
    stack: Vec<State<'a>>,
    resolve: &'r Resolve<'r, 'a>,
    /// `with` variables above the innermost boundary.
    vars: usize,
    /// The budget: `out` may grow up to this length...
    out_limit: usize,
    /// ...and this many more steps and includes may be taken.
    steps_left: u64,
    includes_left: u32,
}

/// Where the template being rendered is: its source, how deep in includes it is (upon counts
/// the main template as 1) and where its own frames start on the stack.
#[derive(Clone, Copy)]
struct Frame<'a> {
    src: &'a [u8],
    depth: usize,
    base: usize,
}

/// Renders `program` (compiled from `source`) with `ctx`, appending to `out`, within `limits`.
/// On `Err`, `out` holds partial output; after [`Stop::Fallback`] the caller must render with
/// upon instead.
pub(crate) fn render<'a>(
    program: &'a Program,
    source: &'a str,
    ctx: Scope<'a>,
    resolve: &Resolve<'_, 'a>,
    limits: &Limits,
    out: &mut Vec<u8>,
) -> Result<(), Stop> {
    // Grow once up front rather than doubling through the render.
    out.reserve(program.raw_len.min(limits.max_output));
    let out_limit = out.len().saturating_add(limits.max_output);
    let mut r = Renderer {
        out,
        stack: vec![State::Root(ctx)],
        resolve,
        vars: 0,
        out_limit,
        steps_left: limits.max_steps,
        includes_left: limits.max_includes,
    };
    let frame = Frame {
        src: source.as_bytes(),
        depth: 1,
        base: 1,
    };
    r.nodes(&program.nodes, frame)?;
    r.check_output()
}

impl<'a> Renderer<'a, '_> {
    /// Takes `n` steps of the budget.
    #[inline(always)]
    fn steps(&mut self, n: usize) -> Result<(), Stop> {
        match self.steps_left.checked_sub(n as u64) {
            Some(left) => {
                self.steps_left = left;
                Ok(())
            }
            None => Err(Stop::Over(Over::Steps)),
        }
    }

    /// Fails once the output is over its bound. Checked after every value written (one may be
    /// megabytes) and before every list of nodes (a list's text is at most its template's), so
    /// the output never goes past the bound by more than one template's text and one value; and
    /// once more at the end, so a render fails exactly when its output is over.
    #[inline(always)]
    fn check_output(&self) -> Result<(), Stop> {
        if self.out.len() > self.out_limit {
            return Err(Stop::Over(Over::Output));
        }
        Ok(())
    }

    fn nodes(&mut self, nodes: &'a [Node], f: Frame<'a>) -> Result<(), Stop> {
        // A step per node, all taken at once: the list is gone through whole (or not at all,
        // once the render fails).
        self.steps(nodes.len())?;
        self.check_output()?;
        for node in nodes {
            match node {
                Node::Raw { start, end } => {
                    self.out
                        .extend_from_slice(f.src.get(*start..*end).ok_or(Fallback)?);
                }
                Node::Emit { path, raw } => {
                    let v = self.lookup(path, f)?;
                    self.emit(v, *raw)?;
                    self.check_output()?;
                }
                Node::If {
                    not,
                    cond,
                    then,
                    els,
                } => {
                    let branch = if self.lookup(cond, f)?.truthy() != *not {
                        then
                    } else {
                        els
                    };
                    if !branch.is_empty() {
                        self.nodes(branch, f)?;
                    }
                }
                Node::For {
                    vars,
                    iterable,
                    body,
                } => {
                    let v = self.lookup(iterable, f)?;
                    self.for_loop(vars, v, body, f)?;
                }
                Node::With { expr, name, body } => {
                    let v = self.lookup(expr, f)?;
                    self.stack.push(State::Var(name, v));
                    self.vars += 1;
                    self.nodes(body, f)?;
                    self.vars -= 1;
                    self.stack.pop();
                }
                Node::Include { name, with } => self.include(name, with.as_ref(), f)?,
            }
        }
        Ok(())
    }

    fn for_loop(
        &mut self,
        vars: &'a LoopVars,
        iterable: Val<'a>,
        body: &'a [Node],
        f: Frame<'a>,
    ) -> Result<(), Stop> {
        let at = self.stack.len();
        let frame = |len, over_loop_map| {
            State::Loop(LoopFrame {
                vars,
                index: 0,
                len,
                item: &Value::None,
                key: &NO_KEY,
                over_loop_map,
            })
        };
        match (iterable, vars) {
            (Val::Ref(Value::List(list)), LoopVars::Item(_)) => {
                self.stack.push(frame(list.len(), None));
                for (i, item) in list.iter().enumerate() {
                    self.steps(1)?;
                    self.set_iteration(at, i, &NO_KEY, item);
                    self.nodes(body, f)?;
                }
            }
            (Val::Ref(Value::Map(map)), LoopVars::KeyValue(..)) => {
                self.stack.push(frame(map.len(), None));
                for (i, (k, v)) in map.iter().enumerate() {
                    self.steps(1)?;
                    self.set_iteration(at, i, k, v);
                    self.nodes(body, f)?;
                }
            }
            (Val::LoopMap { index, len }, LoopVars::KeyValue(..)) => {
                self.stack.push(frame(LOOP_KEYS.len(), Some((index, len))));
                for i in 0..LOOP_KEYS.len() {
                    self.steps(1)?;
                    self.set_iteration(at, i, &NO_KEY, &Value::None);
                    self.nodes(body, f)?;
                }
            }
            // Not iterable, or the wrong number of loop variables: upon errors.
            _ => return Err(Stop::Fallback),
        }
        self.stack.truncate(at);
        Ok(())
    }

    fn set_iteration(&mut self, at: usize, index: usize, key: &'a String, item: &'a Value) {
        if let Some(State::Loop(frame)) = self.stack.get_mut(at) {
            frame.index = index;
            frame.key = key;
            frame.item = item;
        }
    }

    fn include(&mut self, name: &str, with: Option<&Path>, f: Frame<'a>) -> Result<(), Stop> {
        let (program, source) = (self.resolve)(name).ok_or(Fallback)?;
        let depth = f.depth + 1;
        if depth > MAX_INCLUDE_DEPTH {
            return Err(Stop::Fallback);
        }
        self.includes_left = match self.includes_left.checked_sub(1) {
            Some(left) => left,
            None => return Err(Stop::Over(Over::Includes)),
        };
        match with {
            None => {
                // upon compares a `with` variable's name using the *included* template's source
                // at the offsets of the including one (and can panic doing so): leave that case
                // to upon rather than guess.
                if self.vars > 0 {
                    return Err(Stop::Fallback);
                }
                let inner = Frame {
                    src: source.as_bytes(),
                    depth,
                    base: self.stack.len(),
                };
                self.nodes(&program.nodes, inner)
            }
            Some(path) => {
                let globals = self.lookup(path, f)?;
                let at = self.stack.len();
                self.stack.push(State::Boundary);
                self.stack.push(State::Scope(globals));
                let vars = std::mem::replace(&mut self.vars, 0);
                let inner = Frame {
                    src: source.as_bytes(),
                    depth,
                    base: self.stack.len(),
                };
                self.nodes(&program.nodes, inner)?;
                self.vars = vars;
                self.stack.truncate(at);
                Ok(())
            }
        }
    }

    /// upon's `Stack::lookup_var`, with the search through the template's own frames done at
    /// compile time (see [`Origin`]).
    #[inline(always)]
    fn lookup(&self, path: &Path, f: Frame<'a>) -> Result<Val<'a>, Fallback> {
        let head = match path.origin {
            Origin::Local { slot, head } => match (self.stack.get(f.base + slot), head) {
                (Some(State::Var(_, v)), Head::Var) => Some(*v),
                (Some(State::Loop(frame)), Head::LoopItem) => frame.item(),
                (Some(State::Loop(frame)), Head::LoopKey) => frame.key(),
                (Some(State::Loop(frame)), Head::LoopMeta) => frame.meta(),
                _ => None,
            },
            Origin::Outer => self.lookup_outer(&path.head, f.base),
        };
        head.and_then(|v| v.members(&path.rest)).ok_or(Fallback)
    }

    /// The dynamic part of upon's lookup, below the current template's own frames: innermost
    /// first; a scope whose first segment fails passes the lookup on outwards, anything else
    /// that matches the first segment decides; a boundary ends the search.
    fn lookup_outer(&self, head: &str, base: usize) -> Option<Val<'a>> {
        for state in self.stack.get(..base)?.iter().rev() {
            let found = match state {
                State::Root(root) => root_lookup(root, head),
                State::Scope(scope) => scope.key(head),
                State::Var(name, v) => (*name == head).then_some(*v),
                State::Loop(frame) => frame.lookup(head),
                State::Boundary => return None,
            };
            if found.is_some() {
                return found;
            }
        }
        None
    }

    /// The default formatter (`format_escaped`) or `raw`.
    fn emit(&mut self, v: Val<'_>, raw: bool) -> Result<(), Fallback> {
        match v {
            Val::Ref(Value::String(s)) | Val::Key(s) => self.string(s, raw),
            Val::LoopKey(s) => self.string(s, raw),
            Val::Ref(Value::None) => {}
            Val::Ref(&Value::Bool(b)) | Val::Bool(b) => {
                self.out
                    .extend_from_slice(if b { b"true" } else { b"false" });
            }
            Val::Ref(&Value::Integer(n)) | Val::Int(n) => write_int(self.out, n),
            // `{}` like upon::fmt::default; float formatting is not worth redoing.
            Val::Ref(Value::Float(n)) => write!(self.out, "{n}").map_err(|_| Fallback)?,
            // Lists and maps (the loop map too) are unformattable in upon.
            Val::Ref(Value::List(_) | Value::Map(_)) | Val::LoopMap { .. } => return Err(Fallback),
        }
        Ok(())
    }

    fn string(&mut self, s: &str, raw: bool) {
        if raw {
            self.out.extend_from_slice(s.as_bytes());
        } else {
            let out = &mut *self.out;
            let Ok(()) = escape_html_with(s, |part| {
                out.extend_from_slice(part.as_bytes());
                Ok::<(), std::convert::Infallible>(())
            });
        }
    }
}

/// A top-level name of the main template's context: the named layers, then the base map.
#[inline(always)]
fn root_lookup<'a>(root: &Scope<'a>, head: &str) -> Option<Val<'a>> {
    if let Some((_, v)) = root.named.iter().find(|(n, _)| *n == head) {
        return Some(Val::Ref(v));
    }
    Val::Ref(root.base?).key(head)
}

/// Writes `n` in decimal, as `{}` does, without going through `fmt`.
fn write_int(out: &mut Vec<u8>, n: i64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut u = n.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (u % 10) as u8;
        u /= 10;
        if u == 0 {
            break;
        }
    }
    if n < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&buf[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::{
        build_context, compile as compile_template, render_fast_only, render_into,
        render_with_upon, CompiledTemplate, PageInfo,
    };

    /// Context used by most tests: `data`'s fields plus `page` and `request`, as in production.
    fn context(data: &str) -> Value {
        let data: serde_json::Value = serde_json::from_str(data).expect("test data is JSON");
        build_context(
            data.as_object().expect("test data is an object"),
            PageInfo {
                key: "/k",
                version: "7",
                variant: "production",
            },
            &[("device".into(), "<m>".into())],
        )
    }

    fn template(src: &str) -> CompiledTemplate {
        compile_template(src.to_string()).unwrap_or_else(|e| panic!("{src:?}: {e}"))
    }

    /// Renders with the fast renderer alone and with upon alone and checks they agree: the same
    /// bytes, or both failing. Also checks that `render_into` (fast path plus fallback) appends
    /// exactly what upon does, partial output and error message included. Returns upon's result.
    #[track_caller]
    fn differential(
        main: &CompiledTemplate,
        ctx: &Value,
        includes: &[(&str, &CompiledTemplate)],
    ) -> Result<String, String> {
        let ctx = Scope::of(ctx);
        let mut fast = Vec::new();
        let fast_result = render_fast_only(main, ctx, includes, &Limits::default(), &mut fast)
            .expect("template and includes have fast programs");
        let mut upon = Vec::new();
        let upon_result = render_with_upon(main, ctx, includes, &mut upon);
        let src = main.source();
        match (&fast_result, &upon_result) {
            (Ok(()), Ok(())) => assert_eq!(
                String::from_utf8_lossy(&fast),
                String::from_utf8_lossy(&upon),
                "fast and upon differ for {src:?}"
            ),
            (Err(_), Err(_)) => {}
            (Ok(()), Err(e)) => panic!("fast rendered {src:?} but upon failed: {e}"),
            (Err(_), Ok(())) => panic!(
                "fast failed on {src:?} but upon rendered {:?}",
                String::from_utf8_lossy(&upon)
            ),
        }
        let mut combined = b"prefix:".to_vec();
        let combined_result = render_into(main, ctx, includes, &mut combined);
        assert_eq!(combined_result, upon_result);
        assert_eq!(&combined[7..], &upon[..], "render_into output for {src:?}");
        match upon_result {
            Ok(()) => Ok(String::from_utf8(upon).expect("utf-8 output")),
            Err(e) => Err(e.message),
        }
    }

    /// [`differential`] for a template with no includes.
    #[track_caller]
    fn diff(src: &str, data: &str) -> Result<String, String> {
        let t = template(src);
        assert!(t.has_fast_path(), "no fast program for {src:?}");
        differential(&t, &context(data), &[])
    }

    const DATA: &str = r#"{
        "s": "a&b<c>\"d'e", "u": "héllo ✓ 世界", "empty": "", "n": null, "t": true, "f": false,
        "i": 42, "neg": -7, "zero": 0, "fl": 1.5, "big": 1e21, "tiny": 1e-7,
        "sum": 0.30000000000000004, "fz": 0.0, "nfz": -0.0, "huge": 18446744073709551615,
        "imax": 9223372036854775807, "imin": -9223372036854775808,
        "xs": [1, "two", 3.25, null, true, {"a": "x"}, [1, 2]],
        "e": [], "em": {},
        "m": {"b": 2, "a": "<1>", "c": {"d": [10, 20]}},
        "users": [
            {"name": "Ann & Bo", "tags": ["x", "y"], "admin": true, "age": 30},
            {"name": "Cy", "tags": [], "admin": false, "age": 0}
        ]
    }"#;

    #[test]
    fn raw_text_comments_and_trims() {
        let cases = [
            ("", ""),
            ("plain ✓ text\n", "plain ✓ text\n"),
            ("a {# c #} b", "a  b"),
            ("a {#- c #} b", "a b"),
            ("a {# c -#} b", "a b"),
            ("a \n{#- c -#}\n b", "ab"),
            ("x{#}y", "xy"),
            ("{{i}}{#-#}z", "42z"),
            ("a \t\n{{- i -}} \n b", "a42b"),
            ("a  {{- i }}  b", "a42  b"),
            ("a  {{ i -}}  b", "a  42b"),
            ("a {{ i -}} {{ i }} b", "a 4242 b"),
            ("a {{ i -}}{{ i }}  b", "a 4242  b"),
            ("a {%- if t -%} y {%- endif -%} b", "ayb"),
            ("a {% if t -%} y {%- endif %} b", "a y b"),
            ("a {% if f -%} y {%- else -%} z {%- endif %} b", "a z b"),
            (
                "\u{a0}x\u{3000} {{- i -}} \u{2003}y\u{a0}",
                "\u{a0}x42y\u{a0}",
            ),
            ("  {{- i -}}  ", "42"),
            ("{{\ni\n}}|{{\tu\r\n}}", "42|héllo ✓ 世界"),
            ("{%if t%}y{%endif%}{{s|raw}}", "ya&b<c>\"d'e"),
            ("a{# {  } % # - #}b", "ab"),
        ];
        for (src, want) in cases {
            assert_eq!(diff(src, DATA).as_deref(), Ok(want), "{src:?}");
        }
    }

    #[test]
    fn values_and_escaping() {
        let cases = [
            (
                "{{ s }}|{{ s | raw }}",
                "a&amp;b&lt;c&gt;&quot;d&#x27;e|a&b<c>\"d'e",
            ),
            ("{{ u }}", "héllo ✓ 世界"),
            ("[{{ n }}][{{ n | raw }}][{{ empty }}]", "[][][]"),
            ("{{ t }} {{ f }} {{ t | raw }}", "true false true"),
            (
                "{{ i }} {{ neg }} {{ zero }} {{ imax }} {{ imin }}",
                "42 -7 0 9223372036854775807 -9223372036854775808",
            ),
            (
                "{{ fl }} {{ big }} {{ tiny }} {{ sum }} {{ fz }} {{ nfz }} {{ huge }}",
                "1.5 1000000000000000000000 0.0000001 0.30000000000000004 0 -0 18446744073709552000",
            ),
            (
                "{{ xs.0 }} {{ xs.1 }} {{ xs.2 }} {{ xs.3 }} {{ xs.4 }} {{ xs.5.a }}",
                "1 two 3.25  true x",
            ),
            (
                "{{ xs.01 }} {{ m.a }} {{ m.c.d.1 }} {{ users.0.name }}",
                "two &lt;1&gt; 20 Ann &amp; Bo",
            ),
            (
                "{{ page.key }}@{{ page.version }} {{ page.variant }} {{ request.device }}",
                "/k@7 production &lt;m&gt;",
            ),
        ];
        for (src, want) in cases {
            assert_eq!(diff(src, DATA).as_deref(), Ok(want), "{src:?}");
        }
    }

    #[test]
    fn errors_fall_back_to_upon() {
        for src in [
            "{{ missing }}",
            "a{{ m.zz }}",
            "ok {{ xs.9 }}",
            "{{ xs }}",
            "{{ m }}",
            "{{ m | raw }}",
            "{{ i.x }}",
            "{{ s.0 }}",
            "{{ m.0 }}",
            "{{ xs.a }}",
            "{{ n.a }}",
            "{% for x in i %}{% endfor %}",
            "{% for x in s %}{% endfor %}",
            "{% for k, v in xs %}{% endfor %}",
            "{% for x in m %}{% endfor %}",
            "before {% for x in xs %}{{ x }}{% endfor %}",
            "{% for x in users %}{{ loop }}{% endfor %}",
            "{% for x in users %}{{ loop.nope }}{% endfor %}",
            "{% for x in users %}{{ loop.index.x }}{% endfor %}",
            "{% for x in users %}{{ loop.0 }}{% endfor %}",
            "{% for k, v in m %}{{ k.x }}{% endfor %}",
            "{% if missing %}{% endif %}",
            "{% with missing as w %}{% endwith %}",
            "{% include \"nowhere\" %}",
        ] {
            assert!(diff(src, DATA).is_err(), "{src:?} should fail");
        }
    }

    #[test]
    fn conditions() {
        let cases = [
            ("{% if t %}T{% endif %}{% if f %}F{% endif %}", "T"),
            ("{% if not f %}nf{% else %}x{% endif %}", "nf"),
            (
                "{% if n %}1{% else if not zero %}2{% else %}3{% endif %}",
                "2",
            ),
            (
                "{% if f %}1{% else if empty %}2{% else if e %}3{% else if em %}4{% else %}5{% endif %}",
                "5",
            ),
            ("{% if fz %}a{% endif %}{% if nfz %}b{% endif %}{% if fl %}c{% endif %}", "c"),
            ("{% if xs %}a{% endif %}{% if m %}b{% endif %}{% if s %}c{% endif %}", "abc"),
            ("{% if i %}a{% else if missing %}b{% endif %}", "a"),
            ("{% if not t %}a{% else if not n %}b{% endif %}", "b"),
            (
                "{% if t %}{% if f %}x{% else %}{% if not f %}y{% endif %}{% endif %}{% endif %}",
                "y",
            ),
        ];
        for (src, want) in cases {
            assert_eq!(diff(src, DATA).as_deref(), Ok(want), "{src:?}");
        }
    }

    #[test]
    fn loops() {
        let cases = [
            ("{% for x in xs %}{% if x %}{{ loop.index }}{% endif %}{% endfor %}", None),
            (
                "{% for u in users %}{{ loop.index }}:{{ u.name }}{% if loop.first %}F{% endif %}{% if loop.last %}L{% endif %};{% endfor %}",
                Some("0:Ann &amp; BoF;1:CyL;"),
            ),
            (
                "{% for u in users %}{% for t in u.tags %}{{ u.name }}/{{ t }}/{{ loop.index }}/{{ loop.last }} {% endfor %}{{ loop.index }}|{% endfor %}",
                None,
            ),
            ("{% for k, v in m %}{{ k }}={% if v %}y{% endif %},{% endfor %}", Some("a=y,b=y,c=y,")),
            ("{% for k, v in m.c %}{{ k }}{{ v.0 }}{% endfor %}", Some("d10")),
            ("{% for k, k in m %}{{ k }}{% endfor %}", Some("abc")),
            ("{% for x in e %}never{% endfor %}{% for k, v in em %}never{% endfor %}", Some("")),
            ("{% for loop in xs %}{% if loop.first %}{{ loop.index }}{% endif %}{% endfor %}", Some("0")),
            ("{% for s in users %}{{ s.age }}{% endfor %}{{ s }}", None),
            ("{% for u in users %}{% if loop %}{{ u.age }}{% endif %}{% endfor %}", Some("300")),
            (
                "{% for u in users %}{% for k, v in loop %}{{ k }}={{ v }} {% endfor %}|{% endfor %}",
                Some("first=true index=0 last=false |first=false index=1 last=true |"),
            ),
            (
                "{% for u in users %}{% with loop as l %}{{ l.index }}{{ l.last }}{% endwith %}{% endfor %}",
                Some("0false1true"),
            ),
            ("{% for x in xs.6 %}{{ x }}{% endfor %}", Some("12")),
            ("{% for k, v in m %}{% if k %}{{ k | raw }}{% endif %}{% endfor %}", Some("abc")),
        ];
        for (src, want) in cases {
            let got = diff(src, DATA).unwrap_or_else(|e| panic!("{src:?}: {e}"));
            if let Some(want) = want {
                assert_eq!(got, want, "{src:?}");
            }
        }
    }

    #[test]
    fn with_blocks() {
        let cases = [
            ("{% with m.c as w %}{{ w.d.0 }}{% endwith %}", "10"),
            ("{% with s as i %}{{ i }}{% endwith %}{{ i }}", "a&amp;b&lt;c&gt;&quot;d&#x27;e42"),
            (
                "{% for u in users %}{% with u.name as u %}{{ u }}{% endwith %}{% endfor %}",
                "Ann &amp; BoCy",
            ),
            ("{% with i as loop %}{{ loop }}{% endwith %}", "42"),
            (
                "{% for x in e %}{% endfor %}{% for u in users %}{% with i as loop %}{{ loop }}{% endwith %}{% endfor %}",
                "4242",
            ),
        ];
        for (src, want) in cases {
            assert_eq!(diff(src, DATA).as_deref(), Ok(want), "{src:?}");
        }
        // A `with` variable's members are looked up in it, never past it.
        assert!(diff("{% with m as i %}{{ i.zz }}{% endwith %}", DATA).is_err());
    }

    #[test]
    fn includes() {
        let ctx = context(DATA);
        let banner = template("<{{ s }}{% if u %}!{% endif %}>");
        let item = template("[{{ it.name }}#{{ loop.index }}{% if loop.last %}.{% endif %}]");
        let key = template("({{ key }}|{{ version }})");
        let scoped = template("{{ name }}:{{ age }};");
        let nested = template("{{ name }}:{% include \"item\" %}");
        let lone = template("{{ s }}");
        let meta = template("{{ index }}{% if first %}F{% endif %}{{ last }};");
        let outer = template("<{% include \"item\" %}>");
        let me = template("x{% include \"me\" %}");
        let deep: Vec<CompiledTemplate> = (0..20)
            .map(|i| template(&format!("{i}{{% include \"d{}\" %}}", i + 1)))
            .collect();
        let names: Vec<String> = (0..20).map(|i| format!("d{i}")).collect();
        let mut incs: Vec<(&str, &CompiledTemplate)> = vec![
            ("banner", &banner),
            ("item", &item),
            ("key", &key),
            ("scoped", &scoped),
            ("nested", &nested),
            ("lone", &lone),
            ("meta", &meta),
            ("outer", &outer),
            ("me", &me),
        ];
        incs.extend(names.iter().map(|n| n.as_str()).zip(deep.iter()));
        let end = template("end");
        incs.push(("d20", &end));

        let ok = |src: &str, want: &str| {
            let t = template(src);
            assert_eq!(
                differential(&t, &ctx, &incs).as_deref(),
                Ok(want),
                "{src:?}"
            );
        };
        ok(
            "{% include \"banner\" %}-{%- include \"key\" with page -%}-",
            "<a&amp;b&lt;c&gt;&quot;d&#x27;e!>-(/k|7)-",
        );
        // Without `with`, an include sees the whole stack, loop variables included.
        ok(
            "{% for it in users %}{% include \"item\" %}{% endfor %}",
            "[Ann &amp; Bo#0][Cy#1.]",
        );
        // ...also through another include.
        ok(
            "{% for it in users %}{% include \"outer\" %}{% endfor %}",
            "<[Ann &amp; Bo#0]><[Cy#1.]>",
        );
        // The loop map as an include's globals.
        ok(
            "{% for it in users %}{% include \"meta\" with loop %}{% endfor %}",
            "0Ffalse;1true;",
        );
        // With `with`, only the new globals: `it` and `loop` are behind the boundary.
        ok(
            "{% for it in users %}{% include \"scoped\" with it %}{% endfor %}",
            "Ann &amp; Bo:30;Cy:0;",
        );
        let t = template("{% for it in users %}{% include \"nested\" with it %}{% endfor %}");
        assert!(differential(&t, &ctx, &incs).is_err());
        let t = template("{% for it in users %}{% include \"lone\" with it %}{% endfor %}");
        assert!(differential(&t, &ctx, &incs).is_err());
        // Globals that are not a map: every lookup passes to the boundary and fails.
        let t = template("{% include \"lone\" with s %}");
        assert!(differential(&t, &ctx, &incs).is_err());
        let t = template("{% include \"banner\" with i %}");
        assert!(differential(&t, &ctx, &incs).is_err());
        // upon's depth counting: the main template plus 15 nested includes is fine, 16 is not.
        ok("{% include \"d6\" %}", "678910111213141516171819end");
        let t = template("{% include \"d5\" %}");
        assert!(differential(&t, &ctx, &incs).is_err());
        let t = template("{% include \"me\" %}");
        assert!(differential(&t, &ctx, &incs).is_err());
        // A missing include fails only when reached.
        ok("{% if f %}{% include \"nowhere\" %}{% endif %}ok", "ok");
    }

    #[test]
    fn include_of_a_template_without_fast_program_uses_upon() {
        let ctx = context(DATA);
        let slow = template("{{ s | upper }}");
        assert!(!slow.has_fast_path());
        let main = template("<{% if t %}{% include \"slow\" %}{% endif %}>");
        assert!(main.has_fast_path());
        let incs = [("slow", &slow)];
        let mut out = Vec::new();
        assert!(
            render_fast_only(&main, Scope::of(&ctx), &incs, &Limits::default(), &mut out).is_none()
        );
        let mut upon = Vec::new();
        let upon_result = render_with_upon(&main, Scope::of(&ctx), &incs, &mut upon);
        let mut out = Vec::new();
        assert_eq!(
            render_into(&main, Scope::of(&ctx), &incs, &mut out),
            upon_result
        );
        assert_eq!(out, upon);
    }

    #[test]
    fn include_inside_with_is_refused() {
        // upon resolves `with` variables against the included template's source at the
        // including template's offsets: such a template does not compile (render::compile).
        let ctx = context(DATA);
        let inc = template("no lookups");
        let e = compile_template("{% with s as w %}{% include \"inc\" %}{% endwith %}".into())
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("an include without `with` inside a with block at line 1, column 18"),
            "{e}"
        );
        // Behind a boundary the outer `with` is invisible, so that is fine.
        let main = template("{% with s as w %}{% include \"inc\" with m %}{% endwith %}");
        assert_eq!(
            differential(&main, &ctx, &[("inc", &inc)]).unwrap(),
            "no lookups"
        );
    }

    #[test]
    fn which_templates_get_a_fast_program() {
        for src in [
            "{{ a?.b }}",
            "{{ a.b?.c }}",
            "{{ \"lit\" }}",
            "{{ 1 }}",
            "{{ -1 }}",
            "{{ true }}",
            "{{ a | upper }}",
            "{{ a | raw | raw }}",
            "{{ a | raw: 1 }}",
            "{{ a . b }}",
            "{{ a. b }}",
            "{{ .a }}",
            "{{ f() }}",
            "{{ (a) }}",
            "{{ héllo }}",
            "{{ aé }}",
            "{% if a | raw %}{% endif %}",
            "{% if a == b %}{% endif %}",
            "{% for x in [1, 2] %}{% endfor %}",
            "{% with \"x\" as y %}{% endwith %}",
            "{% include \"a\\\"b\" %}",
            "{% include \"a\\nb\" %}",
            "{% include \"a\" with {} %}",
        ] {
            if let Ok(t) = compile_template(src.to_string()) {
                assert!(!t.has_fast_path(), "{src:?} should be left to upon");
            }
        }
        let chain = format!(
            "{{% if f %}}{}{{% else %}}last{{% endif %}}",
            "{% else if f %}".repeat(40)
        );
        assert_eq!(diff(&chain, DATA).unwrap(), "last");
        let deep = "{% if t %}".repeat(MAX_NESTING + 1) + &"{% endif %}".repeat(MAX_NESTING + 1);
        assert!(!template(&deep).has_fast_path());
        let deep = "{% if t %}".repeat(MAX_NESTING) + &"{% endif %}".repeat(MAX_NESTING);
        assert!(template(&deep).has_fast_path());
        for src in [
            "",
            "{{ a }}",
            "{{a.b.0|raw}}",
            "{{- a.b.c -}}",
            "{% if not a %}{% else if b %}{% else %}{% endif %}",
            "{% for k,v in m %}{% endfor %}",
            "{% with a.b as c %}{% endwith %}",
            "{% include \"x-y z\" %}{% include \"é\" with a.0 %}",
            "{# anything ?. \"x\" | upper() #}",
        ] {
            assert!(template(src).has_fast_path(), "{src:?} should be fast");
        }
        let t = template("{% include \"a\" %}{% include \"b\" with c %}{% include \"a\" %}");
        let p = compile(t.source()).unwrap();
        assert_eq!(p.include_names().collect::<Vec<_>>(), ["a", "b"]);
    }

    /// The template from ../shared/bench/gen.py, with data of the same shape.
    const BENCH_PAGE: &str = r#"<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{{ product.title }} - {{ shop.name }}</title></head>
<body>
<nav>{% for c in breadcrumbs %}<a href="/c/{{ c.id }}">{{ c.name }}</a> &gt; {% endfor %}</nav>
<h1>{{ product.title }}</h1>
<div class="brand">{{ product.brand }}</div>
<div class="price">{{ product.price }}</div>
<ul class="gallery">{% for img in product.images %}<li><img src="{{ img }}"></li>{% endfor %}</ul>
<table class="skus">{% for s in skus %}<tr><td>{{ s.id }}</td><td>{{ s.name }}</td><td>{{ s.price }}</td><td>{% if s.in_stock %}in stock{% else %}sold out{% endif %}</td></tr>
{% endfor %}</table>
<div class="desc">{{ description_html | raw }}</div>
<ol class="reviews">{% for r in reviews %}<li><b>{{ r.user }}</b> {{ r.stars }} stars<p>{{ r.text }}</p></li>
{% endfor %}</ol>
<footer>{{ shop.name }} ({{ shop.score }})</footer>
</body></html>
"#;

    #[test]
    fn bench_page_is_fast_and_identical() {
        let data = r#"{
            "product": {"id": 1001, "title": "Phone X <Pro> & Max \"2026\"", "price": "5999.00",
                        "brand": "Acme", "images": ["//img/0.jpg", "//img/1.jpg"]},
            "skus": [{"id": 100100, "name": "Color 0 / 64GB", "price": "5999.00", "in_stock": false},
                     {"id": 100101, "name": "Color 1 / 128GB", "price": "6099.00", "in_stock": true}],
            "breadcrumbs": [{"id": 0, "name": "Phones"}, {"id": 1, "name": "Smart & Mobile"}],
            "shop": {"name": "Acme Official <Store>", "score": "9.8"},
            "description_html": "<p class=\"d0\">Feature 0: lorem</p>\n",
            "reviews": [{"user": "user0", "stars": 1, "text": "Great! <script>alert(1)</script>"},
                        {"user": "user1", "stars": 2, "text": "Great phone! Great phone! "}]
        }"#;
        let out = diff(BENCH_PAGE, data).unwrap();
        for want in [
            "Phone X &lt;Pro&gt; &amp; Max",
            "&lt;script&gt;alert(1)",
            "<p class=\"d0\">Feature 0",
            "Acme Official &lt;Store&gt; (9.8)",
            "sold out",
            "<td>100101</td>",
        ] {
            assert!(out.contains(want), "{want:?} missing from {out}");
        }
    }

    /// A small deterministic PRNG (xorshift64*), so failures reproduce.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
            xs[self.below(xs.len())]
        }

        fn chance(&mut self, percent: usize) -> bool {
            self.below(100) < percent
        }
    }

    /// Generates templates within the subset (and sometimes just outside of what renders).
    struct Gen<'r> {
        rng: &'r mut Rng,
        /// Include names this template may use, with or without `with`.
        includes: &'r [&'r str],
    }

    impl Gen<'_> {
        fn ws(&mut self) -> &'static str {
            self.rng.pick(&["", " ", " ", "  ", "\n", "\t", " \r\n "])
        }

        fn open(&mut self, kind: char) -> String {
            let trim = if self.rng.chance(25) { "-" } else { "" };
            format!("{{{kind}{trim}{}", self.ws())
        }

        fn close(&mut self, kind: char) -> String {
            let trim = if self.rng.chance(25) { "-" } else { "" };
            format!("{}{trim}{kind}}}", self.ws())
        }

        fn block(&mut self, body: &str) -> String {
            format!("{}{body}{}", self.open('%'), self.close('%'))
        }

        fn raw(&mut self) -> String {
            let mut s = String::new();
            for _ in 0..self.rng.below(3) {
                s.push_str(self.rng.pick(&[
                    "x",
                    " ",
                    "  \n ",
                    "é ",
                    "\t<p>",
                    " y \n",
                    "\u{a0}z\u{a0}",
                    "\u{3000}",
                    "-",
                    "%",
                    "#",
                    "&amp;",
                    "\r\n",
                ]));
            }
            s
        }

        fn scalar_path(&mut self) -> &'static str {
            self.rng.pick(&[
                "s",
                "u",
                "empty",
                "n",
                "t",
                "f",
                "i",
                "neg",
                "zero",
                "fl",
                "big",
                "sum",
                "fz",
                "xs.0",
                "xs.1",
                "xs.2",
                "xs.3",
                "xs.4",
                "xs.5.a",
                "m.a",
                "m.b",
                "m.c.d.1",
                "users.0.name",
                "users.1.age",
                "page.key",
                "request.device",
                "it",
                "it.name",
                "it.age",
                "k",
                "v",
                "w",
                "w.a",
                "loop.index",
                "loop.first",
                "loop.last",
                "i",
                "s",
                "u",
                "missing",
                "xs",
            ])
        }

        fn any_path(&mut self) -> &'static str {
            if self.rng.chance(60) {
                self.scalar_path()
            } else {
                self.rng.pick(&[
                    "xs",
                    "e",
                    "em",
                    "m",
                    "m.c",
                    "users",
                    "users.0",
                    "users.0.tags",
                    "loop",
                    "it",
                    "it.tags",
                    "w",
                    "v",
                    "page",
                ])
            }
        }

        fn nodes(&mut self, depth: usize, in_with: bool) -> String {
            let mut s = String::new();
            for _ in 0..self.rng.below(5) {
                s.push_str(&self.node(depth, in_with));
            }
            s
        }

        fn node(&mut self, depth: usize, in_with: bool) -> String {
            let choice = if depth == 0 {
                self.rng.below(3)
            } else {
                self.rng.below(8)
            };
            let raw = self.raw();
            let node = match choice {
                0 => String::new(),
                1 => {
                    let body = self.rng.pick(&[" c ", " x-y ", "x-", " {  } ", "é"]);
                    format!("{}{body}{}", self.open('#'), self.close('#'))
                }
                2 => {
                    let path = self.scalar_path();
                    let filter = if self.rng.chance(30) {
                        format!("{}|{}raw", self.ws(), self.ws())
                    } else {
                        String::new()
                    };
                    format!("{}{path}{filter}{}", self.open('{'), self.close('}'))
                }
                3 | 4 => {
                    let not = if self.rng.chance(30) { "not " } else { "" };
                    let cond = format!("if {not}{}", self.any_path());
                    let mut s = self.block(&cond);
                    s.push_str(&self.nodes(depth - 1, in_with));
                    for _ in 0..self.rng.below(3) {
                        let not = if self.rng.chance(30) { "not " } else { "" };
                        let cond = format!("else if {not}{}", self.any_path());
                        s.push_str(&self.block(&cond));
                        s.push_str(&self.nodes(depth - 1, in_with));
                    }
                    if self.rng.chance(50) {
                        s.push_str(&self.block("else"));
                        s.push_str(&self.nodes(depth - 1, in_with));
                    }
                    s.push_str(&self.block("endif"));
                    s
                }
                5 => {
                    let vars = self
                        .rng
                        .pick(&["it", "it", "k, v", "k,v", "loop", "s", "k, k"]);
                    let iterable = self.any_path();
                    let mut s = self.block(&format!("for {vars} in {iterable}"));
                    s.push_str(&self.nodes(depth - 1, in_with));
                    s.push_str(&self.block("endfor"));
                    s
                }
                6 => {
                    let name = self.rng.pick(&["w", "w", "s", "loop", "it"]);
                    let expr = self.any_path();
                    let mut s = self.block(&format!("with {expr} as {name}"));
                    s.push_str(&self.nodes(depth - 1, true));
                    s.push_str(&self.block("endwith"));
                    s
                }
                _ => {
                    if self.includes.is_empty() {
                        return raw;
                    }
                    let name = self.rng.pick(self.includes);
                    // Without `with`, an include inside a `with` can make upon panic.
                    if in_with || self.rng.chance(40) {
                        let with = self.any_path();
                        self.block(&format!("include \"{name}\" with {with}"))
                    } else {
                        self.block(&format!("include \"{name}\""))
                    }
                }
            };
            raw + &node
        }
    }

    #[test]
    fn generated_templates_render_identically() {
        let ctx = context(DATA);
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let (mut rendered, mut failed) = (0, 0);
        for round in 0..3000 {
            let mut sources = Vec::new();
            // inc2 includes nothing, inc1 may include inc2 and the main template both.
            for includes in [&[][..], &["inc2"][..], &["inc1", "inc2"][..]] {
                let mut g = Gen {
                    rng: &mut rng,
                    includes,
                };
                sources.push(g.nodes(3, false));
            }
            let compiled: Vec<CompiledTemplate> = sources.iter().map(|s| template(s)).collect();
            for t in &compiled {
                assert!(t.has_fast_path(), "round {round}: {:?}", t.source());
            }
            let incs = [("inc2", &compiled[0]), ("inc1", &compiled[1])];
            match differential(&compiled[2], &ctx, &incs) {
                Ok(_) => rendered += 1,
                Err(_) => failed += 1,
            }
        }
        // Enough of both to mean something.
        assert!(
            rendered > 500 && failed > 100,
            "{rendered} rendered, {failed} failed"
        );
    }

    #[test]
    fn token_soup_never_disagrees() {
        // Random sequences of tag fragments: most do not compile, but those upon accepts
        // probe the lexing corners (overlapping delimiters, trims, comments).
        let pieces = [
            "{{", "{{-", "}}", "-}}", "{%", "{%-", "%}", "-%}", "{#", "{#-", "#}", "-#}", " ",
            "\n", "-", "s", "i", "m.a", "xs.0", "if", "endif", "else", "for", "in", "endfor",
            "raw", "|", ".", "0", "\"", "#", "%", "{", "}", "é", "\u{a0}", "with", "as", "endwith",
            "not", "t", "it", ",", "k", "include", "\"inc\"",
        ];
        let ctx = context(DATA);
        let inc = template("<{{ s }}>");
        let mut rng = Rng(12345);
        let mut compared = 0;
        for _ in 0..200_000 {
            let n = 1 + rng.below(10);
            let src: String = (0..n).map(|_| rng.pick(&pieces)).collect();
            let Ok(t) = compile_template(src.clone()) else {
                continue;
            };
            if t.has_fast_path() {
                differential(&t, &ctx, &[("inc", &inc)]).ok();
                compared += 1;
            }
        }
        assert!(compared > 1000, "only {compared} templates compared");
    }

    #[test]
    fn integers_format_like_display() {
        for n in [
            0,
            1,
            -1,
            9,
            10,
            -10,
            42,
            i64::MAX,
            i64::MIN,
            1_000_000,
            -999_999,
        ] {
            let mut out = Vec::new();
            write_int(&mut out, n);
            assert_eq!(String::from_utf8(out).unwrap(), n.to_string());
        }
    }
}
