"""revert: a new commit undoing one append (removes its samples), one remove (restores
the samples' columns from the snapshot before it) or the last extend (removes its variants)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import schema
from ..errors import RefError
from .remove import remove_samples
from .restore import restore_samples

if TYPE_CHECKING:
    from ..repository import CommitResult, Repository


def revert(repo: Repository, commit: str, branch: str, message: str | None = None) -> CommitResult:
    """Undo the append or remove `commit` (in the history of `branch`) as a new commit on it."""
    sid = repo.resolve(commit)
    head = repo._require_branch(branch)
    if sid not in repo.ancestry_ids(head):
        raise RefError(f"{commit} is not in the history of {branch}")
    done = repo.log(sid, limit=1)[0]
    m = done.metadata
    if done.op == "append":
        names = [s for s in repo.samples_added(sid) if s != schema.NULL_SAMPLE]
        return repo._commit(
            branch, "revert", message or f"revert {sid}: remove {len(names)} appended sample(s)",
            lambda root: {"reverts": sid, **remove_samples(repo.pipe, root, names,
                                                           lambda n: repo._was_removed(branch, n))})
    if done.op == "remove":
        earlier = repo.group(done.parent or "")
        return repo._commit(
            branch, "revert", message or f"revert {sid}: restore {len(m['samples_removed'])} sample(s)",
            lambda root: {"reverts": sid, **restore_samples(repo.pipe, root, earlier, m["samples_removed"],
                                                            m["sample_indexes_removed"])},
        )
    if done.op == "extend":
        from .extend import shrink_variants

        start, stop = m["variant_range"]
        reverted: set[str] = set()  # extends already undone, newest first: a revert precedes its extend
        for later in repo.log(head):
            if later.id == sid:
                break
            if "variant_range_removed" in later.metadata:
                if later.metadata["reverts"] == sid:
                    raise RefError(f"extend {sid} was reverted already ({later.id})")
                reverted.add(later.metadata["reverts"])
            elif later.op == "extend" and later.id not in reverted:
                raise RefError(f"cannot revert extend {sid}: extend {later.id} came after it; "
                                   f"revert the later extends first")
        return repo._commit(
            branch, "revert", message or f"revert {sid}: remove {stop - start} extended variant(s)",
            lambda root: {"reverts": sid, **shrink_variants(repo.pipe, root, start, stop, m["contigs_added"])})
    if done.op == "init":
        raise RefError(f"cannot revert {sid}: it is the init commit, which made the repository "
                       "(to withdraw its samples, `remove` them)")
    raise RefError(f"cannot revert {sid}: a {done.op} commit; only append, remove and extend commits can be reverted")
