#!/usr/bin/env python3
"""No file imports another that imports it back, in any of the three crates.

For each crate (core/src, src, ctl/src) this builds the file-level graph of references: a path
that starts with `crate::`, `super::`, `self::`, a child module's name or a module brought in by
`use` is resolved to the file that defines what it names (a module's own file when the item is
defined there; through `use` items (re-exports) to the file that defines the item). `mod x;`
declarations are not edges. A cycle is either a strongly connected group of files or a file that
refers to an item defined in one of its ancestors (lib.rs, main.rs, a mod.rs or a parent
module's file): the ancestor declares the file, so that reference is a back-edge.

Exits 1 naming each cycle, 0 when there is none. `--self-test` builds a tree with planted cycles
in a temporary directory and checks that they are found (and that a clean tree passes).

Usage: scripts/check-imports.py [--self-test] [crate source dir ...]
"""

import os
import re
import sys
import tempfile

CRATES = ["core/src", "src", "ctl/src"]
ROOTS = ("lib.rs", "main.rs")
KEYWORDS_START = {"crate", "super", "self"}
DEFINES = r"\b(?:fn|struct|enum|union|trait|type|const|static|mod|macro_rules!)\s+{}\b"


# ---- lexing -------------------------------------------------------------------------------

TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<line_comment>//[^\n]*)
  | (?P<block_comment>/\*)
  | (?P<raw_string>b?r(?P<hashes>\#*)")
  | (?P<string>b?"(?:\\.|[^"\\])*")
  | (?P<char>b?'(?:\\(?:x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]+\}|.)|[^'\\\n])')
  | (?P<lifetime>'[A-Za-z_][A-Za-z0-9_]*)
  | (?P<ident>\$?[A-Za-z_][A-Za-z0-9_]*!?)
  | (?P<path_sep>::)
  | (?P<punct>.)
    """,
    re.VERBOSE | re.DOTALL,
)


def tokens(text):
    """The tokens that matter here: identifiers (`$crate` as `crate`), `::` and punctuation."""
    out = []
    i = 0
    n = len(text)
    while i < n:
        m = TOKEN.match(text, i)
        kind = m.lastgroup if m.lastgroup != "hashes" else "raw_string"
        if m.group("block_comment"):
            depth, j = 1, m.end()
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            i = j
            continue
        if m.group("raw_string") is not None:
            close = '"' + m.group("hashes")
            j = text.find(close, m.end())
            i = n if j < 0 else j + len(close)
            continue
        i = m.end()
        if kind in ("ws", "line_comment", "string", "char", "lifetime"):
            continue
        tok = m.group(0)
        if tok == "$crate":
            tok = "crate"
        out.append(tok)
    return out


# ---- parsing a file -----------------------------------------------------------------------


def parse_use_tree(toks, i, prefix, out):
    """Parses one use tree at toks[i]; appends (segments, alias or None, glob). Returns the index
    after it."""
    segs = list(prefix)
    while i < len(toks):
        t = toks[i]
        if t == "{":
            i += 1
            while i < len(toks) and toks[i] != "}":
                i = parse_use_tree(toks, i, segs, out)
                if i < len(toks) and toks[i] == ",":
                    i += 1
            return i + 1
        if t == "*":
            out.append((segs, None, True))
            return i + 1
        if t == "::":
            i += 1
            continue
        if re.match(r"^[A-Za-z_]", t):
            segs = segs + [t]
            i += 1
            if i < len(toks) and toks[i] == "::":
                continue
            alias = None
            if i + 1 < len(toks) and toks[i] == "as":
                alias = toks[i + 1]
                i += 2
            if segs and segs[-1] == "self":
                segs = segs[:-1]
                out.append((segs, alias or (segs[-1] if segs else None), False))
            else:
                out.append((segs, alias or segs[-1], False))
            return i
        return i
    return i


class FileInfo:
    def __init__(self, path, modpath):
        self.path = path
        self.modpath = modpath  # tuple of module names from the crate root
        self.text = ""
        self.toks = []
        self.file_mods = []  # (scope modpath, name) for `mod name;`
        self.inline_mods = set()  # modpaths of inline `mod name { ... }`
        self.uses = []  # (scope modpath, segments, alias, glob, public)
        self.paths = []  # (scope modpath, segments)


def scan(info):
    """Finds module declarations, `use` trees and other paths, each with the module scope (the
    file's module plus any inline modules around it) it is written in."""
    toks = info.toks
    stack = []  # (name, brace depth at which it closes)
    depth = 0
    i = 0
    while i < len(toks):
        t = toks[i]
        scope = info.modpath + tuple(name for name, _ in stack)
        if t == "{":
            depth += 1
        elif t == "}":
            depth -= 1
            if stack and stack[-1][1] == depth:
                stack.pop()
        elif t == "mod" and i + 2 < len(toks) and re.match(r"^[A-Za-z_]\w*$", toks[i + 1]):
            name = toks[i + 1]
            if toks[i + 2] == ";":
                info.file_mods.append((scope, name))
                i += 3
                continue
            if toks[i + 2] == "{":
                info.inline_mods.add(scope + (name,))
                stack.append((name, depth))
                depth += 1
                i += 3
                continue
        elif t == "pub" and i + 1 < len(toks) and toks[i + 1] == "(":
            # A visibility (`pub(crate)`, `pub(in crate::x)`) names no item.
            j = toks.index(")", i)
            i = j + 1
            continue
        elif t == "use" and (i == 0 or toks[i - 1] != "::"):
            public = i > 0 and toks[i - 1] in ("pub", ")")
            trees = []
            j = parse_use_tree(toks, i + 1, [], trees)
            while j < len(toks) and toks[j] != ";":
                j += 1
            for segs, alias, glob in trees:
                info.uses.append((scope, segs, alias, glob, public))
            i = j + 1
            continue
        elif re.match(r"^[A-Za-z_]\w*$", t) and i + 1 < len(toks) and toks[i + 1] == "::" and (
            i == 0 or toks[i - 1] not in ("::", ".")
        ):
            segs = [t]
            j = i + 1
            while j + 1 < len(toks) and toks[j] == "::" and re.match(r"^[A-Za-z_]\w*!?$", toks[j + 1]):
                segs.append(toks[j + 1].rstrip("!"))
                j += 2
            info.paths.append((scope, segs))
            i = j
            continue
        i += 1


# ---- the crate ----------------------------------------------------------------------------


class Crate:
    def __init__(self, src_dir):
        self.src_dir = src_dir
        self.files = {}  # modpath -> FileInfo (file modules only)
        self.inline = {}  # inline modpath -> FileInfo that holds it
        self.children = {}  # modpath -> set of child names
        self.problems = []
        root = next((r for r in ROOTS if os.path.exists(os.path.join(src_dir, r))), None)
        if root is None:
            raise SystemExit(f"check-imports: no lib.rs or main.rs in {src_dir}")
        self.load(os.path.join(src_dir, root), ())

    def load(self, path, modpath):
        info = FileInfo(path, modpath)
        with open(path, encoding="utf-8") as f:
            info.text = f.read()
        info.toks = tokens(info.text)
        scan(info)
        self.files[modpath] = info
        for m in info.inline_mods:
            self.inline[m] = info
            self.children.setdefault(m[:-1], set()).add(m[-1])
        base = os.path.basename(path)
        if base in ROOTS or base == "mod.rs":
            here = os.path.dirname(path)
        else:
            here = os.path.join(os.path.dirname(path), base[:-3])
        for scope, name in info.file_mods:
            sub = os.path.join(here, *scope[len(modpath):])
            for cand in (os.path.join(sub, name + ".rs"), os.path.join(sub, name, "mod.rs")):
                if os.path.exists(cand):
                    self.children.setdefault(scope, set()).add(name)
                    self.load(cand, scope + (name,))
                    break
            else:
                self.problems.append(f"{path}: `mod {name};` has no file")

    def file_of(self, modpath):
        """The file that holds a module (an inline module is in its file's text)."""
        while modpath not in self.files:
            if modpath in self.inline:
                return self.inline[modpath]
            modpath = modpath[:-1]
        return self.files[modpath]

    def is_module(self, modpath):
        return modpath in self.files or modpath in self.inline

    def aliases(self, scope):
        """Names a scope's `use` items bring in, and where they point: {name: (scope, segs)}."""
        info = self.file_of(scope)
        return {
            alias: (s, segs)
            for s, segs, alias, glob, _ in info.uses
            if s == scope and alias and not glob
        }

    def resolve(self, scope, segs, seen=None):
        """Where a path written in `scope` leads: ("module", modpath), ("item", file path) or
        None (outside the crate)."""
        seen = seen or set()
        key = (scope, tuple(segs))
        if key in seen or not segs:
            return None
        seen.add(key)
        first, rest = segs[0], list(segs[1:])
        if first == "crate":
            mod = ()
        elif first == "self":
            mod = scope
        elif first == "super":
            mod = scope[:-1]
            while rest and rest[0] == "super":
                mod, rest = mod[:-1], rest[1:]
        elif first in self.children.get(scope, ()):
            mod = scope + (first,)
        else:
            target = self.aliases(scope).get(first)
            if target is None:
                return None
            where = self.resolve(target[0], target[1], seen)
            if where is None:
                return None
            if where[0] == "item":
                return where
            mod = where[1]
        return self.walk(mod, rest, seen)

    def walk(self, mod, rest, seen):
        while rest and rest[0] in self.children.get(mod, ()):
            mod, rest = mod + (rest[0],), rest[1:]
        if not rest:
            return ("module", mod)
        name = rest[0]
        info = self.file_of(mod)
        # Brought in by a `use` (a re-export, or a private import its descendants may name):
        # resolve it where it is written.
        for s, segs, alias, glob, _ in info.uses:
            if s != mod:
                continue
            if not glob and alias == name and segs:
                where = self.resolve(mod, segs, seen)
                if where is None:
                    return ("item", info.path)
                if where[0] == "module":
                    return self.walk(where[1], rest[1:], seen)
                return where
            if glob:
                where = self.resolve(mod, segs, seen)
                if where and where[0] == "module":
                    found = self.walk(where[1], rest, seen)
                    if found and found[0] == "item":
                        with open(found[1], encoding="utf-8") as f:
                            if re.search(DEFINES.format(re.escape(name)), f.read()):
                                return found
        return ("item", info.path)

    def edges(self):
        """{file: {file it refers to: first reference seen}}"""
        graph = {info.path: {} for info in self.files.values()}
        for info in self.files.values():
            refs = [(scope, segs) for scope, segs, _, glob, _ in info.uses]
            refs += info.paths
            for scope, segs in refs:
                if not segs:
                    continue
                where = self.resolve(scope, segs)
                if where is None:
                    continue
                target = where[1] if where[0] == "item" else None
                if where[0] == "module":
                    # A module brought in by name is an edge only through what is used of it.
                    continue
                if target != info.path:
                    graph[info.path].setdefault(target, "::".join(segs))
        return graph

    def ancestors(self, modpath):
        out = []
        while modpath:
            modpath = modpath[:-1]
            out.append(self.files[modpath].path)
        return out

    def cycles(self):
        graph = self.edges()
        found = list(self.problems)
        rel = lambda p: os.path.relpath(p)  # noqa: E731
        for info in self.files.values():
            for anc in self.ancestors(info.modpath):
                if anc in graph[info.path]:
                    found.append(
                        f"{rel(info.path)} -> {rel(anc)} (`{graph[info.path][anc]}`): "
                        f"a crate-root back-edge, {rel(anc)} declares {rel(info.path)}"
                    )
        for scc in strongly_connected(graph):
            if len(scc) > 1:
                cycle = one_cycle(graph, scc)
                steps = " -> ".join(
                    f"{rel(a)} (`{graph[a][b]}`)" for a, b in zip(cycle, cycle[1:])
                )
                others = sorted(set(scc) - set(cycle))
                also = f" (the group also holds {', '.join(map(rel, others))})" if others else ""
                found.append(f"{steps} -> {rel(cycle[-1])}{also}")
        return found


def strongly_connected(graph):
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        # Iterative Tarjan.
        work = [(v, iter(sorted(graph.get(v, {}))))]
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        while work:
            node, it = work[-1]
            advanced = False
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.get(w, {})))))
                    advanced = True
                    break
                if w in on:
                    low[node] = min(low[node], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                scc = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    scc.append(w)
                    if w == node:
                        break
                out.append(sorted(scc))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def one_cycle(graph, scc):
    """A shortest cycle through the group's first file: [a, b, ..., a]."""
    start, members = scc[0], set(scc)
    prev, queue = {start: None}, [start]
    while queue:
        node = queue.pop(0)
        for w in sorted(graph[node]):
            if w == start:
                path = [node]
                while prev[path[-1]] is not None:
                    path.append(prev[path[-1]])
                return list(reversed(path)) + [start]
            if w in members and w not in prev:
                prev[w] = node
                queue.append(w)
    return [start, start]


# ---- running ------------------------------------------------------------------------------


def check(dirs):
    failed = False
    for d in dirs:
        for line in Crate(d).cycles():
            print(f"check-imports: cycle in {d}: {line}")
            failed = True
    return failed


def self_test():
    planted = {
        "lib.rs": "mod a;\nmod b;\nmod c;\nmod d;\npub struct Root;\n",
        # a <-> b through a use and an expression path.
        "a.rs": "use crate::b::Bee;\npub struct Ay;\n",
        "b.rs": "pub struct Bee;\nfn f() { let _ = super::a::Ay; }\n",
        # c uses the crate root: a back-edge.
        "c.rs": "use crate::Root;\n",
        # d/mod.rs re-exports e's item; f reaches it through d: resolves to e, no cycle;
        # e's test module uses super::* (itself), no cycle.
        "d/mod.rs": "mod e;\nmod f;\npub use e::Ee;\n",
        "d/e.rs": "pub struct Ee;\n#[cfg(test)]\nmod tests { use super::*; }\n",
        "d/f.rs": "use super::Ee; // crate::Root in a comment\nconst S: &str = \"crate::Root\";\n",
    }
    clean = {
        "main.rs": "mod x;\nmod y;\nuse y::Why;\nfn main() { x::run(); let _ = Why; }\n",
        "x.rs": "use crate::y;\npub fn run() { y::helper(); }\n",
        "y.rs": "pub struct Why;\npub fn helper() {}\n",
    }
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for name, tree in (("planted", planted), ("clean", clean)):
            for path, text in tree.items():
                full = os.path.join(tmp, name, path)
                os.makedirs(os.path.dirname(full), exist_ok=True)
                with open(full, "w", encoding="utf-8") as f:
                    f.write(text)
        found = Crate(os.path.join(tmp, "planted")).cycles()
        want = [("a.rs", "b.rs"), ("c.rs", "lib.rs")]
        for x, y in want:
            if not any(x in line and y in line for line in found):
                print(f"check-imports self-test: the cycle {x} <-> {y} was not found: {found}")
                ok = False
        if len(found) != len(want):
            print(f"check-imports self-test: expected {len(want)} cycles, found {found}")
            ok = False
        found = Crate(os.path.join(tmp, "clean")).cycles()
        if found:
            print(f"check-imports self-test: cycles in a clean tree: {found}")
            ok = False
    print("check-imports self-test: " + ("ok" if ok else "FAILED"))
    return ok


def main(argv):
    if "--self-test" in argv:
        return 0 if self_test() else 1
    dirs = [a for a in argv if not a.startswith("-")]
    if not dirs:
        os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
        dirs = CRATES
    if check(dirs):
        return 1
    print("check-imports: no import cycles in " + ", ".join(dirs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
