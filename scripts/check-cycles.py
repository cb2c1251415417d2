#!/usr/bin/env python3
"""Fails when the modules of a crate import each other in a circle (issue 15).

Usage: scripts/check-cycles.py [--self-test] [CRATES_DIR]   (default CRATES_DIR: crates)

What it counts, per crate under CRATES_DIR/*/src (src/bin/ is left out: each binary there is
a crate of its own):
  - a module is a file: lib.rs / main.rs is the crate root, x/mod.rs and x.rs are `x`;
    inline `mod name { ... }` blocks count as part of their file, except `#[cfg(test)]` ones,
    which are dropped (a test may use anything);
  - an edge A -> B is any path in A's code (not in comments or string literals) that starts
    with `crate::`, `super::` (any number of them) or `self::` and names module B or an item
    in B: `use` declarations, `pub use` re-exports and paths in expressions and types alike;
    `use` groups are expanded, nested ones too (`use crate::{a::{b, c}, d::*};`);
  - a path is resolved to the longest prefix that is a module (`crate::a::b::Item` -> `a::b`
    if that module exists, else `a`); a re-export is an edge of the module that writes it, so
    a `pub use` that keeps an old path working still shows when it closes a circle;
  - edges between a module and its own ancestors or descendants are ignored: a parent declares
    its children and a child may use its parent's items; that is Rust's tree, not a circle;
  - bare paths (`foo::Bar` without `crate::`) are not counted: in the 2018 edition they name an
    extern crate or a child module, and a child is a descendant anyway.
A circle is a strongly connected component of more than one module; each is printed with the
edges inside it, and the exit code is 1. No circle: no output, exit 0.

--self-test first builds throwaway crate trees (one with a circle through a `use` group, one
with a circle through `super::`, one layered) and checks the verdicts, then checks CRATES_DIR.
"""
import os
import re
import sys
import tempfile
from collections import defaultdict


def modules(src):
    """Module path (tuple) -> file, for one crate's src dir."""
    mods = {}
    for dp, dirs, fs in os.walk(src):
        dirs.sort()
        for f in sorted(fs):
            if not f.endswith('.rs'):
                continue
            rel = os.path.relpath(os.path.join(dp, f), src)[:-3].split(os.sep)
            if rel[0] == 'bin':
                continue
            if rel[-1] in ('mod', 'lib', 'main'):
                rel = rel[:-1]
            mods[tuple(rel)] = os.path.join(dp, f)
    return mods


def strip(text):
    """The code of a file without comments, string/char literals and `#[cfg(test)] mod` blocks."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith('//', i):
            j = text.find('\n', i)
            i = n if j < 0 else j
        elif text.startswith('/*', i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith('/*', i):
                    depth, i = depth + 1, i + 2
                elif text.startswith('*/', i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
            out.append(' ')
        elif (m := re.match(r'b?r(#*)"', text[i:i + 300])) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == '_')):
            end = '"' + m.group(1)
            j = text.find(end, i + m.end())
            i = n if j < 0 else j + len(end)
            out.append('""')
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == '\\' else 1
            i += 1
            out.append('""')
        elif c == "'" and (m := re.match(r"'(\\(x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]+\}|.)|[^\\'])'", text[i:i + 16])):
            i += m.end()
            out.append("' '")
        else:
            out.append(c)
            i += 1
    code = ''.join(out)
    return drop_test_modules(code)


def drop_test_modules(code):
    while True:
        m = re.search(r'#\[cfg\(test\)\]\s*(pub(\([^)]*\))?\s+)?mod\s+\w+\s*\{', code)
        if not m:
            return code
        depth, i = 1, m.end()
        while i < len(code) and depth:
            depth += {'{': 1, '}': -1}.get(code[i], 0)
            i += 1
        code = code[:m.start()] + code[i:]


def use_tree(s, i, prefix, out):
    """Parses one use tree of `s` from `i` (after `prefix`), appending full paths; returns the end."""
    path = list(prefix)
    while True:
        while i < len(s) and s[i].isspace():
            i += 1
        if s.startswith('{', i):
            i += 1
            while True:
                while i < len(s) and s[i] in ' \t\r\n,':
                    i += 1
                if i >= len(s) or s[i] == '}':
                    return i + 1
                i = use_tree(s, i, path, out)
        m = re.match(r'(\*|r#\w+|\w+)', s[i:])
        if not m:
            out.append(path)
            return i
        word = m.group(1)
        i += m.end()
        if word not in ('self', '*'):
            path = path + [word]
        while i < len(s) and s[i].isspace():
            i += 1
        if s.startswith('::', i):
            i += 2
            continue
        if s.startswith('as', i) and re.match(r'as\b', s[i:]):
            i = i + 2 + re.match(r'\s*\w+', s[i + 2:]).end()
        out.append(path)
        return i


def refs(code, me):
    """Every module path `code` (the file of module `me`) names through crate/super/self."""
    paths = []
    for m in re.finditer(r'(?<![\w:])(crate|super|self)\s*::', code):
        raw = []
        use_tree(code, m.start(), [], raw)
        for p in raw:
            # x/y.rs is module `x::y` and x/mod.rs module `x`: either way `super` drops one.
            base = list(me)
            rest = list(p)
            if rest and rest[0] == 'crate':
                base, rest = [], rest[1:]
            elif rest and rest[0] == 'super':
                base = list(me)
                while rest and rest[0] == 'super':
                    base, rest = base[:-1], rest[1:]
            elif rest and rest[0] == 'self':
                rest = rest[1:]
            paths.append(base + rest)
    return paths


def resolve(mods, path):
    for n in range(len(path), -1, -1):
        if tuple(path[:n]) in mods:
            return tuple(path[:n])
    return None


def related(a, b):
    return a[:len(b)] == b or b[:len(a)] == a


def scc(nodes, edges):
    """Tarjan's strongly connected components, iteratively."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], 0
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                out.append(comp)
    return out


def name(m):
    return '::'.join(m) or 'lib'


def check(crates_dir, show=print):
    """Prints every circle of every crate under `crates_dir`; returns how many."""
    bad = 0
    for crate in sorted(os.listdir(crates_dir)):
        src = os.path.join(crates_dir, crate, 'src')
        if not os.path.isdir(src):
            continue
        mods = modules(src)
        edges = defaultdict(set)
        for me, f in mods.items():
            with open(f, encoding='utf-8') as fh:
                code = strip(fh.read())
            for p in refs(code, me):
                t = resolve(mods, p)
                if t is not None and not related(t, me):
                    edges[me].add(t)
        for comp in scc(sorted(mods), edges):
            if len(comp) < 2:
                continue
            bad += 1
            show(f'{crate}: ' + ' <-> '.join(sorted(name(c) for c in comp)))
            for a in sorted(comp):
                for b in sorted(edges[a]):
                    if b in comp:
                        show(f'    {name(a)} -> {name(b)}')
    return bad


def self_test():
    cases = {
        # a circle through a nested use group and an expression path
        'group': ({
            'lib.rs': 'mod a;\nmod b;\n',
            'a.rs': 'use crate::{b::{self, B}, c as _};\npub struct A;\n',
            'b.rs': 'pub struct B;\nfn f() { let _ = crate::a::A; }\n',
        }, ['x: a <-> b']),
        # a circle through super:: from nested files and a pub use re-export
        'super': ({
            'lib.rs': 'pub mod m;\n',
            'm/mod.rs': 'pub mod p;\npub mod q;\n',
            'm/p.rs': 'pub use super::q::Q;\npub struct P;\n',
            'm/q.rs': 'pub struct Q(super::p::P);\n',
        }, ['x: m::p <-> m::q']),
        # layered: comments, strings, tests and parent/child edges are not circles
        'layered': ({
            'lib.rs': 'pub mod low;\npub mod high;\nuse high::H;\n',
            'low.rs': '//! see crate::high\npub struct L;\nconst S: &str = "crate::high::H";\n'
                      'fn f(c: char) -> bool { c == \'"\' }\n'
                      '#[cfg(test)]\nmod tests {\n    use crate::high::H;\n}\n',
            'high/mod.rs': 'pub mod inner;\nuse crate::low::L;\npub struct H(L);\n',
            'high/inner.rs': 'use super::H;\n/* crate::low::{L} */\n',
        }, []),
    }
    failed = 0
    for label, (files, want) in cases.items():
        with tempfile.TemporaryDirectory() as d:
            for path, text in files.items():
                full = os.path.join(d, 'x', 'src', path)
                os.makedirs(os.path.dirname(full), exist_ok=True)
                with open(full, 'w', encoding='utf-8') as fh:
                    fh.write(text)
            got = []
            n = check(d, got.append)
            heads = [g for g in got if not g.startswith(' ')]
            if heads != want or (n > 0) != bool(want):
                failed += 1
                print(f'check-cycles self-test {label}: want {want}, got {got}', file=sys.stderr)
    if failed:
        sys.exit(2)
    print('check-cycles self-test: a circle is reported (exit 1), a layered tree passes')


def main(argv):
    args = [a for a in argv if a != '--self-test']
    if len(args) != len(argv):
        self_test()
    crates_dir = args[0] if args else 'crates'
    sys.exit(1 if check(crates_dir) else 0)


if __name__ == '__main__':
    main(sys.argv[1:])
