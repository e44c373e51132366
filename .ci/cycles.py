#!/usr/bin/env python3
"""Fails when the library's modules import each other in a circle.

Every module file under src/ is a node; a path the file names (`use crate::..`, `use super::..`,
`use self::..`, an inline `crate::x::y` or `child::y`) is an edge to the module that defines the
item, followed through `pub use` re-exports, so a facade does not hide a circle. The same graph is
then folded to top-level rooms (`admission`, `reconciler`, ...), which must not circle either.
Comments and `#[cfg(test)]` items are skipped: a test may reach its module through the front door
(a loader, a parent's builder) without making the library circle.

Besides circles, the checks of the reconciler (CHECKS below) import neither the reconciler nor
each other: what they share lives below them (`pod`, `notice`).

Usage: .ci/cycles.py [--edges] [src-dir]   (exit 0: no circle; exit 1: each circle printed;
--edges lists the graph instead)
"""

import os
import re
import sys

ARGS = [a for a in sys.argv[1:] if not a.startswith("--")]
SRC = ARGS[0] if ARGS else os.path.join(os.path.dirname(__file__), "..", "src")

CHECKS = {"audit", "pullfail", "warm"}
ABOVE_CHECKS = {"reconciler"}

USE = re.compile(r"\b(pub(?:\([^)]*\))?\s+)?use\s+([^;]+);", re.S)
INLINE = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
MOD = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+([a-z_][a-z0-9_]*)\s*;", re.M)


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    return re.sub(r"//[^\n]*", "", text)


def strip_tests(text):
    """Drops every `#[cfg(test)]` item: up to its `;`, or through its braces."""
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]", text):
        if m.start() < i:
            continue
        out.append(text[i : m.start()])
        j, depth = m.end(), 0
        while j < len(text):
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
                if depth == 0:
                    j += 1
                    break
            elif text[j] == ";" and depth == 0:
                j += 1
                break
            j += 1
        i = j
    out.append(text[i:])
    return "".join(out)


def test_only(text):
    """Names of the child modules declared under `#[cfg(test)]`."""
    return re.findall(r"#\[cfg\(test\)\]\s*(?:#\[[^\]]*\]\s*)*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", text)


def module_of(rel):
    parts = rel[:-3].split(os.sep)
    if parts[-1] in ("mod", "lib"):
        parts = parts[:-1]
    return tuple(parts)


def expand(tree):
    """`a::{b, c::{d as e}}` -> [([a, b], b), ([a, c, d], e)]: each path and the name it binds."""
    tree = re.sub(r"\s+as\s+", "@", tree)
    tree = re.sub(r"\s+", "", tree)
    out = []

    def walk(prefix, text):
        depth, start, items = 0, 0, []
        for i, ch in enumerate(text):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == "," and depth == 0:
                items.append(text[start:i])
                start = i + 1
        items.append(text[start:])
        for item in filter(None, items):
            if "{" in item:
                head, rest = item.split("{", 1)
                walk(prefix + [p for p in head.split("::") if p], rest[: rest.rindex("}")])
            else:
                item, _, alias = item.partition("@")
                path = prefix + [p for p in item.split("::") if p]
                out.append((path, alias or (path[-1] if path else "")))

    walk([], tree)
    return out


def absolute(module, path):
    """Makes a path absolute from `module`, or None when it leaves the crate."""
    if not path:
        return None
    head, rest = path[0], path[1:]
    if head == "crate":
        return list(rest)
    if head == "self":
        return list(module) + list(rest)
    if head == "super":
        base = list(module)
        while path and path[0] == "super":
            if not base:
                return None
            base.pop()
            path = path[1:]
        return base + list(path)
    return None


def main():
    files = {}
    for root, _, names in os.walk(SRC):
        for name in names:
            if name.endswith(".rs") and name != "main.rs":
                rel = os.path.relpath(os.path.join(root, name), SRC)
                with open(os.path.join(root, name), encoding="utf-8") as f:
                    files[module_of(rel)] = (rel, strip_comments(f.read()))
    tests = {(*m, c) for m, (_, text) in files.items() for c in test_only(text)}
    files = {m: (rel, "" if m in tests else strip_tests(text)) for m, (rel, text) in files.items()}
    modules = set(files)

    reexports = {}
    for module, (_, text) in files.items():
        for m in USE.finditer(text):
            if not m.group(1):
                continue
            for path, alias in expand(m.group(2)):
                if path and path[-1] == "self":
                    path, alias = path[:-1], (alias if alias != "self" else path[-2])
                if path and path[-1] != "*":
                    target = absolute(module, path) or (
                        list(module) + path if (*module, path[0]) in modules else None
                    )
                    if target:
                        reexports.setdefault(module, {})[alias] = target

    def resolve(path, seen=0):
        node, i = (), 0
        while i < len(path) and (*node, path[i]) in modules:
            node += (path[i],)
            i += 1
        if i < len(path) and seen < 16:
            target = reexports.get(node, {}).get(path[i])
            if target and target != list(node) + [path[i]]:
                return resolve(target + path[i + 1 :], seen + 1)
        return node

    edges = {m: {} for m in modules}
    for module, (rel, text) in files.items():
        children = {c for c in MOD.findall(text) if (*module, c) in modules}
        paths = []
        for m in USE.finditer(text):
            if m.group(1):
                continue
            for path, _ in expand(m.group(2)):
                if path and path[-1] == "self":
                    path = path[:-1]
                if path and path[0] in children:
                    path = ["self"] + path
                paths.append(path)
        body = USE.sub("", text)
        paths += [[m.group(1)] + m.group(2).split("::")[1:] for m in INLINE.finditer(body)]
        for child in children:
            paths += [["self", child]] if re.search(r"(?<![:\w])" + child + r"::", body) else []
        for path in paths:
            target = absolute(module, path)
            if target is None:
                continue
            node = resolve(target)
            if node and node != module:
                edges[module].setdefault(node, rel)

    def cycles(graph):
        index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

        def strong(v):
            index[v] = low[v] = counter[0]
            counter[0] += 1
            stack.append(v)
            on.add(v)
            for w in sorted(graph.get(v, ())):
                if w not in index:
                    strong(w)
                    low[v] = min(low[v], low[w])
                elif w in on:
                    low[v] = min(low[v], index[w])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))

        sys.setrecursionlimit(10000)
        for v in sorted(graph):
            if v not in index:
                strong(v)
        circles = []
        for comp in found:
            covered = set()
            for start in comp:
                if start not in covered:
                    circle = shortest_circle(graph, comp, start)
                    covered.update(circle)
                    circles.append((comp, circle))
        return circles

    def shortest_circle(graph, comp, start):
        members = set(comp)
        prev, queue = {start: None}, [start]
        for v in queue:
            for w in sorted(graph.get(v, ())):
                if w == start:
                    path = [v]
                    while prev[path[-1]] is not None:
                        path.append(prev[path[-1]])
                    return path[::-1] + [start]
                if w in members and w not in prev:
                    prev[w] = v
                    queue.append(w)
        return comp + [start]

    name = lambda m: "::".join(m) or "crate"
    if "--edges" in sys.argv:
        for a in sorted(edges):
            for b in sorted(edges[a]):
                print(f"{name(a)} -> {name(b)}")
        return 0
    failed = False
    for comp, circle in cycles(edges):
        failed = True
        print("module circle: " + " -> ".join(name(m) for m in circle))
        for a, b in zip(circle, circle[1:]):
            print(f"    {files[a][0]} uses {name(b)}")

    rooms = {}
    for a, targets in edges.items():
        for b, rel in targets.items():
            if a[:1] != b[:1] and a and b:
                rooms.setdefault(a[:1], {}).setdefault(b[:1], rel)
    for comp, circle in cycles(rooms):
        failed = True
        print("room circle: " + " -> ".join(name(m) for m in circle))
        for a, b in zip(circle, circle[1:]):
            print(f"    {rooms[a][b]} uses {name(b)}")

    for a, targets in sorted(rooms.items()):
        for b, rel in sorted(targets.items()):
            if a[0] in CHECKS and (b[0] in ABOVE_CHECKS or b[0] in CHECKS):
                failed = True
                print(f"check {name(a)} imports {name(b)}: {rel}")

    if failed:
        print("move the shared piece to a module below both")
        return 1
    print(f"no import circles among {len(modules)} modules; the checks import neither the reconciler nor each other")
    return 0


if __name__ == "__main__":
    sys.exit(main())
