"""The `vczrepo` command: parse arguments, call the Python API, format the result."""

from __future__ import annotations

import json
import os
import sys
from functools import wraps
from pathlib import Path

import click

from . import errors

EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # as a shell reports a process stopped by SIGPIPE


def _quiet_icechunk(verbose: int) -> None:
    import icechunk

    icechunk.set_logs_filter({0: "error", 1: "warn", 2: "info"}.get(verbose, "debug"))


def _fail(message: str, code: int) -> None:
    one_line = " ".join(part.strip() for part in message.splitlines() if part.strip())
    click.echo(f"vczrepo: error: {one_line}", err=True)
    sys.exit(code)


def api_errors(func):
    """Turn typed errors into one line on stderr and the error's exit code."""

    @wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except errors.VczRepoError as e:
            _fail(str(e), e.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted; nothing was committed", EXIT_INTERRUPTED)
        except BrokenPipeError:  # the reader stopped early (`vczrepo samples R | head`): no message
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
            sys.exit(EXIT_BROKEN_PIPE)
        except Exception as e:
            import icechunk

            from .storage import short_message

            if isinstance(e, icechunk.IcechunkError):
                _fail(f"storage: {short_message(e)}", 1)
            if isinstance(e, ValueError):  # bad URLs and storage options
                _fail(str(e), 2)
            if isinstance(e, OSError):
                _fail(f"{type(e).__name__}: {e}", 1)
            raise

    return wrapper


def _open(repo: str, storage_options: tuple[str, ...]):
    from .repository import Repository

    return Repository.open(repo, _parse_options(storage_options))


def _parse_options(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--storage-option")
        out[key] = value
    return out


def _emit_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


storage_option = click.option(
    "--storage-option", "storage_options", multiple=True, metavar="KEY=VALUE",
    help="icechunk storage option (e.g. endpoint_url=…, allow_http=true, region=…).",
)
branch_option = click.option("-b", "--branch", default="main", show_default=True, help="Branch to commit to.")
message_option = click.option("-m", "--message", help="Commit message.")
at_option = click.option("--at", "ref", default="main", show_default=True, help="Branch, tag or snapshot id.")
chunk_options = [
    click.option("--variants-chunk-size", type=click.IntRange(1), help="For VCF input: variants per chunk."),
    click.option("--samples-chunk-size", type=click.IntRange(1), help="For VCF input: samples per chunk."),
]


distributed_options = [
    click.option("--workers", type=click.IntRange(1), default=1, show_default=True,
                 help="Spread the chunk work over N dask.distributed workers (a LocalCluster)."),
    click.option("--scheduler", metavar="ADDRESS", help="Use an existing dask cluster instead of a LocalCluster."),
]


def with_distributed_options(f):
    for option in reversed(distributed_options):
        f = option(f)
    return f


def with_chunk_options(f):
    for option in reversed(chunk_options):
        f = option(f)
    return f


def _change(m: dict) -> str:
    """Sample count change of a commit, e.g. '+3', '-1'."""
    added = m.get("n_samples_added", 0) + m.get("n_samples_restored", 0)
    removed = m.get("n_samples_removed", 0)
    return " ".join(x for x in (f"+{added}" if added else "", f"-{removed}" if removed else "") if x)


def _print_commit(result) -> None:
    m = result.metadata
    change = _change(m)
    click.echo(f"{result.snapshot_id} {result.branch}: {m['op']} ({change} samples, {m['n_samples']} in total)")


def _vcztools_command(name: str) -> click.Command:
    """`vczrepo view|query REPO --at REF [vcztools options]`: vcztools' own options, at any ref."""
    import vcztools.cli

    from . import read

    target = getattr(vcztools.cli, name)

    @api_errors
    def callback(repo, ref, storage_options, **options):
        getattr(read, name)(_open(repo, storage_options), ref, **options)

    params = [click.Argument(["repo"]), *at_option(lambda: None).__click_params__,
              *storage_option(lambda: None).__click_params__, *read.vcztools_options(target)]
    doc = f"`vcztools {name}` of REPO at a branch, tag or snapshot; options as in vcztools {name}."
    return click.Command(name, callback=callback, params=params, help=doc, short_help=doc)


class LazyGroup(click.Group):
    """Builds view/query only when used: importing vcztools' CLI costs over a second."""

    lazy = ("view", "query")

    def list_commands(self, ctx):
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx, name):
        if name in self.lazy:
            return _vcztools_command(name)
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup)
@click.option("-v", "--verbose", count=True, help="Show icechunk's logs (-v warnings, -vv info).")
@click.option("--no-progress", is_flag=True, help="No progress bars (they only show on a terminal anyway).")
@click.option("--compression-level", type=click.IntRange(0, 9), default=1, show_default=True,
              help="Blosc level of the chunks vczrepo re-encodes (remove, unaligned append, padding); "
                   "chunks copied as bytes keep theirs.")
@click.version_option(package_name="vczrepo")
def main(verbose: int, no_progress: bool, compression_level: int) -> None:
    """Versioned VCF Zarr repositories: append and remove samples as commits, tag, branch, read any ref."""
    from . import chunks

    _quiet_icechunk(verbose)
    if no_progress:
        chunks.SHOW_PROGRESS = False
    chunks.COMPRESSION_LEVEL = compression_level


@main.command()
@click.argument("repo")
@click.argument("sources", nargs=-1, required=True, type=click.Path())
@click.option("--variants-from", is_flag=True,
              help="SOURCES are VCZs whose sorted variant union the repository holds, with no samples.")
@message_option
@with_chunk_options
@storage_option
@api_errors
def init(repo, sources, variants_from, message, variants_chunk_size, samples_chunk_size, storage_options):
    """Create REPO whose first commit holds SOURCE (a VCZ, or a VCF/BCF converted with bio2zarr)."""
    from .repository import Repository

    if not variants_from and len(sources) != 1:
        raise click.UsageError("init takes one SOURCE (or several with --variants-from)")
    _, result = Repository.init(
        repo, None if variants_from else sources[0], variants_from=sources if variants_from else (),
        message=message, storage_options=_parse_options(storage_options),
        variants_chunk_size=variants_chunk_size, samples_chunk_size=samples_chunk_size,
    )
    _print_commit(result)
    if variants_from:
        click.echo(f"{result.metadata['n_variants']} variants from {len(sources)} VCZs")


@main.command()
@click.argument("repo")
@click.argument("source", type=click.Path())
@branch_option
@message_option
@with_chunk_options
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
@with_distributed_options
@storage_option
@api_errors
def append(repo, source, branch, message, variants_chunk_size, samples_chunk_size, fill_missing_fields,
           align, normalise, allow_new_alleles, workers, scheduler, storage_options):
    """Add the samples of SOURCE (VCZ or VCF/BCF) to REPO as one commit."""
    result = _open(repo, storage_options).append(
        source, branch=branch, message=message,
        variants_chunk_size=variants_chunk_size, samples_chunk_size=samples_chunk_size,
        fill_missing_fields=fill_missing_fields, align=align, normalise=normalise,
        allow_new_alleles=allow_new_alleles,
        workers=workers, scheduler=scheduler,
    )
    _print_commit(result)


@main.command()
@click.argument("batch", type=click.Path())
@click.option("--like", "repo", required=True, help="Repository whose variants the batch is mapped onto.")
@click.argument("out", type=click.Path())
@at_option
@click.option("--allow-new-alleles", is_flag=True, help="Add the batch's new ALT alleles at existing sites.")
@storage_option
@api_errors
def normalise(batch, repo, out, ref, allow_new_alleles, storage_options):
    """Write BATCH mapped onto REPO's variants (at --at REF) as a plain VCZ at OUT."""
    from .ops.normalise import normalise as do_normalise
    from .sources import open_source

    if Path(out).exists():
        raise errors.OutputExistsError(f"output already exists: {out}")
    with open_source(batch) as src:
        summary = do_normalise(src.group, _open(repo, storage_options).group(ref), out,
                               allow_new_alleles=allow_new_alleles)
    click.echo(f"{out}: {summary['n_variants_missing_from_batch']} variants missing from the batch, "
               f"{summary['n_alleles_remapped']} remapped, {len(summary['new_alleles'])} with new ALT alleles")


@main.command()
@click.argument("repo")
@click.argument("samples", nargs=-1, required=True)
@branch_option
@message_option
@with_distributed_options
@storage_option
@api_errors
def remove(repo, samples, branch, message, workers, scheduler, storage_options):
    """Withdraw SAMPLES from REPO as one commit (their data becomes missing)."""
    _print_commit(_open(repo, storage_options).remove(samples, branch=branch, message=message,
                                                      workers=workers, scheduler=scheduler))


@main.command()
@click.argument("repo")
@click.argument("name")
@click.argument("ref", default="main")
@storage_option
@api_errors
def tag(repo, name, ref, storage_options):
    """Tag REF (default: the head of main) as NAME."""
    sid = _open(repo, storage_options).create_tag(name, ref)
    click.echo(f"tag {name} -> {sid}")


@main.command()
@click.argument("repo")
@click.argument("name", required=False)
@click.option("--from", "from_ref", default="main", show_default=True, help="Ref to branch from.")
@click.option("--list", "list_", is_flag=True, help="List branches: head, commits ahead of/behind main.")
@click.option("--delete", is_flag=True, help="Delete branch NAME (its commits stay in log --all).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (with --list).")
@storage_option
@api_errors
def branch(repo, name, from_ref, list_, delete, as_json, storage_options):
    """Create branch NAME at --from REF; or --list branches; or --delete NAME."""
    r = _open(repo, storage_options)
    if list_ or name is None:
        rows = r.branch_list()
        if as_json:
            _emit_json(rows)
        for row in [] if as_json else rows:
            click.echo(f"{row['name']:<20} {row['head']}  ahead {row['ahead']:>3}  behind {row['behind']:>3}")
        return
    if delete:
        click.echo(f"deleted branch {name} (was {r.delete_branch(name)})")
        return
    click.echo(f"branch {name} -> {r.create_branch(name, from_ref)}")


@main.command()
@click.argument("repo")
@click.argument("source")
@click.option("--into", default="main", show_default=True, help="Branch to move.")
@click.option("--replay", is_flag=True, help="If not a fast-forward, re-apply SOURCE's operations as new commits.")
@storage_option
@api_errors
def promote(repo, source, into, replay, storage_options):
    """Fast-forward a branch (--into, default main) to SOURCE."""
    from .history import promote as do_promote

    move = do_promote(_open(repo, storage_options), source, into, replay=replay)
    click.echo(f"{into}: {move.mode} {move.old} -> {move.new}")
    for c in move.commits:
        _print_commit(c)


@main.command()
@click.argument("repo")
@click.argument("branch_name", metavar="BRANCH")
@click.option("--to", "to_ref", required=True, help="Ref to move the branch to.")
@click.option("--expect", help="The head you saw: refuse if the branch has moved since.")
@click.option("--force", is_flag=True, help="Reset even if the branch moved since --expect.")
@storage_option
@api_errors
def reset(repo, branch_name, to_ref, expect, force, storage_options):
    """Move BRANCH to any ref; the old head stays reachable through `log --all`."""
    from .history import reset as do_reset

    move = do_reset(_open(repo, storage_options), branch_name, to_ref, expect=expect, force=force)
    click.echo(f"{branch_name}: {move.old} -> {move.new}")


@main.command()
@click.argument("repo")
@click.argument("snapshot")
@branch_option
@storage_option
@api_errors
def revert(repo, snapshot, branch, storage_options):
    """New commit undoing one append (removes its samples) or remove (restores their data)."""
    from .history import revert as do_revert

    _print_commit(do_revert(_open(repo, storage_options), snapshot, branch=branch))


@main.command()
@click.argument("repo")
@click.argument("ref", default="main")
@click.option("-n", "limit", type=click.IntRange(1), help="Show at most N commits.")
@click.option("--all", "all_", is_flag=True, help="Every commit: all branches, tags, and heads left by reset/delete.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@storage_option
@api_errors
def log(repo, ref, limit, all_, as_json, storage_options):
    """History of REF, newest first, with the operation of each commit and refs pointing at it."""
    from .history import log_all

    r = _open(repo, storage_options)
    commits = log_all(r)[:limit] if all_ else r.log(ref, limit)
    if as_json:
        _emit_json([c.to_json() for c in commits])
        return
    for c in commits:
        refs = ", ".join([*c.branches, *(f"tag:{t}" for t in c.tags)])
        change = _change(c.metadata)
        line = f"{c.id}  {c.written_at:%Y-%m-%d %H:%M:%S}  {c.op:<7} {change:>6}  {c.message}"
        click.echo(line + (f"  ({refs})" if refs else ""))


@main.command()
@click.argument("repo")
@at_option
@storage_option
@api_errors
def samples(repo, ref, storage_options):
    """List the samples (without removed ones) at a ref."""
    for s in _open(repo, storage_options).samples(ref):
        click.echo(s)


@main.command()
@click.argument("repo")
@at_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@storage_option
@api_errors
def info(repo, ref, as_json, storage_options):
    """Samples, variants, contigs, fields, chunking and head of a ref."""
    summary = _open(repo, storage_options).info(ref)
    if as_json:
        _emit_json(summary)
        return
    click.echo(f"ref:       {summary['ref']} ({summary['snapshot']})")
    refs = [*summary["branches"], *(f"tag:{t}" for t in summary["tags"])]
    click.echo(f"refs here: {', '.join(refs) or '-'}")
    padding = f", {summary['n_padding']} padding" if summary["n_padding"] else ""
    click.echo(f"samples:   {summary['n_samples']} ({summary['n_removed']} removed{padding})")
    click.echo(f"variants:  {summary['n_variants']}")
    click.echo(f"contigs:   {', '.join(summary['contigs'])}")
    click.echo(f"chunking:  {summary['variants_chunk_size']} variants x {summary['samples_chunk_size']} samples")
    click.echo("fields:")
    for name, f in summary["fields"].items():
        click.echo(f"  {name:<24} {f['dtype']:<12} {'x'.join(map(str, f['shape'])):<14} {','.join(f['dims'])}")


@main.command()
@click.argument("repo")
@click.argument("ref")
@click.argument("out", type=click.Path())
@click.option("--drop-removed", is_flag=True,
              help="Leave removed samples out (default: keep them as null samples, as stored).")
@storage_option
@api_errors
def checkout(repo, ref, out, drop_removed, storage_options):
    """Write the VCZ at REF to OUT as a plain zarr format 3 store."""
    from .read import checkout as do_checkout

    sid = do_checkout(_open(repo, storage_options), ref, out, drop_removed=drop_removed)
    click.echo(f"{out}: {ref} ({sid})")


@main.command()
@click.argument("repo")
@click.argument("from_ref")
@click.argument("to_ref", default="main")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@storage_option
@api_errors
def diff(repo, from_ref, to_ref, as_json, storage_options):
    """What changed from FROM_REF to TO_REF: samples, arrays, operations."""
    from .diff import diff as do_diff

    d = do_diff(_open(repo, storage_options), from_ref, to_ref)
    if as_json:
        _emit_json(d.to_json())
        return
    click.echo(f"{from_ref} ({d.from_snapshot}) -> {to_ref} ({d.to_snapshot}); common ancestor {d.base}")
    click.echo(f"samples added ({len(d.samples_added)}): {' '.join(d.samples_added) or '-'}")
    click.echo(f"samples removed ({len(d.samples_removed)}): {' '.join(d.samples_removed) or '-'}")
    click.echo(f"variant arrays changed: {'yes' if d.variant_arrays_changed else 'no'}")
    click.echo(f"arrays changed: {', '.join(d.arrays_changed) or '-'}")
    for label, ops in ((to_ref, d.operations), (from_ref, d.operations_only_in_from)):
        for op in ops:
            click.echo(f"  {label}: {op['id']} {op['op']:<7} {op['message']}")


@main.command()
@click.argument("repo")
@click.argument("samples", nargs=-1, required=True)
@click.option("--dry-run", is_flag=True, help="Show what would be rewritten, change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@storage_option
@api_errors
def purge(repo, samples, dry_run, as_json, storage_options):
    """Erase SAMPLES' call data from all history reachable from branches and tags (then run gc)."""
    from .purge import purge as do_purge

    p = do_purge(_open(repo, storage_options), samples, dry_run=dry_run)
    if as_json:
        _emit_json(p.to_json())
        return
    verb = "would rewrite" if dry_run else "rewrote"
    click.echo(f"{verb} {len(p.rewrite)} commit(s) holding {', '.join(p.samples)}")
    for old in p.rewrite:
        click.echo(f"  {old} -> {p.rewritten.get(old, '(new snapshot)')}")
    for branch, tip in p.branches.items():
        click.echo(f"  branch {branch}: {tip} -> {p.rewritten.get(tip, '(rewritten)')}")
    for tag in p.tags:
        click.echo(f"  tag {tag} -> {p.renamed_tags.get(tag, 'renamed <tag>.purgedN')}")
    if not dry_run:
        click.echo("run `vczrepo gc` to delete the old snapshots' objects from storage")


@main.command()
@click.argument("repo")
@click.option("--older-than", default="7d", show_default=True,
              help="Only objects older than this (e.g. 30m, 12h, 7d); at least 10m.")
@click.option("--expire", is_flag=True, help="Also drop history older than --older-than (tags and branch tips kept).")
@click.option("--dry-run", is_flag=True, help="Report what would be deleted.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@storage_option
@api_errors
def gc(repo, older_than, expire, dry_run, as_json, storage_options):
    """Delete storage objects that no branch or tag reaches (abandoned writes, purged or reset history)."""
    import dataclasses

    from .gc import gc as do_gc
    from .gc import parse_duration

    result = do_gc(_open(repo, storage_options), parse_duration(older_than), expire=expire, dry_run=dry_run)
    if as_json:
        _emit_json(dataclasses.asdict(result))
        return
    verb = "would delete" if dry_run else "deleted"
    click.echo(f"{verb} {result.chunks_deleted} chunks, {result.manifests_deleted} manifests, "
               f"{result.snapshots_deleted} snapshots ({result.bytes_deleted} bytes) older than {result.threshold:%Y-%m-%d %H:%M:%S}")


@main.command()
@click.argument("repo")
@at_option
@storage_option
@api_errors
def check(repo, ref, storage_options):
    """Integrity check of the VCZ at a ref; exit code 8 and a report if anything is wrong."""
    from .check import check as do_check

    report = do_check(_open(repo, storage_options), ref)
    for problem in report.problems:
        click.echo(f"problem: {problem}", err=True)
    status = "ok" if report.ok else f"{len(report.problems)} problem(s)"
    click.echo(f"{ref} ({report.snapshot}): {report.arrays_read} arrays, {report.chunks_read} chunks read: {status}")
    if not report.ok:
        sys.exit(errors.IntegrityError.exit_code)


# summaries: the audit command (issue 17); exit 0 when no object holds any of the ids, 9 otherwise
@main.command()
@click.argument("repo")
@click.argument("samples", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@storage_option
@api_errors
def audit(repo, samples, as_json, storage_options):
    """Scan every stored object of REPO (decompressing icechunk files and chunks) for sample ids."""
    from .audit import audit as do_audit

    findings = do_audit(_open(repo, storage_options), samples)
    if as_json:
        _emit_json({"findings": [f.to_json() for f in findings], "clean": not findings})
    else:
        for f in findings:
            click.echo(f"{f.name}\t{f.key}\t{f.layer}")
        click.echo(f"{len(findings)} object(s) hold {', '.join(samples)}" if findings
                   else f"no object holds {', '.join(samples)}", err=bool(findings))
    if findings:
        sys.exit(9)


@main.command()
@click.argument("directory", required=False, type=click.Path())
@api_errors
def demo(directory):
    """Run the main job on bundled example data (in DIRECTORY, or a temporary one)."""
    from .demo import run_demo

    ok = run_demo(directory, echo=click.echo)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
