"""The docs' figures, drawn with matplotlib when the site is built (scripts/mkdocs_hooks.py).

- `performance_chart`: op times per operation of vczrepo, the peer (vczstore) and the
  baselines measured in the same run (icechunk alone storing the batch, vcztools on a plain
  checkout), from the JSON of `scripts/bench.py --json`.
- `history_diagram`: commits, branches and tags of a repository like the tutorial's before
  and after `purge`, for docs/concepts.md.

Both are SVG with text kept as text (the page's fonts draw it: nothing to find on the
build machine) and no date or random ids in them, so a build gives the same bytes each time.

    uv run python scripts/figures.py BENCH.json OUT_DIR   # writes both, to look at them
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

STYLE = {"svg.fonttype": "none", "svg.hashsalt": "vczrepo", "font.size": 10, "font.family": "sans-serif"}
COLOURS = {"vczrepo": "#1f6feb", "vczstore": "#d97706", "baseline": "#6b7280"}
# (our run, the peer's, the same-run baseline or None, label): what the chart compares
OPERATIONS = [
    ("init", "peer_init", None, "init from a batch"),
    ("append_aligned", "peer_append_aligned", "icechunk_floor", "append, aligned"),
    ("append_small_at_N", "peer_append_small_at_N", None, "append a small batch"),
    ("append_small_at_2N", "peer_append_small_at_2N", None, "the same, store twice as large"),
    ("append_unaligned", "peer_append_unaligned", None, "append into an unaligned store"),
    ("remove_1_at_N", "peer_remove_1_at_N", None, "remove 1 sample"),
    ("remove_1_at_L", "peer_remove_1_at_L", None, "the same, larger store"),
    ("view_vczrepo", "view_peer", "view_vcztools", "view at a tag"),
    ("view_region_vczrepo", "view_region_peer", "view_region_vcztools", "view -r (3 chunks)"),
    ("query_vczrepo", "query_peer", "query_vcztools", "query GT, 10 samples"),
    ("dataset_vczrepo", "dataset_peer", "dataset_vcztools", "open_dataset + compute"),
]
BASELINE_NAMES = {"icechunk_floor": "icechunk alone storing the batch's objects"}


def _svg(fig) -> str:
    out = io.StringIO()
    fig.savefig(out, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    return out.getvalue()


def performance_chart(results: dict) -> str:
    """Horizontal bars of op seconds (log scale) per operation: vczrepo, vczstore and the
    same-run baseline where the run has one. Operations the run did not measure are left out."""
    runs = results["runs"]
    rows = [(ours, theirs, base, label) for ours, theirs, base, label in OPERATIONS if ours in runs]
    if not rows:
        raise ValueError("the benchmark results hold none of the charted operations")
    baseline_label = "vcztools on a plain checkout (reads) / icechunk alone (aligned append)"
    series = [("vczrepo", 0, COLOURS["vczrepo"]), ("vczstore (the peer)", 1, COLOURS["vczstore"]),
              (baseline_label, 2, COLOURS["baseline"])]
    height = 0.26
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(8, 0.55 * len(rows) + 1.4))
        for name, k, colour in series:
            ys, xs = [], []
            for i, row in enumerate(rows):
                key = row[k]
                if key is not None and key in runs:
                    ys.append(i + (k - 1) * height)
                    xs.append(max(runs[key]["op"], 1e-3))
            ax.barh(ys, xs, height=height, color=colour, label=name)
        ax.set_yticks(range(len(rows)), [label for *_, label in rows])
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("seconds of work (start-up and imports excluded; log scale)")
        spec = results["spec"]
        ax.set_title(f"size {results['size']}: batches of {spec['samples_per_batch']:,} samples × "
                     f"{spec['n_variants']:,} variants, vczrepo {results['vczrepo_revision']}", fontsize=10)
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(axis="x", which="major", alpha=0.3)
        ax.legend(loc="upper center", bbox_to_anchor=(0.4, -0.09), fontsize=8, ncol=2, frameon=False)
        return _svg(fig)


# The tutorial's history: a label per commit, STEP apart; purge rewrites every commit holding NA00002.
OLD_CHAIN = ["init\nNA00001, NA00002", "append\n+NA00003", "remove\n−NA00002"]
STEP = 1.8
GREY, DARK = "#9ca3af", "#374151"


def history_diagram() -> str:
    """Two panels on one scale: a repository like the tutorial's before purge (main, a trial
    branch and two tags on one chain) and after it (every ref on the rewritten chain; the old
    chain waits for gc)."""
    with plt.rc_context(STYLE):
        fig, (before, after) = plt.subplots(2, 1, figsize=(8.5, 6.2), gridspec_kw={"height_ratios": [2.9, 4.3]})
        _before(before)
        _after(after)
        for ax, top in ((before, 1.9), (after, 1.9)):
            ax.set_xlim(-0.7, 9.4)
            ax.set_ylim(top - (2.9 if ax is before else 4.3), top)
            ax.set_aspect("equal")
            ax.axis("off")
        before.set_title("before purge: `remove` hid NA00002 from main onwards; release-1 still holds it",
                         fontsize=9, loc="left")
        after.set_title("after `purge NA00002`: the commits holding it rewritten, every ref moved to the new chain",
                        fontsize=9, loc="left")
        fig.tight_layout()
        return _svg(fig)


def _commit(ax, x: float, y: float, text: str, colour: str, faded: bool = False) -> None:
    ax.add_patch(plt.Circle((x, y), 0.22, color=colour, alpha=0.4 if faded else 1.0, zorder=3))
    ax.text(x, y - 0.32, text, ha="center", va="top", fontsize=8, color=GREY if faded else "black")


def _link(ax, a: tuple[float, float], b: tuple[float, float], faded: bool = False, dashed: bool = False) -> None:
    ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=10, shrinkA=10, shrinkB=10,
                                 color=GREY if faded else DARK, linestyle="--" if dashed else "-", zorder=2))


def _refs(ax, x: float, y: float, names: list[tuple[str, str]]) -> None:
    """Branches (filled: they move) and tags (outlined: they never move) stacked above a commit."""
    styles = {"branch": ("#dbeafe", COLOURS["vczrepo"]), "tag": ("white", COLOURS["vczstore"]),
              "trial": ("#dcfce7", "#16a34a")}
    for k, (text, kind) in enumerate(names):
        fc, ec = styles[kind]
        ax.text(x, y + 0.45 + 0.42 * k, text, ha="center", va="bottom", fontsize=8,
                bbox={"boxstyle": "round,pad=0.2", "fc": fc, "ec": ec})
    ax.plot([x, x], [y + 0.22, y + 0.45], color=GREY, linewidth=0.8, zorder=1)


def _root(ax, x: float, y: float) -> None:
    _commit(ax, x, y, "root\n(empty)", DARK)


def _before(ax) -> None:
    _root(ax, 0, 0)
    previous = (0.0, 0.0)
    for i, label in enumerate(OLD_CHAIN, start=1):
        _commit(ax, i * STEP, 0, label, COLOURS["vczrepo"])
        _link(ax, previous, (i * STEP, 0))
        previous = (i * STEP, 0)
    trial = 4 * STEP
    _commit(ax, trial, 0, "remove\n−NA00003", "#16a34a")
    _link(ax, previous, (trial, 0))
    _refs(ax, 2 * STEP, 0, [("tag release-1", "tag")])
    _refs(ax, 3 * STEP, 0, [("main", "branch"), ("tag release-2", "tag")])
    _refs(ax, trial, 0, [("trial", "trial")])


def _after(ax) -> None:
    y_new, y_old, y_root = 0.0, -1.9, -0.95
    _root(ax, 0, y_root)
    new_previous, old_previous = (0.0, y_root), (0.0, y_root)
    for i, label in enumerate(OLD_CHAIN, start=1):
        x = i * STEP
        _commit(ax, x, y_old, label, GREY, faded=True)
        _link(ax, old_previous, (x, y_old), faded=True)
        rewritten = label.replace("NA00001, NA00002", "NA00001").replace("NA00002", "[purged]")
        _commit(ax, x, y_new, rewritten.replace("\n", "′\n", 1), COLOURS["vczrepo"])
        _link(ax, new_previous, (x, y_new))
        _link(ax, (x, y_old + 0.22), (x, y_new - 0.75), faded=True, dashed=True)
        new_previous, old_previous = (x, y_new), (x, y_old)
    trial = 4 * STEP
    _commit(ax, trial, y_old, "remove\n−NA00003", GREY, faded=True)
    _link(ax, old_previous, (trial, y_old), faded=True)
    _commit(ax, trial, y_new, "remove′\n−NA00003", "#16a34a")
    _link(ax, new_previous, (trial, y_new))
    _link(ax, (trial, y_old + 0.22), (trial, y_new - 0.75), faded=True, dashed=True)
    ax.text(STEP - 0.3, (y_old + y_new) / 2 - 0.35, "rewritten as", fontsize=7, color=GREY, rotation=90,
            va="center")
    _refs(ax, 2 * STEP, y_new, [("tag release-1.purged1", "tag")])
    _refs(ax, 3 * STEP, y_new, [("main", "branch"), ("tag release-2.purged1", "tag")])
    _refs(ax, trial, y_new, [("trial", "trial")])
    ax.text(trial + 0.4, y_old - 0.05, "unreachable:\n`gc --now` deletes\nthem, then `audit`\nfinds no NA00002",
            fontsize=8, color="#6b7280", va="center")
    ax.text(0.2, y_new + 1.2, "the old tag names resolve\nto the .purged1 tags", fontsize=8, color="#6b7280")


def main(argv: list[str]) -> None:
    bench, out = Path(argv[0]), Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    (out / "performance.svg").write_text(performance_chart(json.loads(bench.read_text())))
    (out / "history.svg").write_text(history_diagram())


if __name__ == "__main__":
    main(sys.argv[1:])
