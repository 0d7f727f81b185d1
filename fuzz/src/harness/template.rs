//! Templates: compile, then render with the fast renderer (`render_into`, which falls back to
//! upon) and with upon alone (`render_with_upon`); they must give the same bytes or both fail.
//! Also: the same under a small budget (`render_limited` against `render_with_upon_limited`),
//! the include names found in the source against those the generator wrote, nesting limits
//! against the nesting generated, and `render_skipping_failed_modules` against upon with the
//! modules it left out replaced by nothing.
//!
//! Templates come from a grammar covering the fast renderer's subset (text, comments, `{{ path
//! | raw }}`, if / else if / else, for, with, include, trims) and beyond it (literals, `?.`,
//! other filters, operators, broken tags), nested at most a few levels and a few dozen nodes
//! long, except for the rare case nested around the limits. Includes form no cycle except
//! `me`, which includes itself (upon stops it at its include depth).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use dynpage_core::doc::Doc;
use dynpage_core::limits::{Limits, MAX_BLOCK_NESTING, MAX_EXPR_NESTING};
use dynpage_core::render::{
    build_context, compile, empty_template, engine, one_line, page_value, render_into,
    render_limited, render_skipping_failed_modules, render_with_upon, render_with_upon_limited,
    CompiledTemplate, PageInfo, RenderError, Scope, SkippedModule, TemplateError, Value,
    MAX_INCLUDE_DEPTH,
};

use crate::driver::{Case, Check};
use crate::ensure;
use crate::gen;
use crate::rng::Rng;

/// An include name as written in the source and as upon reads it.
#[derive(Clone, Copy, Debug)]
pub struct IncName {
    pub literal: &'static str,
    pub name: &'static str,
}

const INC1: IncName = IncName {
    literal: "\"inc1\"",
    name: "inc1",
};
const INC2: IncName = IncName {
    literal: "\"inc2\"",
    name: "inc2",
};
const ME: IncName = IncName {
    literal: "\"me\"",
    name: "me",
};
/// Templates that include nothing, under names that are awkward to find in a source.
const LEAVES: &[IncName] = &[
    IncName {
        literal: "\"a b\"",
        name: "a b",
    },
    IncName {
        literal: "\"é\"",
        name: "é",
    },
    IncName {
        literal: r#""q\"x""#,
        name: "q\"x",
    },
    IncName {
        literal: r#""back\\slash""#,
        name: "back\\slash",
    },
    IncName {
        literal: r#""tab\t""#,
        name: "tab\t",
    },
    IncName {
        literal: "\"x%}y\"",
        name: "x%}y",
    },
    IncName {
        literal: "\"with\"",
        name: "with",
    },
];

/// The data of the render::fast tests, plus whatever a case adds.
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

/// A generator of template source.
pub struct TGen<'r> {
    rng: &'r mut Rng,
    /// Names this template may include.
    includes: Vec<IncName>,
    /// May write constructs outside the fast subset (and broken ones).
    beyond: bool,
    /// Include names written as real `{% include %}` tags, in order of first appearance.
    pub expected: Vec<String>,
    /// Of those, the ones included `with` a value somewhere.
    pub modules: Vec<String>,
    /// Deepest block nesting written (each `else if` one more level).
    pub max_blocks: usize,
    /// Deepest bracket / filter nesting written in one tag.
    pub max_expr: usize,
    /// A plain `{% include %}` was written inside a `with` block (see [`Set`]).
    pub include_in_with: bool,
    /// Nodes left.
    budget: usize,
    /// Paths that resolve where the generator is (loop and `with` variables).
    bound: Vec<&'static str>,
}

/// Paths of the data that resolve to something printable.
const SCALARS: &[&str] = &[
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
    "users.0.admin",
    "page.key",
    "page.version",
    "request.device",
    "huge",
    "imin",
];

/// Paths of the data that can be iterated (the first few as lists, the rest as maps).
const ITERABLES: &[&str] = &[
    "xs",
    "e",
    "users",
    "users.0.tags",
    "xs.6",
    "m",
    "em",
    "m.c",
    "page",
];

impl<'r> TGen<'r> {
    pub fn new(rng: &'r mut Rng, includes: Vec<IncName>, beyond: bool) -> TGen<'r> {
        let budget = rng.range(4, 60);
        TGen {
            rng,
            includes,
            beyond,
            expected: Vec::new(),
            modules: Vec::new(),
            max_blocks: 0,
            max_expr: 0,
            include_in_with: false,
            budget,
            bound: Vec::new(),
        }
    }

    fn ws(&mut self) -> &'static str {
        if self.beyond && self.rng.chance(3) {
            return "\u{a0}";
        }
        self.rng.pick(&["", " ", " ", "  ", "\n", "\t", " \r\n "])
    }

    fn open(&mut self, kind: char) -> String {
        let trim = if self.rng.chance(25) { "-" } else { "" };
        let ws = self.ws();
        format!("{{{kind}{trim}{ws}")
    }

    fn close(&mut self, kind: char) -> String {
        let trim = if self.rng.chance(25) { "-" } else { "" };
        let ws = self.ws();
        let kind = if kind == '{' { '}' } else { kind };
        format!("{ws}{trim}{kind}}}")
    }

    fn block(&mut self, body: &str) -> String {
        format!("{}{body}{}", self.open('%'), self.close('%'))
    }

    fn raw(&mut self) -> String {
        let mut s = String::new();
        for _ in 0..self.rng.below(3) {
            let piece = if self.beyond && self.rng.chance(10) {
                self.rng
                    .pick(&["{", "}", "{ {", "%}", "}}", "#}", "{-", "{{}}", "{##}"])
            } else {
                self.rng.pick(&[
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
                    " } ",
                    " {x",
                    "\u{1F600}",
                ])
            };
            s.push_str(piece);
        }
        s
    }

    fn ident(&mut self) -> String {
        if self.beyond && self.rng.chance(5) {
            return self
                .rng
                .pick(&["héllo", "_x", "x1", "in", "true", "not", "loop", "a-b"])
                .into();
        }
        self.rng
            .pick(&[
                "s", "u", "empty", "n", "t", "f", "i", "neg", "zero", "fl", "big", "sum", "fz",
                "xs", "m", "users", "page", "request", "it", "k", "v", "w", "loop", "missing", "a",
                "dim", "e", "em",
            ])
            .into()
    }

    fn member(&mut self) -> String {
        match self.rng.below(10) {
            0..=2 => self.rng.pick(&["0", "1", "2", "5", "01", "9"]).into(),
            3 if self.beyond => self
                .rng
                .pick(&["18446744073709551616", "99999999999", "-1", "1.5"])
                .into(),
            4 => self
                .rng
                .pick(&["index", "first", "last", "name", "tags", "age", "key"])
                .into(),
            _ => self.ident(),
        }
    }

    /// A path: mostly one that resolves here, else `a.b.0`, sometimes with `?.` (beyond).
    fn path(&mut self) -> String {
        if self.rng.chance(75) {
            if !self.bound.is_empty() && self.rng.chance(40) {
                return self.rng.pick(&self.bound).to_string();
            }
            return self.rng.pick(SCALARS).to_string();
        }
        let mut p = self.ident();
        for _ in 0..self.rng.size(3) {
            if self.beyond && self.rng.chance(8) {
                p.push_str("?.");
            } else {
                p.push('.');
            }
            p.push_str(&self.member());
        }
        p
    }

    /// What a loop goes over: mostly a list or map of the data.
    fn iterable(&mut self) -> String {
        if self.rng.chance(70) {
            return self.rng.pick(ITERABLES).to_string();
        }
        self.expr()
    }

    /// An expression: a path, or (beyond) a literal, list, map, call or operator.
    fn expr(&mut self) -> String {
        if !self.beyond || self.rng.chance(75) {
            return self.path();
        }
        match self.rng.below(10) {
            0 => self
                .rng
                .pick(&["1", "-1", "0", "1.5", "1e3", "true", "false"])
                .into(),
            1 => {
                let lit = self.rng.pick(&[
                    "\"lit\"",
                    "\"}}\"",
                    "\"%}\"",
                    "\"\\\"\"",
                    "\"{% include \\\"zz\\\" %}\"",
                    "\"\\x\"",
                    "\"",
                ]);
                lit.into()
            }
            2 => format!("[{}, {}]", self.path(), self.path()),
            3 => format!("{{\"a\": {}}}", self.path()),
            4 => format!("({})", self.path()),
            5 => format!("{} == {}", self.path(), self.path()),
            6 => format!("f({})", self.path()),
            7 => format!("{}.", self.path()),
            8 => format!(". {}", self.path()),
            _ => format!("{} {}", self.path(), self.path()),
        }
    }

    fn filters(&mut self) -> String {
        if !self.rng.chance(30) {
            return String::new();
        }
        let name = if self.beyond && self.rng.chance(30) {
            self.rng.pick(&[
                "upper",
                "nosuch",
                "raw: 1",
                "raw()",
                "__dynpage_turn",
                "",
                "raw | raw",
            ])
        } else {
            "raw"
        };
        format!("{}|{}{name}", self.ws(), self.ws())
    }

    pub fn nodes(&mut self, depth: usize, level: usize, in_with: bool, loops: usize) -> String {
        let mut s = String::new();
        for _ in 0..self.rng.below(5) {
            if self.budget == 0 {
                break;
            }
            self.budget -= 1;
            s.push_str(&self.node(depth, level, in_with, loops));
        }
        s
    }

    fn node(&mut self, depth: usize, level: usize, in_with: bool, loops: usize) -> String {
        let choice = if depth == 0 {
            self.rng.below(4)
        } else {
            self.rng.below(10)
        };
        let raw = self.raw();
        let node = match choice {
            0 => String::new(),
            1 => {
                let body = if self.beyond && self.rng.chance(20) {
                    // Tags inside a comment: upon refuses them.
                    self.rng
                        .pick(&[" {% include \"inc1\" %} ", " {{ missing }} ", "{% if %}"])
                } else {
                    self.rng
                        .pick(&[" c ", " x-y ", "x-", " {  } ", "é", "-", "\"", "%", "# "])
                };
                format!("{}{body}{}", self.open('#'), self.close('#'))
            }
            2 | 3 => {
                let e = self.expr();
                let filter = self.filters();
                self.max_expr = self.max_expr.max(filter.matches('|').count() + 1);
                format!("{}{e}{filter}{}", self.open('{'), self.close('}'))
            }
            4 | 5 => self.if_chain(depth, level, in_with, loops),
            6 if loops < 2 => {
                let vars = if self.beyond && self.rng.chance(10) {
                    self.rng.pick(&["in", "true", "a b", "k,", ""])
                } else {
                    self.rng
                        .pick(&["it", "it", "k, v", "k,v", "loop", "s", "k, k", "v"])
                };
                let iterable = self.iterable();
                let mut s = self.block(&format!("for {vars} in {iterable}"));
                self.max_blocks = self.max_blocks.max(level + 1);
                let bound = self.bound.len();
                let names: &[&'static str] = match vars {
                    "it" => &["it", "it.name", "it.age", "it.0", "loop.index", "loop.last"],
                    "k, v" | "k,v" => &["k", "v", "v.0", "v.a", "loop.first", "loop.index"],
                    "k, k" => &["k", "loop.index"],
                    "loop" => &["loop"],
                    "s" => &["s", "s.name"],
                    "v" => &["v"],
                    _ => &[],
                };
                self.bound.extend_from_slice(names);
                s.push_str(&self.nodes(depth - 1, level + 1, in_with, loops + 1));
                self.bound.truncate(bound);
                s.push_str(&self.block("endfor"));
                s
            }
            7 => {
                let name = self.rng.pick(&["w", "w", "s", "loop", "it", "dim"]);
                let expr = if self.rng.chance(50) {
                    self.iterable()
                } else {
                    self.expr()
                };
                let mut s = self.block(&format!("with {expr} as {name}"));
                self.max_blocks = self.max_blocks.max(level + 1);
                let bound = self.bound.len();
                let names: &[&'static str] = match name {
                    "w" => &["w", "w.a", "w.0", "w.name"],
                    "s" => &["s", "s.a"],
                    "loop" => &["loop", "loop.index"],
                    "it" => &["it", "it.name"],
                    _ => &["dim"],
                };
                self.bound.extend_from_slice(names);
                s.push_str(&self.nodes(depth - 1, level + 1, true, loops));
                self.bound.truncate(bound);
                s.push_str(&self.block("endwith"));
                s
            }
            8 if self.beyond && self.rng.chance(30) => self
                .rng
                .pick(&[
                    "{% endif %}",
                    "{% else %}",
                    "{% endfor %}",
                    "{% if t %}",
                    "{{",
                    "{%",
                    "{% include %}",
                    "{% include inc1 %}",
                    "{% include \"inc1\" with %}",
                    "{% for x in xs %}{% endif %}",
                ])
                .into(),
            _ => {
                if self.includes.is_empty() {
                    return raw;
                }
                let inc = self.rng.pick(&self.includes);
                let name = inc.name.to_string();
                if !self.expected.contains(&name) {
                    self.expected.push(name.clone());
                }
                // A plain include inside a `with` block is refused: written now and then.
                if self.rng.chance(40) || (in_with && self.rng.chance(90)) {
                    if !self.modules.contains(&name) {
                        self.modules.push(name);
                    }
                    let with = self.expr();
                    self.block(&format!("include {} with {with}", inc.literal))
                } else {
                    self.include_in_with |= in_with;
                    self.block(&format!("include {}", inc.literal))
                }
            }
        };
        raw + &node
    }

    fn if_chain(&mut self, depth: usize, level: usize, in_with: bool, loops: usize) -> String {
        if depth == 0 {
            return String::new();
        }
        let not = if self.rng.chance(30) { "not " } else { "" };
        let cond = format!("if {not}{}", self.expr());
        let mut s = self.block(&cond);
        let mut level = level + 1;
        self.max_blocks = self.max_blocks.max(level);
        s.push_str(&self.nodes(depth - 1, level, in_with, loops));
        for _ in 0..self.rng.below(3) {
            let not = if self.rng.chance(30) { "not " } else { "" };
            let cond = format!("else if {not}{}", self.expr());
            s.push_str(&self.block(&cond));
            level += 1;
            self.max_blocks = self.max_blocks.max(level);
            s.push_str(&self.nodes(depth - 1, level, in_with, loops));
        }
        if self.rng.chance(50) {
            s.push_str(&self.block("else"));
            s.push_str(&self.nodes(depth - 1, level, in_with, loops));
        }
        s.push_str(&self.block("endif"));
        s
    }

    /// Blocks nested `n` deep around a small body.
    fn deep_blocks(&mut self, n: usize) -> String {
        let mut open = String::new();
        let mut close = Vec::new();
        for _ in 0..n {
            let (o, c) = self.rng.pick(&[
                ("{% if t %}", "{% endif %}"),
                ("{% if f %}{% else %}", "{% endif %}"),
                ("{% for x in xs.6 %}", "{% endfor %}"),
                ("{% with m as w %}", "{% endwith %}"),
            ]);
            open.push_str(o);
            close.push(c);
        }
        self.max_blocks = n;
        close.reverse();
        format!("{open}{{{{ i }}}}{}", close.concat())
    }

    /// One tag nesting `n` brackets, or chaining `n` filters.
    fn deep_expr(&mut self, n: usize) -> String {
        self.max_expr = n;
        if self.rng.chance(50) {
            format!("{{{{ {}i{} }}}}", "[".repeat(n), "]".repeat(n))
        } else {
            format!("{{{{ i{} }}}}", " | raw".repeat(n))
        }
    }
}

/// Any template (for other harnesses): small, mostly within the subset.
pub fn random_template(rng: &mut Rng) -> String {
    let beyond = rng.chance(30);
    let mut g = TGen::new(rng, vec![INC1, INC2], beyond);
    g.nodes(3, 0, false, 0)
}

/// The generated templates of one case.
struct Set {
    main: String,
    /// (name, source, generator's expected includes and modules) for each included template.
    others: Vec<(&'static str, String)>,
    /// What the generator wrote into the main template (None once mutated).
    expected: Option<(Vec<String>, Vec<String>)>,
    max_blocks: Option<usize>,
    max_expr: Option<usize>,
    /// Some template has a plain include inside a `with` block: upon 0.11 then looks the
    /// included template's variables up against the `with` names at the wrong offsets (it
    /// compares slices of the included source taken at the including template's spans), so
    /// what it renders depends on the exact source text, and the core's (loops counting their
    /// turns) differs from the author's. Not compared with upon on the sources.
    include_in_with: bool,
}

fn generate(rng: &mut Rng) -> Set {
    let beyond = rng.chance(25);
    // Leaves include nothing, inc2 includes leaves, inc1 includes inc2 and leaves.
    let mut leaves_used: Vec<IncName> = Vec::new();
    for l in LEAVES {
        if rng.chance(30) {
            leaves_used.push(*l);
        }
    }
    let mut others: Vec<(&'static str, String)> = Vec::new();
    for l in LEAVES {
        let b = beyond && rng.chance(20);
        let mut g = TGen::new(rng, vec![], b);
        others.push((l.name, g.nodes(2, 0, false, 0)));
    }
    let mut include_in_with = false;
    let mut g = TGen::new(rng, leaves_used.clone(), false);
    others.push(("inc2", g.nodes(3, 0, false, 0)));
    include_in_with |= g.include_in_with;
    let mut inc1_names = leaves_used.clone();
    inc1_names.push(INC2);
    let b = beyond && rng.chance(30);
    let mut g = TGen::new(rng, inc1_names, b);
    others.push(("inc1", g.nodes(3, 0, false, 0)));
    include_in_with |= g.include_in_with;
    others.push(("me", "x{% include \"me\" %}".into()));

    let mut main_names = leaves_used;
    main_names.extend([INC1, INC2]);
    if rng.chance(5) {
        main_names.push(ME);
    }
    let special = rng.chance(2);
    let mut g = TGen::new(rng, main_names, beyond);
    let main = if special {
        let n = g.rng.range(
            MAX_BLOCK_NESTING.min(MAX_EXPR_NESTING) - 40,
            MAX_BLOCK_NESTING.max(MAX_EXPR_NESTING) + 30,
        );
        if g.rng.chance(50) {
            g.deep_blocks(n)
        } else {
            g.deep_expr(n)
        }
    } else {
        g.nodes(3, 0, false, 0)
    };
    let (expected, modules, max_blocks, max_expr) =
        (g.expected, g.modules, g.max_blocks, g.max_expr);
    include_in_with |= g.include_in_with;
    let mutate = beyond && rng.chance(40);
    let main = if mutate {
        let mut bytes = main.into_bytes();
        gen::mutate(
            rng,
            &mut bytes,
            &[
                "{{",
                "}}",
                "{%",
                "%}",
                "{#",
                "#}",
                "-",
                "\"",
                "|",
                "{% endif %}",
                "{% else %}",
                "{% endfor %}",
                "{% include \"inc1\" %}",
                " ",
                ".",
                "?.",
            ],
        );
        gen::text(bytes)
    } else {
        main
    };
    Set {
        main,
        others,
        expected: (!mutate).then_some((expected, modules)),
        max_blocks: (!mutate).then_some(max_blocks),
        max_expr: (!mutate).then_some(max_expr),
        include_in_with: include_in_with || mutate,
    }
}

/// The context as one upon value, and its data as JSON text.
fn context(rng: &mut Rng) -> (Value, String) {
    let mut data: serde_json::Value = serde_json::from_str(DATA).expect("DATA is JSON");
    if rng.chance(40) {
        let mut budget = 30;
        let extra = gen::object(rng, 3, &mut budget);
        let obj = data.as_object_mut().expect("DATA is an object");
        for (k, v) in extra {
            obj.insert(k, v);
        }
    }
    let value = build_context(
        data.as_object().expect("DATA is an object"),
        PAGE,
        &[("device".into(), "<m>".into())],
    );
    (value, data.to_string())
}

const PAGE: PageInfo<'static> = PageInfo {
    key: "/k",
    version: "7",
    variant: "production",
};

pub fn run(c: &mut Case) -> Check {
    let set = generate(&mut c.rng);
    c.show("main", &set.main);
    for (n, src) in &set.others {
        if set.main.contains(n) {
            c.show(n, src);
        }
    }
    c.count("cases");

    // Compile, with the nesting limits checked against what was generated.
    let main = match compile(set.main.clone()) {
        Ok(t) => t,
        Err(e) => {
            check_refusal(c, &set, &e)?;
            return Ok(());
        }
    };
    check_nesting_accepted(&set)?;
    ensure!(
        engine().compile(set.main.clone()).is_ok(),
        "compile accepted what upon refuses"
    );
    c.count("compiled");
    if main.has_fast_path() {
        c.count("compiled: fast path");
    }
    if let Some((names, modules)) = &set.expected {
        ensure!(
            main.includes() == names.as_slice(),
            "includes() = {:?}, the source includes {names:?}",
            main.includes()
        );
        ensure!(
            main.modules() == modules.as_slice(),
            "modules() = {:?}, the source includes with a value {modules:?}",
            main.modules()
        );
    }
    let mut compiled: BTreeMap<&str, CompiledTemplate> = BTreeMap::new();
    for (name, src) in &set.others {
        match compile(src.clone()) {
            Ok(t) => {
                compiled.insert(name, t);
            }
            Err(_) => c.count("an include does not compile"),
        }
    }
    // What a page would fetch: the includes found in the sources, transitively.
    let mut names: Vec<&str> = main.includes().iter().map(String::as_str).collect();
    let mut i = 0;
    while i < names.len() {
        if let Some(t) = compiled.get(names[i]) {
            for n in t.includes() {
                if !names.contains(&n.as_str()) {
                    names.push(n);
                }
            }
        }
        i += 1;
    }
    let incs: Vec<(&str, &CompiledTemplate)> = names
        .iter()
        .filter_map(|n| compiled.get_key_value(n).map(|(k, t)| (*k, t)))
        .collect();

    let (ctx, data) = context(&mut c.rng);
    let dim = Value::String("<dim>".into());
    let request = Value::Map(
        [("device".to_string(), Value::String("d&".into()))]
            .into_iter()
            .collect(),
    );
    let named = [("dim", &dim), ("request", &request)];
    let doc = Doc::parse(data.as_bytes()).map_err(|e| format!("DATA as a document: {e}"))?;
    let page = page_value(PAGE);
    let page_named = [("request", &request), ("page", &page)];
    let scope = if c.rng.chance(30) {
        c.count("scope with named layers");
        Scope {
            named: &named,
            doc: None,
            base: Some(&ctx),
        }
    } else if c.rng.chance(40) {
        c.count("the data as a document");
        Scope {
            named: &page_named,
            doc: Some(&doc),
            base: None,
        }
    } else {
        Scope::of(&ctx)
    };

    // The fast renderer (with its fallback) against upon.
    let mut fast = b"prefix:".to_vec();
    let fast_result = render_into(&main, scope, &incs, &mut fast);
    let mut upon = Vec::new();
    let upon_result = render_with_upon(&main, scope, &incs, &mut upon);
    compare(
        c,
        "render_into",
        &fast_result,
        &fast[7..],
        &upon_result,
        &upon,
        true,
    )?;
    // upon as it is, on the author's sources: the same output, or the same error (the same
    // position), as upon on what the core compiled (loops counting their turns).
    if set.include_in_with {
        c.count("include inside with: not compared with upon on the source");
    } else if upon_result
        .as_ref()
        .err()
        .is_none_or(|e| e.exceeded.is_none() && !e.message.contains("the template engine failed"))
    {
        let sources: Vec<(&str, &str)> = incs
            .iter()
            .filter_map(|(n, _)| {
                let (_, src) = set.others.iter().find(|(m, _)| m == n)?;
                Some((*n, src.as_str()))
            })
            .collect();
        let reference = reference_render(&set.main, &sources, &scope.to_value());
        match (&upon_result, &reference) {
            (Ok(()), Ok(r)) => ensure!(
                upon == *r,
                "upon on the compiled template and on its source differ:\n  compiled: {:?}\n  source: {:?}",
                clip(&String::from_utf8_lossy(&upon)),
                clip(&String::from_utf8_lossy(r))
            ),
            (Err(e), Err(r)) => ensure!(
                e.message == *r || r == "panicked",
                "upon on the compiled template and on its source fail differently:\n  compiled: {}\n  source: {r}",
                e.message
            ),
            (got, want) => {
                return Err(format!(
                    "upon on the compiled template gives {got:?}, on its source {:?}",
                    want.as_ref().map(|o| clip(&String::from_utf8_lossy(o)))
                ))
            }
        }
        c.count("upon on the source agrees");
    }
    if let Err(e) = &upon_result {
        missing_include(e, &compiled)?;
        if e.message.contains("the template engine failed") {
            // The core catches upon's panics, but those known are refused at compile: a panic
            // here is an upon bug to refuse (or work around) too.
            return Err(format!("upon panicked (the core caught it): {}", e.message));
        }
    }

    // Under a small budget.
    let limits = Limits {
        max_output: c.rng.range(0, 300),
        max_includes: c.rng.range(0, 4) as u32,
        max_steps: c.rng.range(1, 200) as u64,
    };
    let mut fast = Vec::new();
    let fast_result = render_limited(&main, scope, &incs, &limits, &mut fast);
    let mut upon = Vec::new();
    let upon_result = render_with_upon_limited(&main, scope, &incs, &limits, &mut upon);
    compare(
        c,
        "render_limited",
        &fast_result,
        &fast,
        &upon_result,
        &upon,
        false,
    )?;

    // Leaving out failed modules.
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    let result = render_skipping_failed_modules(
        &main,
        scope,
        &incs,
        &Limits::default(),
        &[],
        &mut out,
        &mut skipped,
    );
    check_skipping(
        c,
        &main,
        scope,
        &incs,
        &upon_result_default(&main, scope, &incs),
        result,
        &out,
        &skipped,
    )
}

/// upon configured as the core configures it (escaping, `raw`, include depth), without the
/// core's instrumentation and budget.
fn reference_engine() -> &'static upon::Engine<'static> {
    static ENGINE: OnceLock<upon::Engine<'static>> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut e = upon::Engine::new();
        e.set_default_formatter(&reference_escaped);
        e.add_formatter("raw", |f, v| match v {
            Value::String(s) => Ok(std::fmt::Write::write_str(f, s)?),
            Value::None => Ok(()),
            other => upon::fmt::default(f, other),
        });
        e.add_formatter("__dynpage_turn", |_, _| Ok(()));
        e.set_max_include_depth(MAX_INCLUDE_DEPTH);
        e
    })
}

fn reference_escaped(f: &mut upon::fmt::Formatter<'_>, v: &Value) -> upon::fmt::Result {
    match v {
        Value::String(s) => {
            for ch in s.chars() {
                let piece = match ch {
                    '&' => "&amp;",
                    '<' => "&lt;",
                    '>' => "&gt;",
                    '"' => "&quot;",
                    '\'' => "&#x27;",
                    _ => {
                        std::fmt::Write::write_char(f, ch)?;
                        continue;
                    }
                };
                std::fmt::Write::write_str(f, piece)?;
            }
            Ok(())
        }
        Value::None => Ok(()),
        other => upon::fmt::default(f, other),
    }
}

/// Renders `main` with includes `incs` (name, source) on [`reference_engine`]: the output, or
/// the error as the core words it (`one_line`).
fn reference_render(main: &str, incs: &[(&str, &str)], ctx: &Value) -> Result<Vec<u8>, String> {
    let engine = reference_engine();
    let main = engine.compile(main).map_err(|e| one_line(&e))?;
    let compiled: Vec<(&str, upon::Template<'_>)> = incs
        .iter()
        .filter_map(|(n, src)| Some((*n, engine.compile(*src).ok()?)))
        .collect();
    let renderer = main.render_from(engine, ctx).with_template_fn(|name| {
        compiled
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| t)
            .ok_or_else(|| format!("included template \"{name}\" is not in the store"))
    });
    let mut out = Vec::new();
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        renderer.to_writer(&mut out)
    })) {
        Ok(Ok(())) => Ok(out),
        Ok(Err(e)) => Err(one_line(&e)),
        Err(_) => Err("panicked".into()),
    }
}

fn upon_result_default(
    main: &CompiledTemplate,
    scope: Scope<'_>,
    incs: &[(&str, &CompiledTemplate)],
) -> Result<Vec<u8>, RenderError> {
    let mut out = Vec::new();
    render_into(main, scope, incs, &mut out).map(|()| out)
}

/// At most 300 characters of `s`, for messages.
pub fn clip(s: &str) -> String {
    match s.char_indices().nth(300) {
        Some((i, _)) => format!("{}... ({} bytes)", &s[..i], s.len()),
        None => s.to_string(),
    }
}

/// A compile refusal: too deep only when generated too deep, and upon agrees on syntax errors.
fn check_refusal(c: &mut Case, set: &Set, e: &TemplateError) -> Check {
    match e {
        TemplateError::TooDeep(d) => {
            c.count("refused: too deep");
            let blocks_limit = MAX_BLOCK_NESTING;
            let expr_limit = MAX_EXPR_NESTING;
            if let (Some(b), Some(x)) = (set.max_blocks, set.max_expr) {
                ensure!(
                    b + 5 > blocks_limit || x + 5 > expr_limit,
                    "refused as too deep ({d}) but nested only {b} blocks / {x} in a tag"
                );
            }
        }
        TemplateError::Syntax(msg) => {
            c.count("refused: syntax");
            c.show("refused", msg);
            check_nesting_accepted(set).map_err(|e| format!("{e} (it failed with {msg})"))?;
            if msg.contains("a filter given arguments") {
                c.count("refused: filter arguments");
                return Ok(());
            }
            if msg.contains("an include without `with` inside a with block") {
                // Refused on purpose (upon renders it unreliably), only where there is one.
                c.count("refused: include inside with");
                ensure!(
                    set.include_in_with,
                    "refused an include inside a with block where none was written: {msg}"
                );
                return Ok(());
            }
            ensure!(
                engine().compile(set.main.clone()).is_err(),
                "compile refused ({msg}) what upon accepts"
            );
        }
        TemplateError::TooLarge(_) => {
            return Err(format!(
                "a template of {} bytes is too large",
                set.main.len()
            ))
        }
        #[allow(unreachable_patterns)]
        _ => c.count("refused: other"),
    }
    Ok(())
}

/// A template nested well over the limits must have been refused as too deep.
fn check_nesting_accepted(set: &Set) -> Check {
    if let (Some(b), Some(x)) = (set.max_blocks, set.max_expr) {
        ensure!(
            b < MAX_BLOCK_NESTING + 5 && x < MAX_EXPR_NESTING + 5,
            "not refused as too deep although nested {b} blocks / {x} in a tag"
        );
    }
    Ok(())
}

/// An include upon asked for that is a template of the case but was not found in the sources.
fn missing_include(e: &RenderError, compiled: &BTreeMap<&str, CompiledTemplate>) -> Check {
    if let Some(rest) = e.message.split("included template \"").nth(1) {
        if let Some(name) = rest.split("\" is not in the store").next() {
            ensure!(
                !compiled.contains_key(name),
                "upon includes {name:?}, which no includes() list names: {}",
                e.message
            );
        }
    }
    Ok(())
}

/// The fast path (`a`) against upon (`b`): the same bytes, or both failing. With `exact`
/// (default limits), the same message and partial output too unless a budget ran out.
fn compare(
    c: &mut Case,
    what: &str,
    a: &Result<(), RenderError>,
    a_out: &[u8],
    b: &Result<(), RenderError>,
    b_out: &[u8],
    exact: bool,
) -> Check {
    let show = |o: &[u8]| clip(&String::from_utf8_lossy(o));
    match (a, b) {
        (Ok(()), Ok(())) => {
            c.count(if exact {
                "rendered"
            } else {
                "rendered within a small budget"
            });
            ensure!(
                a_out == b_out,
                "{what} and upon differ:\n  fast: {:?}\n  upon: {:?}",
                show(a_out),
                show(b_out)
            );
        }
        (Err(x), Err(y)) => {
            c.count(if exact {
                "both failed"
            } else {
                "both failed within a small budget"
            });
            if exact && x.exceeded.is_none() && y.exceeded.is_none() {
                ensure!(
                    x.message == y.message,
                    "{what} and upon fail differently: {:?} / {:?}",
                    x.message,
                    y.message
                );
                ensure!(
                    a_out == b_out,
                    "{what} and upon leave different partial output: {:?} / {:?}",
                    show(a_out),
                    show(b_out)
                );
            }
            if x.exceeded.is_some() != y.exceeded.is_some() {
                c.count("error classes differ (budget / template)");
            }
        }
        (Ok(()), Err(y)) if y.exceeded.is_some() => {
            // upon counts at least the fast renderer's steps: it may go over where it does not
            // (nested loops count their bodies again). Counted, not failed: see the report.
            c.count(if exact {
                "only upon over the budget"
            } else {
                "only upon over the small budget"
            });
        }
        (Ok(()), Err(y)) => {
            return Err(format!(
                "{what} rendered {:?} but upon failed: {}",
                show(a_out),
                y.message
            ))
        }
        (Err(x), Ok(())) => {
            return Err(format!(
                "{what} failed ({}) but upon rendered {:?}",
                x.message,
                show(b_out)
            ))
        }
    }
    Ok(())
}

/// `render_skipping_failed_modules`: what renders anyway is unchanged; otherwise the output is
/// upon's with the left-out modules replaced by nothing, and only modules are left out.
#[allow(clippy::too_many_arguments)]
fn check_skipping(
    c: &mut Case,
    main: &CompiledTemplate,
    scope: Scope<'_>,
    incs: &[(&str, &CompiledTemplate)],
    plain: &Result<Vec<u8>, RenderError>,
    result: Result<(), RenderError>,
    out: &[u8],
    skipped: &[SkippedModule],
) -> Check {
    let show = |o: &[u8]| clip(&String::from_utf8_lossy(o));
    if let Ok(plain) = plain {
        ensure!(
            result.is_ok() && skipped.is_empty() && out == plain.as_slice(),
            "a page that renders was changed by skipping modules: {result:?}, {skipped:?}, {:?}",
            show(out)
        );
        return Ok(());
    }
    let Ok(()) = result else {
        c.count("skipping: still fails");
        return Ok(());
    };
    c.count("skipping: rendered without modules");
    let Some(empty) = empty_template() else {
        return Err("no empty template".into());
    };
    let mut current: Vec<(&str, &CompiledTemplate)> = incs.to_vec();
    for s in skipped {
        let is_module = main.modules().contains(&s.name)
            || incs.iter().any(|(_, t)| t.modules().contains(&s.name));
        ensure!(is_module, "{:?} was left out but is no module", s.name);
        match current.iter_mut().find(|(n, _)| *n == s.name) {
            Some(slot) => slot.1 = &*empty,
            None => current.push((s.name.as_str(), &*empty)),
        }
    }
    let mut want = Vec::new();
    let want_result = render_with_upon(main, scope, &current, &mut want);
    ensure!(
        want_result.is_ok() && want == out,
        "skipping {skipped:?} rendered {:?}; upon without them: {want_result:?} {:?}",
        show(out),
        show(&want)
    );
    Ok(())
}
