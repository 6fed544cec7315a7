"""The `vczrepo` command: parse arguments, call one `Repository` method, print the result.

Conventions: `-b/--branch` is the branch a command commits to or moves; `--at REF` is the
ref a command reads (or points a new ref at); every command takes `--json`. Errors are
one line on stderr (`vczrepo: error: …`) with the exit code of the error's family.
Importing this module is cheap: the library (icechunk, zarr, vcztools) is imported only
by the command that runs.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import click

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # as a shell reports a process stopped by SIGPIPE
AUDIT_FOUND = 9  # `audit` found an id somewhere in storage


# The `kind` of an error's JSON form, by exit code (docs/semantics.md#exit-codes).
ERROR_KINDS = {1: "storage", 2: "usage", 3: "repository", 4: "source", 5: "incompatible-batch", 6: "sample",
               7: "concurrent-update", 8: "integrity", EXIT_INTERRUPTED: "interrupted"}


def _fail(message: str, code: int, as_json: bool = False) -> None:
    """One line on stderr and exit `code`: `vczrepo: error: …`, or under --json
    `{"error": {"exit_code": …, "kind": …, "message": …}}`."""
    one_line = " ".join(part.strip() for part in message.splitlines() if part.strip())
    if as_json:
        error = {"exit_code": code, "kind": ERROR_KINDS.get(code, "error"), "message": one_line}
        click.echo(json.dumps({"error": error}, sort_keys=True), err=True)
    else:
        click.echo(f"vczrepo: error: {one_line}", err=True)
    sys.exit(code)


def _parse_options(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--storage-option")
        out[key] = value
    return out


def _emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


class State:
    """What the global options say, for the commands to open repositories with."""

    def __init__(self, progress: bool | None, compression_level: int, author: str | None = None):
        self.progress = progress
        self.compression_level = compression_level
        self.author = author

    def settings(self, workers: int = 1, scheduler: str | None = None, widen: bool = True) -> Any:
        from .settings import Settings

        return Settings(compression_level=self.compression_level, progress=self.progress, workers=workers,
                        scheduler=scheduler, widen=widen)

    def open(self, repo: str, storage_options: tuple[str, ...], **settings: Any) -> Any:
        from .repository import Repository

        return Repository.open(repo, _parse_options(storage_options), settings=self.settings(**settings),
                               author=self.author)


pass_state = click.make_pass_decorator(State)


def _complete_refs(ctx: click.Context, param: click.Parameter, incomplete: str) -> list:
    """Shell completion of ref arguments: the repository's branches and tags."""
    from click.shell_completion import CompletionItem

    path = ctx.params.get("repo")
    if path is None:  # click stops parsing at an option still waiting for its value: read the line
        import shlex

        words = shlex.split(os.environ.get("COMP_WORDS", ""))
        after = words[words.index(ctx.info_name) + 1:] if ctx.info_name in words else []
        path = next((w for w in after if not w.startswith("-")), None)
    if path is None:
        return []
    os.environ.setdefault("ICECHUNK_LOG", "error")  # (the group callback, which sets it, does not run)
    try:
        from .repository import Repository

        repo = Repository.open(path)
        names = sorted(set(repo.branches()) | set(repo.tags()))
    except Exception:  # noqa: BLE001 - completion must never fail the shell
        return []
    return [CompletionItem(n) for n in names if n.startswith(incomplete)]


def _options(*decorators: Callable) -> Callable:
    def apply(f: Callable) -> Callable:
        for d in reversed(decorators):
            f = d(f)
        return f

    return apply


storage_option = click.option(
    "--storage-option", "storage_options", multiple=True, metavar="KEY=VALUE",
    help="Object storage option (e.g. endpoint_url=…, allow_http=true, region=…); see the storage docs.",
)
branch_option = click.option("-b", "--branch", default="main", show_default=True, metavar="BRANCH",
                             help="Branch to commit to (or move).", shell_complete=_complete_refs)
message_option = click.option("-m", "--message", help="Commit message.")
sample_options = _options(
    click.argument("samples", nargs=-1),
    click.option("-S", "--samples-file", type=click.File("r", encoding="utf-8"), metavar="FILE",
                 help="Also the sample ids in FILE, one per line (- for stdin), as bcftools -S."),
)
at_option = click.option("--at", "at", default="main", show_default=True, metavar="REF",
                         help="Branch, tag, snapshot id (or unique prefix), optionally ~N.",
                         shell_complete=_complete_refs)
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
drop_stale_option = click.option(
    "--drop-stale-info", is_flag=True,
    help="Drop the INFO fields that cannot follow the sample set (site DP, QUAL-like scores; `info` lists them).")
widen_option = click.option(
    "--widen/--no-widen", default=True,
    help="Rewrite a repository array in a wider type or shape when the batch's values or rows do not fit it "
         "(default); --no-widen refuses such a batch instead, so the write only adds bytes.")
chunk_options = _options(
    click.option("--variants-chunk-size", type=click.IntRange(1),
                 help="For VCF input: variants per chunk (default: the repository's)."),
    click.option("--samples-chunk-size", type=click.IntRange(1),
                 help="For VCF input: samples per chunk (default: the repository's)."),
)
distributed_options = _options(
    click.option("--workers", type=click.IntRange(1), default=1, show_default=True,
                 help="Spread the chunk work (and a VCF conversion) over N processes (dask.distributed)."),
    click.option("--scheduler", metavar="ADDRESS", help="Use an existing dask cluster instead of a LocalCluster."),
)


def _sample_names(samples: tuple[str, ...], samples_file: Any) -> list[str]:
    """SAMPLES and the ids of a -S file (one per line; blank lines skipped, as vcztools reads -S)."""
    names = [*samples, *(line.strip() for line in (samples_file or ()) if line.strip())]
    if not names:
        raise click.UsageError("give the SAMPLES, or a samples file with -S FILE")
    return names


def _print_commit(result: Any, as_json: bool) -> None:
    from .journal import sample_change

    if as_json:
        _emit_json(result.to_json())
        return
    m = result.metadata
    total = m.get("n_samples")
    detail = f" ({sample_change(m) or 'no change in'} samples, {total} in total)" if total is not None else ""
    for key, verb in (("n_variants_added", "added"), ("n_variants_removed", "removed")):
        if key in m:
            detail = f" ({m[key]} variants {verb}, {m['n_variants']} in total)"
    click.echo(f"{result.snapshot_id} {result.branch}: {m['op']}{detail}")
    for w in m.get("widened", []):
        click.echo(f"widened {w['name']} {w['old_dtype']} -> {w['new_dtype']}, shape {w['old_shape']} -> "
                   f"{w['new_shape']}: {w['chunks']} chunk(s) rewritten ({w['bytes_written']} bytes)")


class Cli(click.Group):
    """The command group: usage errors and library errors become one line and an exit code;
    view/query (vcztools' own options) are built only when they run."""

    lazy = {"view": "`vcztools view` of REPO at a ref; options as in vcztools view.",
            "query": "`vcztools query` of REPO at a ref; options as in vcztools query."}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    listing = False  # formatting the command list: lazy commands need only their short help

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            if self.listing or ctx.resilient_parsing:  # no vcztools import to list or complete commands
                return click.Command(name, help=self.lazy[name], short_help=self.lazy[name])
            return _vcztools_command(name, self.lazy[name])
        return super().get_command(ctx, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self.listing = True
        try:
            super().format_commands(ctx, formatter)
        finally:
            self.listing = False

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        words = list(sys.argv[1:] if args is None else args)
        as_json = "--json" in words[:words.index("--") if "--" in words else None]  # errors' form, even in parsing
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        except click.exceptions.NoArgsIsHelpError as e:  # `vczrepo` alone: its help on stderr, exit 2 (as click)
            click.echo(e.format_message(), err=True)
            sys.exit(EXIT_USAGE)
        except click.UsageError as e:
            sub = e.ctx.command_path.partition(" ")[2] if e.ctx is not None else ""
            hint = f" (see 'vczrepo {sub + ' ' if sub else ''}--help')"
            _fail(e.format_message() + hint, EXIT_USAGE, as_json)
        except click.ClickException as e:
            _fail(e.format_message(), e.exit_code, as_json)
        except click.Abort as e:  # click's name for a KeyboardInterrupt
            _handle(e.__cause__ if isinstance(e.__cause__, KeyboardInterrupt) else KeyboardInterrupt(), as_json)
        except SystemExit:
            from .internals import click_saw_broken_pipe

            if click_saw_broken_pipe():  # the reader stopped early (`vczrepo samples R | head`)
                _exit(EXIT_BROKEN_PIPE)
            raise
        except BaseException as e:  # noqa: BLE001 - mapped below, re-raised if unknown
            _handle(e, as_json)
        sys.exit(code if isinstance(code, int) else 0)


def _exit(code: int) -> NoReturn:
    """Flush the output, run the exit handlers (multiprocessing's clean-up of semaphores,
    logging's flush, vczrepo.shutdown's wait for icechunk's threads) and end the process
    without the rest of the interpreter's shutdown: every commit, lock, temporary directory
    and dask cluster is closed by then (context managers), and what remains, finalizing
    modules beside the threads of icechunk's and zarr's runtimes, is where a command that
    had done all its work could still crash (vczrepo.shutdown says how)."""
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        code = EXIT_BROKEN_PIPE
    with contextlib.suppress(OSError):
        sys.stderr.flush()
    os._exit(code)


def run(args: list[str] | None = None) -> NoReturn:
    """The `vczrepo` program (`python -m vczrepo`; `args`: sys.argv[1:]): the click group,
    then `_exit`. The group itself (`main`) raises SystemExit as click does, for CliRunner
    and other callers."""
    try:
        main(args, prog_name="vczrepo")
    except SystemExit as e:  # Cli.main ends every run with an int code
        _exit(e.code if isinstance(e.code, int) else int(e.code is not None))
    _exit(0)


def _handle(error: BaseException, as_json: bool = False) -> None:
    """One line and the exit code for the errors the library raises; anything else is a bug.
    Notes on an error (e.g. "purge stopped after step 3 of 9: recorded; …") follow its message."""
    from .errors import Interrupted, VczRepoError

    notes = "".join(f"; {note}" for note in getattr(error, "__notes__", ()))
    if isinstance(error, VczRepoError):
        _fail(str(error) + notes, error.exit_code, as_json)
    if isinstance(error, KeyboardInterrupt):  # Interrupted says what stands; a plain one: nothing was written
        if "zarr.core.sync" in sys.modules:
            from .internals import end_interrupted_io

            end_interrupted_io()
        _fail(str(error) if isinstance(error, Interrupted) else "interrupted; nothing was committed",
              EXIT_INTERRUPTED, as_json)
    if isinstance(error, BrokenPipeError):  # the reader stopped early: nothing left to write
        _exit(EXIT_BROKEN_PIPE)
    if isinstance(error, OSError):
        where = f" ({error.filename})" if error.filename else ""
        _fail(f"{error.strerror or type(error).__name__}{where}{notes}", 1, as_json)
    if "icechunk" in sys.modules:
        import icechunk

        from .errors import from_icechunk

        if isinstance(error, icechunk.IcechunkError):
            mapped = from_icechunk(error, "storage")
            _fail(str(mapped) + notes, mapped.exit_code, as_json)
    raise error


def _vcztools_command(name: str, doc: str) -> click.Command:
    """`vczrepo view|query REPO --at REF [vcztools options]`: vcztools' own options, at any ref."""
    from .internals import click_params
    from .read import vcztools_command, vcztools_options

    @click.pass_obj
    def callback(state: State, repo: str, at: str, storage_options: tuple[str, ...], as_json: bool,
                 **options: Any) -> None:
        r = state.open(repo, storage_options)
        sid = r.resolve(at)  # read once: the snapshot a --json summary names is the one read
        if as_json and options.get("list_samples"):  # query -l --json: the samples as one JSON list
            _emit_json(r.samples(sid))
            return
        getattr(r, name)(sid, **options)
        out = options.get("output", "-")
        out = getattr(out, "name", out)  # query's output is vcztools' click.File
        if as_json and out not in ("-", "<stdout>"):  # to stdout the data is the output
            summary = {"out": out, "ref": at, "snapshot": sid}
            if name == "view":
                from .read import bgzf_level

                summary["output_type"] = "v" if bgzf_level(options.get("output_type"), out) is None else "z"
            _emit_json(summary)

    params = [click.Argument(["repo"]), *click_params(at_option), *click_params(storage_option),
              *vcztools_options(vcztools_command(name)), *click_params(json_option)]
    if name == "view":  # vcztools writes plain VCF only; vczrepo also writes BGZF (-O z, .gz, .bgz)
        params = [click.Option(["-o", "--output"], default="-", show_default=True,
                               type=click.Path(dir_okay=False, allow_dash=True),
                               help="Output file; a name ending in .gz or .bgz is written as BGZF (bgzip).")
                  if p.name == "output" else p for p in params]
        params.insert(params.index(next(p for p in params if p.name == "output")) + 1, click.Option(
            ["-O", "--output-type"], metavar="v|z[0-9]",
            help="As bcftools: v plain VCF, z BGZF-compressed VCF (z0-z9: its level); default from the -o name. "
                 "BCF (b, u) is not written: pipe into `bcftools view -O b`."))
    return click.Command(name, callback=callback, params=params, help=doc, short_help=doc)


@click.group(cls=Cli, context_settings={"help_option_names": ["-h", "--help"]})  # every command: -h (but view's)
@click.option("-v", "--verbose", count=True, help="Show icechunk's and bio2zarr's logs (-v warnings, -vv info).")
@click.option("--no-progress", is_flag=True, help="No progress bars (they only show on a terminal anyway).")
@click.option("--compression-level", type=click.IntRange(0, 9), default=1, show_default=True,
              help="Blosc level of the chunks vczrepo re-encodes (remove, unaligned append, padding); "
                   "chunks copied as bytes keep theirs.")
@click.option("--author", envvar="VCZREPO_AUTHOR", metavar="NAME",
              help="Who the commits are by, e.g. 'Ana <ana@example.org>' (default: $VCZREPO_AUTHOR, else "
                   "user@host); `log` shows it.")
@click.version_option(package_name="vczrepo")
@click.pass_context
def main(ctx: click.Context, verbose: int, no_progress: bool, compression_level: int, author: str | None) -> None:
    """Versioned VCF Zarr repositories: append and remove samples as commits, tag, branch, read any ref."""
    import logging

    os.environ.setdefault("ICECHUNK_LOG", {0: "error", 1: "warn", 2: "info"}.get(verbose, "debug"))
    if not sys.stderr.isatty():  # icechunk's log lines (-v) without ANSI colour (read when it is imported)
        os.environ.setdefault("NO_COLOR", "1")
    logging.basicConfig(level={0: logging.ERROR, 1: logging.WARNING}.get(verbose, logging.INFO),
                        format="%(name)s: %(message)s")
    logging.getLogger("vczrepo").setLevel(logging.INFO if verbose else logging.WARNING)
    if "icechunk" in sys.modules:  # already imported (tests): apply the filter now
        import icechunk

        icechunk.set_logs_filter(os.environ["ICECHUNK_LOG"])
    ctx.obj = State(False if no_progress else None, compression_level, author)


@main.command()
@click.argument("repo")
@click.argument("sources", nargs=-1, required=True, type=click.Path())
@click.option("--variants-from", is_flag=True,
              help="SOURCES are VCZs whose sorted variant union the repository holds, with no samples.")
@message_option
@chunk_options
@storage_option
@json_option
@pass_state
def init(state: State, repo, sources, variants_from, message, variants_chunk_size, samples_chunk_size,
         storage_options, as_json):
    """Create REPO whose first commit holds SOURCE (a VCZ, or a VCF/BCF converted with bio2zarr)."""
    from .repository import Repository

    if not variants_from and len(sources) != 1:
        raise click.UsageError("init takes one SOURCE (or several with --variants-from)")
    _, result = Repository.init(
        repo, None if variants_from else sources[0], variants_from=sources if variants_from else (),
        message=message, storage_options=_parse_options(storage_options), settings=state.settings(),
        variants_chunk_size=variants_chunk_size, samples_chunk_size=samples_chunk_size, author=state.author,
    )
    _print_commit(result, as_json)
    if variants_from and not as_json:
        click.echo(f"{result.metadata['n_variants']} variants from {len(sources)} VCZs")


@main.command()
@click.argument("repo")
@click.argument("source", type=click.Path())
@branch_option
@message_option
@chunk_options
@click.option("--fill-missing-fields", is_flag=True,
              help="Accept call fields on one side only (missing values fill the gaps) and ignore "
                   "per-variant fields the repository lacks.")
@click.option("--align/--no-align", default=None,
              help="Pad with null samples to a sample-chunk boundary first, so the batch's chunks copy as "
                   "bytes. Default: only when that turns a recompose into a byte copy and the padding is "
                   "smaller than the batch; --no-align keeps samples contiguous.")
@click.option("--normalise", is_flag=True,
              help="Map a batch with another variant set onto the repository's variants first.")
@click.option("--allow-new-alleles", is_flag=True,
              help="With --normalise: add the batch's new ALT alleles at existing sites.")
@click.option("--grow-variants", is_flag=True,
              help="Insert the batch's sites the repository lacks (missing for the samples already there), "
                   "then append it normalised onto the grown variants. Rewrites every chunk from the first "
                   "inserted site on: see --dry-run.")
@click.option("--dry-run", is_flag=True,
              help="Say what it would do (columns, padding, arrays widened, sites inserted, chunks rewritten), "
                   "change nothing.")
@widen_option
@drop_stale_option
@distributed_options
@storage_option
@json_option
@pass_state
def append(state: State, repo, source, branch, message, variants_chunk_size, samples_chunk_size,
           fill_missing_fields, align, normalise, allow_new_alleles, grow_variants, dry_run, widen, drop_stale_info,
           workers, scheduler, storage_options, as_json):
    """Add the samples of SOURCE (VCZ or VCF/BCF) to REPO as one commit."""
    repository = state.open(repo, storage_options, workers=workers, scheduler=scheduler, widen=widen)
    if dry_run:
        plan = repository.plan_append(
            source, branch=branch, variants_chunk_size=variants_chunk_size, samples_chunk_size=samples_chunk_size,
            fill_missing_fields=fill_missing_fields, align=align, normalise=normalise,
            allow_new_alleles=allow_new_alleles, grow_variants=grow_variants)
        if as_json:
            _emit_json(plan.to_json())
        else:
            _print_append_plan(plan)
        return
    result = repository.append(
        source, branch=branch, message=message,
        variants_chunk_size=variants_chunk_size, samples_chunk_size=samples_chunk_size,
        fill_missing_fields=fill_missing_fields, align=align, normalise=normalise,
        allow_new_alleles=allow_new_alleles, drop_stale_info=drop_stale_info, grow_variants=grow_variants,
    )
    _print_commit(result, as_json)


def _print_append_plan(plan: Any) -> None:
    start, stop = plan.sample_range
    padding = f" after {plan.n_padding} null column(s)" if plan.n_padding else ""
    click.echo(f"would add {plan.n_samples_added} sample(s) at columns {start}..{stop - 1}{padding}"
               f"{' (normalised onto the repository variants)' if plan.normalised else ''}")
    if plan.fields_added:
        click.echo(f"would add field(s) {', '.join(plan.fields_added)}")
    grown = plan.variants_grown
    if grown is not None and grown.n_variants_inserted:
        added = f", {len(grown.contigs_added)} new contig(s)" if grown.contigs_added else ""
        click.echo(f"would insert {grown.n_variants_inserted} site(s) among {grown.n_variants} variants{added}, "
                   f"the first at {grown.first_inserted}, and rewrite {grown.chunks} chunk(s) in {grown.arrays} "
                   f"arrays ({grown.stored_bytes} bytes stored)")
    elif grown is not None:
        click.echo("no new sites: nothing to grow")
    for w in [*plan.widened, *plan.summaries_widened]:
        click.echo(f"would widen {w.describe()}: rewrite {w.chunks} chunk(s) ({w.bytes_read} bytes stored)")


@main.command()
@click.argument("repo")
@click.argument("source", type=click.Path())
@branch_option
@message_option
@widen_option
@storage_option
@json_option
@pass_state
def extend(state: State, repo, source, branch, message, widen, storage_options, as_json):
    """Add the variants of SOURCE (VCZ or VCF/BCF; the repository's samples, variants after its
    last one or on new contigs) to REPO as one commit."""
    result = state.open(repo, storage_options, widen=widen).extend(source, branch=branch, message=message)
    _print_commit(result, as_json)


@main.command()
@click.argument("repo")
@sample_options
@branch_option
@message_option
@drop_stale_option
@distributed_options
@storage_option
@json_option
@pass_state
def remove(state: State, repo, samples, samples_file, branch, message, drop_stale_info, workers, scheduler,
           storage_options, as_json):
    """Withdraw SAMPLES (and those of -S FILE) from REPO as one commit (their data becomes missing;
    AC/AN/AF/NS… follow)."""
    names = _sample_names(samples, samples_file)
    result = state.open(repo, storage_options, workers=workers, scheduler=scheduler).remove(
        names, branch=branch, message=message, drop_stale_info=drop_stale_info)
    _print_commit(result, as_json)


@main.command()
@click.argument("batch", type=click.Path())
@click.argument("out", type=click.Path())
@click.option("--like", "repo", required=True, help="Repository whose variants the batch is mapped onto.")
@at_option
@click.option("--allow-new-alleles", is_flag=True, help="Add the batch's new ALT alleles at existing sites.")
@storage_option
@json_option
@pass_state
def normalise(state: State, batch, out, repo, at, allow_new_alleles, storage_options, as_json):
    """Write BATCH mapped onto the variants of REPO (at --at REF) as a plain VCZ at OUT."""
    summary = state.open(repo, storage_options).normalise(batch, out, at=at, allow_new_alleles=allow_new_alleles)
    if as_json:
        _emit_json(summary)
        return
    click.echo(f"{out}: {summary['n_variants_missing_from_batch']} variants missing from the batch, "
               f"{summary['n_alleles_remapped']} remapped, {len(summary['new_alleles'])} with new ALT alleles")


@main.command()
@click.argument("repo")
@click.argument("name", required=False)
@at_option
@click.option("--list", "list_", is_flag=True, help="List tags with their snapshots.")
@click.option("--delete", is_flag=True, help="Delete tag NAME (permanent: icechunk never reuses a tag name).")
@click.option("--yes", is_flag=True, help="Confirm --delete.")
@storage_option
@json_option
@pass_state
def tag(state: State, repo, name, at, list_, delete, yes, storage_options, as_json):
    """Tag the ref --at (default: the head of main) as NAME; or --list tags; or --delete NAME."""
    if delete and name is not None and not yes:
        raise click.UsageError(f"deleting tag {name!r} is permanent (icechunk never reuses a tag name): "
                               "add --yes to confirm")
    r = state.open(repo, storage_options)
    _ref_command("tag", name, list_, delete, as_json, r.tag_list, r.delete_tag, lambda n: r.create_tag(n, at),
                 lambda row: f"{row['name']:<24} {row['snapshot']}  {row['message']}")


@main.command()
@click.argument("repo")
@click.argument("name", required=False)
@at_option
@click.option("--list", "list_", is_flag=True, help="List branches: head, commits ahead of/behind main.")
@click.option("--delete", is_flag=True, help="Delete branch NAME (its commits stay in log --all).")
@storage_option
@json_option
@pass_state
def branch(state: State, repo, name, at, list_, delete, storage_options, as_json):
    """Create branch NAME at --at REF; or --list branches; or --delete NAME."""
    r = state.open(repo, storage_options)
    _ref_command("branch", name, list_, delete, as_json, r.branch_list, r.delete_branch,
                 lambda n: r.create_branch(n, at),
                 lambda row: f"{row['name']:<20} {row['head']}  ahead {row['ahead']:>3}  behind {row['behind']:>3}")


def _ref_command(kind: str, name: str | None, list_: bool, delete: bool, as_json: bool, rows: Callable,
                 remove: Callable, create: Callable, line: Callable) -> None:
    """What `tag` and `branch` share: list, delete NAME, or create NAME."""
    if list_ or name is None:
        if delete:
            raise click.UsageError(f"--delete needs a {kind} NAME")
        found = rows()
        if as_json:
            _emit_json(found)
        for row in [] if as_json else found:
            click.echo(line(row))
        return
    if delete:
        sid = remove(name)
        _emit_json({"deleted": name, "snapshot": sid}) if as_json else click.echo(f"deleted {kind} {name} (was {sid})")
        return
    sid = create(name)
    _emit_json({kind: name, "snapshot": sid}) if as_json else click.echo(f"{kind} {name} -> {sid}")


def _print_move(move: Any, as_json: bool) -> None:
    if as_json:
        _emit_json(move.to_json())
        return
    click.echo(f"{move.branch}: {move.mode} {move.old} -> {move.new}")
    for c in move.commits:
        _print_commit(c, False)


@main.command()
@click.argument("repo")
@click.argument("source", shell_complete=_complete_refs)
@branch_option
@click.option("--replay", is_flag=True, help="If not a fast-forward, re-apply SOURCE's operations as new commits.")
@storage_option
@json_option
@pass_state
def promote(state: State, repo, source, branch, replay, storage_options, as_json):
    """Fast-forward a branch (-b, default main) to SOURCE (or --replay SOURCE's operations onto it)."""
    _print_move(state.open(repo, storage_options).promote(source, branch=branch, replay=replay), as_json)


@main.command()
@click.argument("repo")
@branch_option
@click.option("--at", "at", required=True, metavar="REF", help="Ref to move the branch to.",
              shell_complete=_complete_refs)
@click.option("--expect", metavar="REF", help="The head you saw: refuse if the branch has moved since.")
@click.option("--force", is_flag=True, help="Reset even if the branch moved since --expect.")
@storage_option
@json_option
@pass_state
def reset(state: State, repo, branch, at, expect, force, storage_options, as_json):
    """Move a branch (-b, default main) to --at REF; the old head stays reachable through `log --all`."""
    _print_move(state.open(repo, storage_options).reset(branch, at, expect=expect, force=force), as_json)


@main.command()
@click.argument("repo")
@click.argument("commit", shell_complete=_complete_refs)
@branch_option
@message_option
@storage_option
@json_option
@pass_state
def revert(state: State, repo, commit, branch, message, storage_options, as_json):
    """New commit undoing one append (removes its samples) or remove (restores their data)."""
    _print_commit(state.open(repo, storage_options).revert(commit, branch=branch, message=message), as_json)


@main.command()
@click.argument("repo")
@at_option
@click.option("-n", "limit", type=click.IntRange(1), help="Show at most N commits.")
@click.option("--all", "all_", is_flag=True,
              help="Every commit: all branches, tags, and heads left by reset/delete (marked orphaned).")
@click.option("--oneline", is_flag=True, help="One line per commit: id, refs, operation, message.")
@click.option("--graph", is_flag=True, help="Draw the lines of history beside the commits, as git log --graph.")
@storage_option
@json_option
@pass_state
def log(state: State, repo, at, limit, all_, oneline, graph, storage_options, as_json):
    """History of a ref (or --all), newest first: each commit's refs, operation, author, time and message."""
    from .graph import draw

    r = state.open(repo, storage_options)
    commits = r.log_all(limit) if all_ else r.log(at, limit)
    pending = r.pending()
    if as_json:
        _emit_json([c.to_json() for c in commits])
        return
    if pending:
        click.echo(f"in progress: {pending['op']} started {pending['started']} by {pending['owner']} "
                   "(the next write finishes it)")
    text = _oneline if oneline else _medium
    lines = draw(commits, text) if graph else [line for c in commits for line in text(c)]
    while lines and not lines[-1].strip():  # a blank line separates commits, as in git; none after the last
        lines.pop()
    for line in lines:
        click.echo(line)


def _decoration(c: Any) -> str:
    """git's decoration of a commit: `(main, tag: v1)`; a head left by a reset or a deletion is
    `(orphaned: was main)`, and the commits only it reaches `(orphaned)`."""
    if not c.reachable:
        return f" (orphaned: was {', '.join(c.was_head_of)})" if c.was_head_of else " (orphaned)"
    refs = [*c.branches, *(f"tag: {t}" for t in c.tags)]
    return f" ({', '.join(refs)})" if refs else ""


def _oneline(c: Any) -> list[str]:
    from .journal import sample_change

    change = sample_change(c.metadata)
    return [f"{c.id}{_decoration(c)} {c.op}{' ' + change if change else ''}: {c.message}"]


def _medium(c: Any) -> list[str]:
    """git log's default format, with the operation and its change to the samples."""
    from .journal import sample_change

    lines = [f"commit {c.id}{_decoration(c)}"]
    if c.author:
        lines.append(f"Author: {c.author}")
    lines.append(f"Date:   {c.time:%Y-%m-%d %H:%M:%S %z}")
    total = c.metadata.get("n_samples")
    lines.append(f"Op:     {' '.join(filter(None, (c.op, sample_change(c.metadata))))}"
                 + (f" ({total} samples)" if total is not None else ""))
    if "purge" in c.metadata:
        lines.append(f"Purged: rewritten from {c.metadata['purge']['rewritten_from']}")
    return [*lines, "", *(f"    {line}" for line in c.message.splitlines() or [""]), ""]


@main.command()
@click.argument("repo")
@at_option
@storage_option
@json_option
@pass_state
def samples(state: State, repo, at, storage_options, as_json):
    """List the samples (without removed ones) at a ref."""
    names = state.open(repo, storage_options).samples(at)
    if as_json:
        _emit_json(names)
        return
    for s in names:
        click.echo(s)


@main.command()
@click.argument("repo")
@at_option
@storage_option
@json_option
@pass_state
def info(state: State, repo, at, storage_options, as_json):
    """Samples, variants, contigs, fields, chunking and the refs at a ref."""
    summary = state.open(repo, storage_options).info(at)
    if as_json:
        _emit_json(summary)
        return
    click.echo(f"ref:       {summary['ref']} ({summary['snapshot']})")
    refs = [*summary["branches"], *(f"tag:{t}" for t in summary["tags"])]
    click.echo(f"refs here: {', '.join(refs) or '-'}")
    if summary["in_progress"]:
        p = summary["in_progress"]
        click.echo(f"in progress: {p['op']} since {p['started']} by {p['owner']}")
    padding = f", {summary['n_padding']} padding" if summary["n_padding"] else ""
    click.echo(f"samples:   {summary['n_samples']} ({summary['n_removed']} removed{padding})")
    click.echo(f"variants:  {summary['n_variants']}")
    used = summary["contigs_with_variants"]
    shown = ", ".join(used[:10]) + (f", … ({len(used)} in all)" if len(used) > 10 else "")
    click.echo(f"contigs:   {summary['n_contigs']} in the header; with variants: {shown or '-'}")
    click.echo(f"chunking:  {summary['variants_chunk_size']} variants x {summary['samples_chunk_size']} samples")
    click.echo(f"INFO kept true: {', '.join(summary['info_maintained']) or '-'}; "
               f"stale since the sample set changed: {', '.join(summary['info_stale']) or '-'}")
    click.echo("fields:")
    for name, f in summary["fields"].items():
        click.echo(f"  {name:<24} {f['dtype']:<12} {'x'.join(map(str, f['shape'])):<14} {','.join(f['dims'])}")


@main.command()
@click.argument("repo")
@click.argument("out", type=click.Path())
@at_option
@click.option("--drop-removed", is_flag=True,
              help="Leave removed samples out (default: keep them as null samples, as stored).")
@storage_option
@json_option
@pass_state
def checkout(state: State, repo, out, at, drop_removed, storage_options, as_json):
    """Write the VCZ at a ref to OUT as a plain zarr format 3 store."""
    sid = state.open(repo, storage_options).checkout(out, at, drop_removed=drop_removed)
    _emit_json({"out": out, "ref": at, "snapshot": sid}) if as_json else click.echo(f"{out}: {at} ({sid})")


@main.command()
@click.argument("repo")
@click.argument("from_ref", shell_complete=_complete_refs)
@click.argument("to_ref", default="main", shell_complete=_complete_refs)
@storage_option
@json_option
@pass_state
def diff(state: State, repo, from_ref, to_ref, storage_options, as_json):
    """What changed from FROM_REF to TO_REF (default main): samples, arrays, operations."""
    d = state.open(repo, storage_options).diff(from_ref, to_ref)
    if as_json:
        _emit_json(d.to_json())
        return
    click.echo(f"{from_ref} ({d.from_snapshot}) -> {to_ref} ({d.to_snapshot}); common ancestor {d.base}")
    for label, names in (("added", d.samples_added), ("removed", d.samples_removed)):
        shown = " ".join(names[:20]) + (f" … ({len(names)} in all)" if len(names) > 20 else "")
        click.echo(f"samples {label} ({len(names)}): {shown or '-'}")
    click.echo(f"variant arrays changed: {'yes' if d.variant_arrays_changed else 'no'}")
    if d.variants_added:
        click.echo(f"variants {'added' if d.variants_added > 0 else 'removed'}: {abs(d.variants_added)}")
    click.echo(f"arrays changed: {', '.join(d.arrays_changed) or '-'}")
    for label, ops in ((to_ref, d.operations), (from_ref, d.operations_only_in_from)):
        for op in ops:
            click.echo(f"  {label}: {op['id']} {op['op']:<7} {op['message']}")


@main.command()
@click.argument("repo")
@sample_options
@click.option("--dry-run", is_flag=True, help="Show what would be rewritten, change nothing.")
@storage_option
@json_option
@pass_state
def purge(state: State, repo, samples, samples_file, dry_run, storage_options, as_json):
    """Erase SAMPLES (and those of -S FILE) from all history reachable from branches and tags
    (then run `gc --now`)."""
    p = state.open(repo, storage_options).purge(_sample_names(samples, samples_file), dry_run=dry_run)
    if as_json:
        _emit_json(p.to_json())
        return
    verb = "would rewrite" if dry_run else "rewrote"
    click.echo(f"{verb} {len(p.rewrite)} commit(s) holding {len(p.samples)} sample(s)")
    for old in p.rewrite:
        click.echo(f"  {old} -> {p.rewritten.get(old, '(new snapshot)')}")
    for name, tip in p.branches.items():
        click.echo(f"  branch {name}: {tip} -> {p.rewritten.get(tip, '(rewritten)')}")
    for name, new in p.new_tag_names.items():
        click.echo(f"  tag {name} -> {new} (the old name keeps resolving)")
    if not dry_run:
        click.echo("run `vczrepo gc --now` (local) to delete the old snapshots' objects from storage")


@main.command()
@click.argument("repo")
@click.option("--older-than", default="7d", show_default=True,
              help="Only objects older than this (e.g. 30m, 12h, 7d); at least 10m.")
@click.option("--now", is_flag=True, help="Collect every unreachable object now (local repositories: the lock "
                                          "keeps writers out).")
@click.option("--expire", is_flag=True, help="Also drop history older than --older-than (tags and branch tips kept).")
@click.option("--dry-run", is_flag=True, help="Report what would be deleted.")
@storage_option
@json_option
@pass_state
def gc(state: State, repo, older_than, now, expire, dry_run, storage_options, as_json):
    """Delete storage objects that no branch or tag reaches (abandoned writes, purged or reset history)."""
    from .ops.gc import parse_duration

    result = state.open(repo, storage_options).gc(parse_duration(older_than), expire=expire, now=now,
                                                  dry_run=dry_run)
    if as_json:
        _emit_json(result.to_json())
        return
    verb = "would delete" if dry_run else "deleted"
    age = "unreachable now" if now else f"older than {older_than}"
    documents = f", {result.documents_deleted} superseded repository documents" if now else ""
    click.echo(f"{verb} {result.chunks_deleted} chunks, {result.manifests_deleted} manifests, "
               f"{result.snapshots_deleted} snapshots ({result.bytes_deleted} bytes){documents} {age}")


@main.command()
@click.argument("repo")
@click.option("--at", "at", default=None, metavar="REF", help="Check one ref (default: every branch and tag).",
              shell_complete=_complete_refs)
@click.option("--deep", is_flag=True, help="Also verify the checksum of every chunk of every snapshot in history.")
@storage_option
@json_option
def check(repo, at, deep, storage_options, as_json):
    """Integrity check; exit code 8 and one line per problem if anything is wrong."""
    from .check import check_path
    from .errors import IntegrityError

    report = check_path(repo, _parse_options(storage_options), at=at, deep=deep)
    if as_json:
        _emit_json(report.to_json())
    else:
        for problem in report.problems:
            click.echo(f"problem: {problem}", err=True)
        for line in report.unverified:
            click.echo(f"note: {line}", err=True)
        click.echo(report.summary())
    return 0 if report.ok else IntegrityError.exit_code


@main.command()
@click.argument("repo")
@branch_option
@message_option
@storage_option
@json_option
@pass_state
def repair(state: State, repo, branch, message, storage_options, as_json):
    """Rewrite masks that disagree with their arrays (as `check` reports), as one commit."""
    _print_commit(state.open(repo, storage_options).repair(branch=branch, message=message), as_json)


@main.command("add-checksums")
@click.argument("repo")
@branch_option
@message_option
@storage_option
@json_option
@pass_state
def add_checksums(state: State, repo, branch, message, storage_options, as_json):
    """Give a repository made before checksums a crc32c on every chunk (as bytes), as one commit,
    and a digest record to every snapshot and manifest that has none."""
    _print_commit(state.open(repo, storage_options).add_checksums(branch=branch, message=message), as_json)


@main.command()
@click.argument("repo")
@sample_options
@storage_option
@json_option
@pass_state
def audit(state: State, repo, samples, samples_file, storage_options, as_json):
    """Scan every stored object of REPO (decompressing icechunk files and chunks) for the ids SAMPLES
    (and those of -S FILE); exit 0 when none holds any, 9 otherwise."""
    samples = _sample_names(samples, samples_file)
    findings = state.open(repo, storage_options).audit(samples)
    if as_json:
        _emit_json({"clean": not findings, "findings": [f.to_json() for f in findings]})
    else:
        for f in findings:
            click.echo(f"{f.name}\t{f.key}\t{f.layer}")
        click.echo(f"{len(findings)} place(s) hold {len(samples)} id(s)" if findings
                   else f"no object holds any of the {len(samples)} id(s)", err=bool(findings))
    return AUDIT_FOUND if findings else 0


@main.command()
@click.argument("directory", required=False, type=click.Path())
@json_option
def demo(directory, as_json):
    """Run the main job on bundled example data (in DIRECTORY, or a temporary one); exit 0 when every
    step gave what it should."""
    from .demo import run_demo

    report = run_demo(directory, echo=(lambda _: None) if as_json else click.echo)
    if as_json:
        _emit_json(report.to_json())
    return 0 if report.ok else 1


if __name__ == "__main__":
    main()
