//! Compiling a source into a [`Program`]: tags found where upon finds them, blocks nested into
//! a tree as upon nests them, and names bound by `for`/`with` resolved at compile time.

use super::lexer::lex_tag;
use super::parser::{parse_block, parse_expr, Block};
use super::program::{Head, LoopVars, Node, Origin, Path, Program};
use crate::render_syntax::{find_at, Delim};

/// Deepest block nesting compiled here (each `else if` nests one level, as in upon). Rendering
/// recurses once per level, so deeper (pathological) templates are left to upon, whose renderer
/// does not recurse.
pub(super) const MAX_NESTING: usize = 64;

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
