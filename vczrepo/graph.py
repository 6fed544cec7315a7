"""History as git draws it: commits in topological order, and the lanes of `log --graph`.

icechunk snapshots have one parent each, so a repository's history is a tree (branches
fork, never merge). `topological` lists every line of history as one block, children
before parents, the block holding the newest commit first (git's --topo-order: lines are
never interleaved). In that order the lanes that wait for the same parent are always
neighbours, so `draw` closes a finished line with one `|/` row, as git does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .journal import Commit


def topological(commits: Sequence[Commit]) -> list[Commit]:
    """Children before parents; each fork's lines one after the other, the line whose
    newest commit is newest first (ties by id, so the order is deterministic)."""
    by_id = {c.id: c for c in commits}
    children: dict[str, list[Commit]] = {}
    roots = []
    for c in by_id.values():
        if c.parent in by_id:
            children.setdefault(c.parent, []).append(c)
        else:
            roots.append(c)
    newest = {c.id: (c.written_at, c.id) for c in by_id.values()}  # newest commit of each subtree
    for c in _post_order(roots, children, key=None):
        for child in children.get(c.id, ()):
            newest[c.id] = max(newest[c.id], newest[child.id])
    return _post_order(roots, children, key=lambda c: newest[c.id])


def _post_order(roots: list[Commit], children: dict[str, list[Commit]], key: Callable | None) -> list[Commit]:
    """Every subtree before its root; with `key`, siblings in descending key order. Iterative:
    a history of thousands of commits is a chain thousands deep."""
    def ordered(nodes: list[Commit]) -> list[Commit]:
        return sorted(nodes, key=key, reverse=True) if key else nodes

    out: list[Commit] = []
    stack = [(c, False) for c in reversed(ordered(roots))]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            out.append(node)
            continue
        stack.append((node, True))
        stack.extend((c, False) for c in reversed(ordered(children.get(node.id, []))))
    return out


def _bars(lanes: int, mark: int | None = None) -> str:
    return " ".join("*" if i == mark else "|" for i in range(lanes))


def draw(commits: Sequence[Commit], text: Callable[[Commit], list[str]]) -> list[str]:
    """The lines of `log --graph` for commits in `topological` order: each commit's text
    (its first line beside a `*` in its lane, the others beside the lanes' `|`), and a `|/`
    row where a line of history joins the one it forked from."""
    shown = {c.id for c in commits}
    lanes: list[str] = []  # the commit each lane waits for
    out = []
    for c in commits:
        col = lanes.index(c.id) if c.id in lanes else len(lanes)
        if col == len(lanes):  # the tip of a line: a new lane on the right
            lanes.append(c.id)
        width = 2 * len(lanes)
        first, *rest = text(c)
        out.append(f"{_bars(len(lanes), col):<{width}}{first}")
        if c.parent in shown:
            lanes[col] = c.parent
        else:  # the root (or the oldest commit shown): its lane ends
            del lanes[col]
        out.extend(f"{_bars(len(lanes)):<{width}}{line}".rstrip() for line in rest)
        if c.parent in shown and lanes.index(c.parent) < col:  # the lane it forked from is its left neighbour
            out.append(_bars(col) + "/")
            del lanes[col]
    return out
