//! Running a [`Program`]: the walk over its nodes with upon's render stack and lookup rules,
//! includes, the budget, and the output (escaped exactly as upon's default formatter escapes).

use std::io::Write as _;

use upon::Value;

use super::program::{Head, LoopVars, Node, Origin, Path, Program};
use super::stop::{Over, Stop, ToUpon};
use super::value::{LoopFrame, Val, LOOP_KEYS, NO_KEY};
use crate::doc::Slot;
use crate::limits::Limits;
use crate::render::context::Scope;
use crate::render::engine::MAX_INCLUDE_DEPTH;
use crate::render::escape::escape_html_with;

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
/// On `Err`, `out` holds partial output; after [`Stop::ToUpon`] the caller must render with
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
                        .extend_from_slice(f.src.get(*start..*end).ok_or(ToUpon)?);
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
                item: Val::Ref(&Value::None),
                key: NO_KEY,
                over_loop_map,
            })
        };
        match (iterable, vars) {
            (Val::Ref(Value::List(list)), LoopVars::Item(_)) => {
                self.stack.push(frame(list.len(), None));
                for (i, item) in list.iter().enumerate() {
                    self.steps(1)?;
                    self.set_iteration(at, i, NO_KEY, Val::Ref(item));
                    self.nodes(body, f)?;
                }
            }
            (Val::Ref(Value::Map(map)), LoopVars::KeyValue(..)) => {
                self.stack.push(frame(map.len(), None));
                for (i, (k, v)) in map.iter().enumerate() {
                    self.steps(1)?;
                    self.set_iteration(at, i, k, Val::Ref(v));
                    self.nodes(body, f)?;
                }
            }
            (Val::Doc(d), LoopVars::Item(_)) if matches!(d.slot(), Slot::List { .. }) => {
                let items = d.items();
                self.stack.push(frame(items.len(), None));
                for (i, item) in items.enumerate() {
                    self.steps(1)?;
                    self.set_iteration(at, i, NO_KEY, Val::Doc(item));
                    self.nodes(body, f)?;
                }
            }
            (Val::Doc(d), LoopVars::KeyValue(..)) if matches!(d.slot(), Slot::Map { .. }) => {
                let entries = d.entries();
                self.stack.push(frame(entries.len(), None));
                for (i, (k, v)) in entries.enumerate() {
                    self.steps(1)?;
                    self.set_iteration(at, i, k, Val::Doc(v));
                    self.nodes(body, f)?;
                }
            }
            (Val::LoopMap { index, len }, LoopVars::KeyValue(..)) => {
                self.stack.push(frame(LOOP_KEYS.len(), Some((index, len))));
                for i in 0..LOOP_KEYS.len() {
                    self.steps(1)?;
                    self.set_iteration(at, i, NO_KEY, Val::Ref(&Value::None));
                    self.nodes(body, f)?;
                }
            }
            // Not iterable, or the wrong number of loop variables: upon errors.
            _ => return Err(Stop::ToUpon),
        }
        self.stack.truncate(at);
        Ok(())
    }

    fn set_iteration(&mut self, at: usize, index: usize, key: &'a str, item: Val<'a>) {
        if let Some(State::Loop(frame)) = self.stack.get_mut(at) {
            frame.index = index;
            frame.key = key;
            frame.item = item;
        }
    }

    fn include(&mut self, name: &str, with: Option<&Path>, f: Frame<'a>) -> Result<(), Stop> {
        let (program, source) = (self.resolve)(name).ok_or(ToUpon)?;
        let depth = f.depth + 1;
        if depth > MAX_INCLUDE_DEPTH {
            return Err(Stop::ToUpon);
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
                    return Err(Stop::ToUpon);
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
    fn lookup(&self, path: &Path, f: Frame<'a>) -> Result<Val<'a>, ToUpon> {
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
        head.and_then(|v| v.members(&path.rest)).ok_or(ToUpon)
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
    fn emit(&mut self, v: Val<'_>, raw: bool) -> Result<(), ToUpon> {
        match v {
            Val::Ref(Value::String(s)) => self.string(s, raw),
            Val::Str(s) => self.string(s, raw),
            Val::Doc(d) => self.emit_doc(d, raw)?,
            Val::Ref(Value::None) => {}
            Val::Ref(&Value::Bool(b)) | Val::Bool(b) => {
                self.out
                    .extend_from_slice(if b { b"true" } else { b"false" });
            }
            Val::Ref(&Value::Integer(n)) | Val::Int(n) => write_int(self.out, n),
            // `{}` like upon::fmt::default; float formatting is not worth redoing.
            Val::Ref(Value::Float(n)) => write!(self.out, "{n}").map_err(|_| ToUpon)?,
            // Lists and maps (the loop map too) are unformattable in upon.
            Val::Ref(Value::List(_) | Value::Map(_)) | Val::LoopMap { .. } => return Err(ToUpon),
        }
        Ok(())
    }

    /// [`Renderer::emit`] for a document's value: the same rules.
    fn emit_doc(&mut self, d: crate::doc::DocRef<'_>, raw: bool) -> Result<(), ToUpon> {
        match *d.slot() {
            Slot::Str { .. } => self.string(d.as_str().ok_or(ToUpon)?, raw),
            Slot::Null => {}
            Slot::Bool(b) => self
                .out
                .extend_from_slice(if b { b"true" } else { b"false" }),
            Slot::Int(n) => write_int(self.out, n),
            Slot::Float(n) => write!(self.out, "{n}").map_err(|_| ToUpon)?,
            Slot::List { .. } | Slot::Map { .. } => return Err(ToUpon),
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

/// A top-level name of the main template's context: the named layers, the document, then the
/// base map.
#[inline(always)]
fn root_lookup<'a>(root: &Scope<'a>, head: &str) -> Option<Val<'a>> {
    if let Some((_, v)) = root.named.iter().find(|(n, _)| *n == head) {
        return Some(Val::Ref(v));
    }
    if let Some(doc) = root.doc {
        if let Some(v) = doc.root().get(head) {
            return Some(Val::Doc(v));
        }
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
    use super::write_int;

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
