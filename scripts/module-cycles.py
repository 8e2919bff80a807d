#!/usr/bin/env python3
"""Imports between the top-level modules of src/ (`crate::X`, or `spikewatch::X` in the
binary's modules, in non-test code: comments and
`#[cfg(test)]` items cut off), their two-module loops and longer ones. Exits 1 on any loop.
Usage: scripts/module-cycles.py [src]   (README "Map of src/" states the direction.)"""
import os, re, sys, itertools
root = sys.argv[1] if len(sys.argv) > 1 else "src"

def strip_comments(s):
    s = re.sub(r'/\*.*?\*/', '', s, flags=re.S)
    s = re.sub(r'"(?:\\.|[^"\\])*"', '""', s)
    return re.sub(r'//[^\n]*', '', s)

def cut_tests(s, path, excluded):
    out, i = [], 0
    while True:
        m = re.search(r'#\[cfg\(test\)\]', s[i:])
        if not m:
            out.append(s[i:]); break
        a = i + m.start(); out.append(s[i:a]); j = i + m.end()
        # skip the next item: up to ';' or a balanced {...}
        k = j
        while k < len(s) and s[k] not in ';{': k += 1
        if k < len(s) and s[k] == ';':
            mm = re.search(r'mod\s+(\w+)\s*$', s[j:k])
            if mm:
                d = os.path.dirname(path); base = os.path.basename(path)
                if base not in ('mod.rs', 'lib.rs', 'main.rs'):
                    d = os.path.join(d, base[:-3])
                excluded.add(os.path.normpath(os.path.join(d, mm.group(1) + '.rs')))
                excluded.add(os.path.normpath(os.path.join(d, mm.group(1), 'mod.rs')))
            i = k + 1; continue
        depth = 0
        while k < len(s):
            if s[k] == '{': depth += 1
            elif s[k] == '}':
                depth -= 1
                if depth == 0: break
            k += 1
        i = k + 1
    return ''.join(out)

def crate_refs(s):
    # `spikewatch::X`: the binary's own modules (cli/) use the library by its name.
    refs = set(re.findall(r'\b(?:crate|spikewatch)::(\w+)', s))
    # use crate::{a::X, b, ...}
    for m in re.finditer(r'\b(?:crate|spikewatch)::\{', s):
        k, depth, start = m.end() - 1, 0, m.end()
        while k < len(s):
            if s[k] == '{': depth += 1
            elif s[k] == '}':
                depth -= 1
                if depth == 0: break
            k += 1
        inner = s[start:k]
        # top-level items of the group
        depth, cur, items = 0, '', []
        for ch in inner:
            if ch == '{': depth += 1
            elif ch == '}': depth -= 1
            if ch == ',' and depth == 0: items.append(cur); cur = ''
            else: cur += ch
        items.append(cur)
        for it in items:
            mm = re.match(r'\s*(\w+)', it)
            if mm: refs.add(mm.group(1))
    return refs

files = []
for d, _, fs in os.walk(root):
    for f in fs:
        if f.endswith('.rs'): files.append(os.path.normpath(os.path.join(d, f)))
excluded, texts = set(), {}
for p in sorted(files):
    texts[p] = cut_tests(strip_comments(open(p).read()), p, excluded)
mods = {}
for p in files:
    rel = os.path.relpath(p, root).split(os.sep)
    if rel[0] in ('lib.rs', 'main.rs'): continue
    mods[p] = rel[0][:-3] if rel[0].endswith('.rs') else rel[0]
names = set(mods.values())
deps = {m: {} for m in names}
for p, m in mods.items():
    if p in excluded: continue
    for r in crate_refs(texts[p]):
        if r in names and r != m:
            deps[m].setdefault(r, set()).add(os.path.relpath(p, root))
print("Top-level module imports (non-test code):")
for m in sorted(deps):
    print(f"  {m:11} -> {', '.join(sorted(deps[m])) or '-'}")
cyc = [(a, b) for a, b in itertools.combinations(sorted(names), 2) if b in deps[a] and a in deps[b]]
print("\nTwo-module cycles:", "none" if not cyc else "")
for a, b in cyc:
    print(f"  {a} <-> {b}:  {a} via {sorted(deps[a][b])};  {b} via {sorted(deps[b][a])}")
# SCCs (Tarjan)
idx, low, st, on, out, n = {}, {}, [], set(), [], [0]
def sc(v):
    idx[v] = low[v] = n[0]; n[0] += 1; st.append(v); on.add(v)
    for w in deps[v]:
        if w not in idx: sc(w); low[v] = min(low[v], low[w])
        elif w in on: low[v] = min(low[v], idx[w])
    if low[v] == idx[v]:
        c = []
        while True:
            w = st.pop(); on.discard(w); c.append(w)
            if w == v: break
        if len(c) > 1: out.append(sorted(c))
sys.setrecursionlimit(10000)
for v in sorted(names):
    if v not in idx: sc(v)
print("Cycles of any length (strongly connected components):", "none" if not out else "")
for c in out: print("  " + " -> ".join(c))
sys.exit(1 if out else 0)
