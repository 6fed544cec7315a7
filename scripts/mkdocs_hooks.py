"""mkdocs hook: register lazily built click commands so mkdocs-click documents them.

`vczrepo.cli.main` builds some commands (view, query) only when asked for them, to keep
start-up fast; mkdocs-click lists a group's registered `commands` only. Using click's public
API (list_commands/get_command), register every listed command before the docs build.
"""

import click


def on_config(config, **kwargs):
    from vczrepo.cli import main

    ctx = click.Context(main, info_name="vczrepo")
    for name in main.list_commands(ctx):
        if name not in main.commands:
            main.add_command(main.get_command(ctx, name), name)
    return config
