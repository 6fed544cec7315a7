"""What changed between two refs: samples, arrays, and the operations on each side."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from . import schema

if TYPE_CHECKING:
    from .repository import Repository


@dataclass(frozen=True)
class DiffResult:
    """What `diff` returns: how ref `to_ref` differs from `from_ref`."""

    from_ref: str
    to_ref: str
    from_snapshot: str
    to_snapshot: str
    base: str | None  # newest common ancestor
    samples_added: list[str]
    samples_removed: list[str]
    arrays_changed: list[str]
    variant_arrays_changed: bool
    variants_added: int  # variant count of `b` minus that of `a` (extend grows it; negative: fewer)
    operations: list[dict]  # commits from base to `to_ref`, oldest first
    operations_only_in_from: list[dict]  # commits from base to `from_ref` (diverged refs)

    def to_json(self) -> dict:
        return asdict(self)


def _changed_arrays(repo: Repository, base: str, target: str) -> set[str]:
    if base == target:
        return set()
    d = repo.icechunk.diff(from_snapshot_id=base, to_snapshot_id=target)
    paths = d.new_arrays | d.deleted_arrays | d.updated_arrays | set(d.updated_chunks)
    return {p.strip("/") for p in paths}


def _ops(repo: Repository, base: str | None, sid: str) -> list[dict]:
    out = []
    for c in repo.log(sid):
        if c.id == base:
            break
        out.append({"id": c.id, "op": c.op, "message": c.message})
    return out[::-1]


def diff(repo: Repository, a: str, b: str) -> DiffResult:
    """Differences going from ref `a` to ref `b` (b's samples not in a are 'added')."""
    sa, sb = repo.resolve(a), repo.resolve(b)
    base = repo.merge_base(sa, sb)
    ga, gb = repo.group(sa), repo.group(sb)
    live_a, live_b = schema.live_samples(ga), schema.live_samples(gb)
    set_a, set_b = set(live_a), set(live_b)
    changed = _changed_arrays(repo, base, sa) | _changed_arrays(repo, base, sb) if base else (
        set(ga.array_keys()) | set(gb.array_keys()))
    variant_changed = any(
        name in g and schema.sample_axis(schema.array(g, name)) is None
        and schema.dims(schema.array(g, name))[:1] == (schema.VARIANTS,)
        for name in changed for g in (ga, gb)
    )
    return DiffResult(
        from_ref=a, to_ref=b, from_snapshot=sa, to_snapshot=sb, base=base,
        samples_added=[s for s in live_b if s not in set_a],
        samples_removed=[s for s in live_a if s not in set_b],
        arrays_changed=sorted(changed),
        variant_arrays_changed=variant_changed,
        variants_added=(int(schema.array(gb, "variant_position").shape[0])
                        - int(schema.array(ga, "variant_position").shape[0])),
        operations=_ops(repo, base, sb),
        operations_only_in_from=_ops(repo, base, sa),
    )
