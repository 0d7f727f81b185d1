//! What the fast renderer runs: a template compiled into a tree of nodes, raw text kept as
//! ranges of its source, each path's first name already resolved where a block binds it.

/// A template compiled for the fast renderer.
#[derive(Debug)]
pub(crate) struct Program {
    pub(super) nodes: Vec<Node>,
    /// Bytes of raw text, a lower bound for the output's size when nothing is skipped.
    pub(super) raw_len: usize,
    /// Included template names, each once, in order of first appearance.
    pub(super) includes: Vec<Box<str>>,
}

impl Program {
    /// Names of the templates this one includes.
    pub(crate) fn include_names(&self) -> impl Iterator<Item = &str> {
        self.includes.iter().map(|n| &**n)
    }
}

#[derive(Debug)]
pub(super) enum Node {
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
pub(super) enum LoopVars {
    Item(Box<str>),
    KeyValue(Box<str>, Box<str>),
}

#[derive(Debug)]
pub(super) struct Path {
    pub(super) head: Box<str>,
    pub(super) rest: Box<[Member]>,
    /// Where `head` is bound, worked out by the compiler.
    pub(super) origin: Origin,
}

/// Where a path's first segment is found.
///
/// While a template renders, the stack above the point where it started holds exactly its own
/// open `for` and `with` blocks (includes pop whatever they push), so a name bound by one of
/// them resolves at compile time, by the same innermost-first rules upon applies at run time.
/// Other names are searched for below: the globals, or the including template's frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Origin {
    /// Bound by the template's `slot`-th open `for`/`with` (0 is the outermost).
    Local {
        slot: usize,
        head: Head,
    },
    Outer,
}

/// What a local name stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Head {
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
pub(super) enum Member {
    Key(Box<str>),
    Index(usize),
}
