"""A state machine that tries to make a reader see an uncommitted or lost state.

The model is deliberately simple: per branch, the ordered sample columns (None for a
withdrawn sample) and the commits that made it (so ancestry is a prefix relation); per
tag, a frozen copy. After every step each branch head and tag, read back through vcztools'
VczReader, must equal the model; readers opened earlier must still see the snapshot they
opened; failed operations (faults injected part-way) must change nothing; `log` must list
exactly the successful operations; promote must fast-forward exactly when the model says
the target is behind, and refuse otherwise; purge must erase a sample from every ref
(snapshots rewritten, tags renamed but still resolving) and gc must keep every reachable
snapshot readable.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import uuid
import zlib
from dataclasses import dataclass, field

import numpy as np
import pytest
import vcztools
import zarr
from hypothesis import assume, note
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule
from vcfgen import write_vcz_direct

import vczrepo
from vczrepo import chunks, gc, history, purge, transaction

N_VARIANTS = 7
VARIANTS_CHUNK = 3
SAMPLES_CHUNK = 2


class InjectedFault(Exception):
    pass


@dataclass(frozen=True)
class Op:
    """One successful commit: its operation, samples and the columns it touched."""

    kind: str
    names: tuple[str, ...]
    columns: tuple[int, ...]
    snapshot: str


@dataclass
class BranchModel:
    columns: list[str | None] = field(default_factory=list)
    ops: list[Op] = field(default_factory=list)

    def copy(self) -> BranchModel:
        return BranchModel(list(self.columns), list(self.ops))

    @property
    def live(self) -> list[str]:
        return [c for c in self.columns if c is not None]

    def append(self, names: list[str], snapshot: str, kind: str = "append") -> None:
        start = len(self.columns)
        self.columns.extend(names)
        self.ops.append(Op(kind, tuple(names), tuple(range(start, start + len(names))), snapshot))

    def append_batch(self, names: list[str], samples_chunk: int, align: bool | None, snapshot: str) -> None:
        """An append, padded with null columns to a chunk boundary first if `align`, or by default
        when the batch then copies as bytes (same chunking) and the padding is the smaller part."""
        pad = -len(self.columns) % SAMPLES_CHUNK
        if align or (align is None and samples_chunk == SAMPLES_CHUNK and pad < len(names)):
            self.columns.extend([None] * pad)
        self.append(names, snapshot)

    def remove(self, names: list[str], snapshot: str, kind: str = "remove") -> None:
        cols = tuple(self.columns.index(n) for n in names)
        for c in cols:
            self.columns[c] = None
        self.ops.append(Op(kind, tuple(names), cols, snapshot))

    def restore(self, names: tuple[str, ...], cols: tuple[int, ...], snapshot: str) -> None:
        for n, c in zip(names, cols, strict=True):
            self.columns[c] = n
        self.ops.append(Op("revert", names, cols, snapshot))


def _genotypes(name: str) -> np.ndarray:
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    return rng.integers(0, 2, size=(N_VARIANTS, 2)).astype(np.int8)


def _batch(names: list[str], samples_chunk: int) -> zarr.Group:
    gts = np.stack([_genotypes(n) for n in names], axis=1)
    return write_vcz_direct(zarr.storage.MemoryStore(), names, gts, n_variants=N_VARIANTS,
                            samples_chunk_size=samples_chunk, variants_chunk_size=VARIANTS_CHUNK)


@contextlib.contextmanager
def fault_after(n_tasks: int | None):
    """Raise InjectedFault after n chunk tasks were written (None: after all, before commit)."""
    original_run, original_meta = chunks.run_bounded, transaction.commit_metadata
    done = itertools.count()

    def run_bounded(fn, tasks, workers=chunks.WORKERS, desc=None):
        def wrapped(task):
            if n_tasks is not None and next(done) >= n_tasks:
                raise InjectedFault(f"after {n_tasks} chunk writes")
            fn(task)

        original_run(wrapped, tasks, workers=1, desc=desc)

    def commit_metadata(*args, **kwargs):
        raise InjectedFault("after all writes, before commit")

    chunks.run_bounded = run_bounded
    if n_tasks is None:
        transaction.commit_metadata = commit_metadata
    try:
        yield
    finally:
        chunks.run_bounded, transaction.commit_metadata = original_run, original_meta


class RepositoryMachine(RuleBasedStateMachine):
    refs = Bundle("refs")

    @initialize(target=refs, n=st.integers(1, 4))
    def init(self, n):
        self.counter = itertools.count()
        self.url = f"memory://machine-{uuid.uuid4().hex}"
        names = [f"S{next(self.counter)}" for _ in range(n)]
        self.repo, result = vczrepo.Repository.init(self.url, _batch(names, SAMPLES_CHUNK))
        main = BranchModel()
        main.append(names, result.snapshot_id, "init")
        self.branches = {"main": main}
        self.tags: dict[str, BranchModel] = {}
        self.readers: list[tuple[zarr.Group, BranchModel, str]] = []
        self.tag_snapshots: dict[str, str] = {}
        self.verified: set[tuple[str, tuple]] = set()
        return "main"

    def _branch(self, data) -> str:
        return data.draw(st.sampled_from(sorted(self.branches)), label="branch")

    def _model(self, ref: str) -> BranchModel:
        return self.branches[ref] if ref in self.branches else self.tags[ref]

    def _state(self, branch: str):
        return self.repo.branches(), self.repo.tags(), [c.id for c in self.repo.log(branch)]

    @rule(data=st.data(), n=st.integers(1, 5), chunk=st.sampled_from([1, 2, 3]),
          align=st.sampled_from([None, True, False]))
    def append(self, data, n, chunk, align):
        branch = self._branch(data)
        names = [f"S{next(self.counter)}" for _ in range(n)]
        result = self.repo.append(_batch(names, chunk), branch=branch, align=align)
        self.branches[branch].append_batch(names, chunk, align, result.snapshot_id)

    @rule(data=st.data())
    def remove(self, data):
        branch = self._branch(data)
        live = self.branches[branch].live
        assume(live)
        names = data.draw(st.lists(st.sampled_from(live), min_size=1, max_size=3, unique=True), label="remove")
        result = self.repo.remove(names, branch=branch)
        self.branches[branch].remove(names, result.snapshot_id)

    @rule(data=st.data(), op=st.sampled_from(["append", "remove"]),
          at=st.one_of(st.none(), st.integers(0, 12)), chunk=st.sampled_from([1, 2, 3]))
    def failing_operation(self, data, op, at, chunk):
        branch = self._branch(data)
        model = self.branches[branch]
        assume(op == "append" or model.live)
        before = self._state(branch)
        names = [f"F{next(self.counter)}", f"F{next(self.counter)}"] if op == "append" else model.live[:1]
        with fault_after(at):
            try:
                if op == "append":
                    result = self.repo.append(_batch(names, chunk), branch=branch)
                else:
                    result = self.repo.remove(names, branch=branch)
            except InjectedFault as e:
                note(f"injected: {e}")
                assert self._state(branch) == before
                return
        assert at is not None  # fewer chunk tasks than the injection point: it completed
        if op == "append":
            model.append_batch(names, chunk, None, result.snapshot_id)
        else:
            model.remove(names, result.snapshot_id)

    @rule(target=refs, data=st.data())
    def tag(self, data):
        branch = self._branch(data)
        name = f"t{next(self.counter)}"
        self.tag_snapshots[name] = self.repo.create_tag(name, branch)
        self.tags[name] = self.branches[branch].copy()
        return name

    @rule(target=refs, source=refs)
    def branch(self, source):
        name = f"b{next(self.counter)}"
        self.repo.create_branch(name, source)
        self.branches[name] = self._model(source).copy()
        return name

    @rule(source=refs, data=st.data())
    def promote(self, source, data):
        into = self._branch(data)
        src, dst = self._model(source), self.branches[into]
        before = self._state(into)
        if src.ops[: len(dst.ops)] == dst.ops and len(src.ops) > len(dst.ops):
            move = history.promote(self.repo, source, into)
            assert move.mode == "fast-forward"
            self.branches[into] = src.copy()
        elif dst.ops[: len(src.ops)] == src.ops:
            assert history.promote(self.repo, source, into).mode == "up-to-date"
        else:
            with pytest.raises(vczrepo.RefError, match="cannot fast-forward"):
                history.promote(self.repo, source, into)
            assert self._state(into) == before

    @rule(to=refs, data=st.data())
    def reset(self, to, data):
        branch = self._branch(data)
        history.reset(self.repo, branch, to, expect=self.repo.resolve(branch))
        self.branches[branch] = self._model(to).copy()

    @rule(data=st.data())
    def revert(self, data):
        branch = self._branch(data)
        model = self.branches[branch]
        candidates = [op for op in model.ops if op.kind in ("append", "remove") and "" not in op.names]
        assume(candidates)
        op = data.draw(st.sampled_from(candidates), label="revert")
        before = self._state(branch)
        if op.kind == "append":
            ok = all(n in model.live for n in op.names)
        else:
            ok = all(model.columns[c] is None for c in op.columns) and not set(op.names) & set(model.live)
        if not ok:
            with pytest.raises(vczrepo.SampleError):
                history.revert(self.repo, op.snapshot, branch=branch)
            assert self._state(branch) == before
            return
        result = history.revert(self.repo, op.snapshot, branch=branch)
        if op.kind == "append":
            model.remove(list(op.names), result.snapshot_id, "revert")
        else:
            model.restore(op.names, op.columns, result.snapshot_id)

    @rule(data=st.data())
    def purge(self, data):
        models = list(itertools.chain(self.branches.values(), self.tags.values()))
        held = sorted({c for m in models for c in m.columns if c})
        assume(held)
        name = data.draw(st.sampled_from(held), label="purge")
        plan = purge.purge(self.repo, [name])
        for model in models:
            model.columns = [None if c == name else c for c in model.columns]
            model.ops = [Op(op.kind, tuple("" if n == name else n for n in op.names), op.columns,
                            plan.rewritten.get(op.snapshot, op.snapshot)) for op in model.ops]
        self.tag_snapshots = {t: plan.rewritten.get(sid, sid) for t, sid in self.tag_snapshots.items()}

    @rule()
    def gc(self):
        gc.gc(self.repo, dt.timedelta(0), safe_margin=dt.timedelta(0))
        reachable = {sid for ref in itertools.chain(self.branches, self.tags)
                     for sid in self.repo.ancestry_ids(self.repo.resolve(ref))}
        self.readers = [(root, model, sid) for root, model, sid in self.readers if sid in reachable]

    @rule(source=refs)
    def open_reader(self, source):
        root, model = self.repo.group(source), self._model(source).copy()
        self._assert_reads(root, model)
        self.readers.append((root, model, self.repo.resolve(source)))

    def _assert_reads(self, root: zarr.Group, model: BranchModel) -> None:
        stored = [str(s) for s in root["sample_id"][:]]
        assert stored == [c or "" for c in model.columns]
        with vcztools.VczReader(root) as reader:
            assert [str(s) for s in reader.sample_ids] == model.live
            if model.live:
                gts = np.concatenate([c["call_genotype"] for c in reader.variant_chunks(fields=["call_genotype"])])
                expected = np.stack([_genotypes(s) for s in model.live], axis=1)
                np.testing.assert_array_equal(gts, expected)
        nulls = [i for i, c in enumerate(model.columns) if c is None]
        if nulls:
            assert (root["call_genotype"][:, nulls] == -1).all()

    def _verify(self, name: str, model: BranchModel) -> None:
        """Full read-back of a ref; a snapshot already verified against this model is immutable."""
        sid = self.repo.resolve(name)
        key = (sid, tuple(model.columns))
        if key not in self.verified:
            self._assert_reads(self.repo.group(sid), model)
            self.verified.add(key)

    @invariant()
    def heads_and_tags_equal_model(self):
        for name, model in itertools.chain(self.branches.items(), self.tags.items()):
            self._verify(name, model)
        for name, sid in self.tag_snapshots.items():
            assert self.repo.resolve(name) == sid

    @invariant()
    def open_readers_keep_their_snapshot(self):
        for root, model, _ in self.readers:
            assert [str(s) for s in root["sample_id"][:]] == [c or "" for c in model.columns]

    @invariant()
    def log_lists_exactly_the_successful_operations(self):
        for name, model in self.branches.items():
            commits = [c for c in self.repo.log(name) if c.op != "root"][::-1]
            assert [c.id for c in commits] == [op.snapshot for op in model.ops]
            assert [c.op for c in commits] == [op.kind for op in model.ops]

    def teardown(self):
        for root, model, _ in getattr(self, "readers", []):
            self._assert_reads(root, model)


TestRepositoryMachine = RepositoryMachine.TestCase
