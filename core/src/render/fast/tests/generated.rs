//! Generated templates: random ones within the fast subset (with includes), and random
//! sequences of tag fragments, each rendered both ways through [`super::harness::differential`].

use super::harness::{context, differential, template, DATA};
use crate::render::compile::{compile as compile_template, CompiledTemplate};

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
        "{{", "{{-", "}}", "-}}", "{%", "{%-", "%}", "-%}", "{#", "{#-", "#}", "-#}", " ", "\n",
        "-", "s", "i", "m.a", "xs.0", "if", "endif", "else", "for", "in", "endfor", "raw", "|",
        ".", "0", "\"", "#", "%", "{", "}", "é", "\u{a0}", "with", "as", "endwith", "not", "t",
        "it", ",", "k", "include", "\"inc\"",
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
