"""mkdocs hooks: document lazily built click commands, and draw the docs' figures.

`vczrepo.cli.main` builds some commands (view, query) only when asked for them, to keep
start-up fast; mkdocs-click lists a group's registered `commands` only. Using click's public
API (list_commands/get_command), register every listed command before the docs build.

The figures (scripts/figures.py) are drawn at every build, from the benchmark results the
performance page quotes (docs/data/bench-small.json, written by `scripts/bench.py --json`),
and added to the site as generated files: nothing drawn is committed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from mkdocs.structure.files import File

SCRIPTS = Path(__file__).resolve().parent
BENCH_RESULTS = "data/bench-small.json"  # inside docs_dir


def on_config(config, **kwargs):
    from vczrepo.cli import main

    ctx = click.Context(main, info_name="vczrepo")
    for name in main.list_commands(ctx):
        if name not in main.commands:
            main.add_command(main.get_command(ctx, name), name)
    return config


def on_files(files, config, **kwargs):
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    import figures

    results = json.loads((Path(config["docs_dir"]) / BENCH_RESULTS).read_text())
    for name, svg in (("img/performance.svg", figures.performance_chart(results)),
                      ("img/history.svg", figures.history_diagram())):
        files.append(File.generated(config, name, content=svg))
    return files
