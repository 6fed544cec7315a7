"""Per-variant summaries that stay true as samples come and go.

INFO fields that are functions of the genotypes are updated incrementally when an
operation adds or withdraws sample columns: the contributions of the columns that change
are added to or subtracted from integer counts, so the cost grows with the batch, not
with the store. Definitions follow `bcftools +fill-tags` (plugins/fill-tags.c, default
options, no --drop-missing) applied to the repository's current (live) samples:

Per sample and variant, the alleles before the first fill value (-2, ploidy padding) are
the sample's ploidy; missing alleles (-1) are skipped.

- a sample with no called allele contributes nothing (not to NS, AN or any AC);
- otherwise NS += 1; the *distinct* called alleles are the sample's allele set;
- one distinct allele: homozygous; if the sample has one called allele, or some allele
  missing (mixed "0/."), it is hemizygous: each allele of the set gets AC_Hemi += 1,
  else (e.g. "1/1") AC_Hom += 2;
- several distinct alleles: heterozygous, each allele of the set gets AC_Het += 1
  (per distinct allele: a triploid 0/1/1 counts allele 1 once, like bcftools);
- per allele count = het + hom + hemi; AC = counts of the ALT alleles (Number=A),
  AN = sum over all alleles including REF (Number=1);
- AF = AC / AN (missing when AN = 0), MAF = the second largest allele frequency over all
  alleles including REF (missing when AN = 0);
- F_MISSING = samples whose genotype has a missing allele / number of samples.

Linear fields (AC, AN, NS, AC_Het, AC_Hom, AC_Hemi) are updated in place: new = old +
contributions(added) - contributions(removed). Derived fields are recomputed per variant
chunk from counts: AF and MAF from AC and AN when the repository stores both (REF count =
AN - sum(AC)); F_MISSING from round(F_MISSING * n_samples_before) (exact in float32 for
fewer than ~8 million samples). A repository that stores AF or MAF without both AC and AN
cannot be updated from its own fields: its allele counts are computed once from all live
genotypes into the hidden array `vczrepo_allele_counts` (variants x alleles, no
`variant_` prefix so vcztools never emits it) and kept incrementally from then on.

Which fields are maintained is decided once, at the first change of the sample set (or
by `verify` at init): a field is maintained only if its stored values equal the values
computed from the repository's genotypes then (e.g. written by `bcftools +fill-tags`, or
by a caller on exactly these samples). A field that disagrees — hand-written, computed on
another cohort, missing at some sites — is stale and left as it is. The decision is kept
in the root group attribute `vczrepo_summaries` ({"maintained": [...], "stale": [...]}).

Fields that are not functions of the genotypes of the current samples (site DP sums,
QUAL, VQSLOD, MQ, …) cannot be maintained: `stale_fields` lists them and `drop_stale`
deletes them.

Null columns (sample id "", removed or padding) never count. Call `update_summaries`
inside an operation's writable session with `added` columns already written and
`removed` columns not yet nulled.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import zarr

from . import chunks, schema, widen

LINEAR = ("AC", "AN", "NS", "AC_Het", "AC_Hom", "AC_Hemi")
DERIVED = ("AF", "MAF", "F_MISSING")
MAINTAINED = LINEAR + DERIVED
HIDDEN_COUNTS = "vczrepo_allele_counts"
# INFO keys the VCF specification reserves for facts about the site, not the samples or reads
SITE_ANNOTATIONS = {"AA", "CIGAR", "DB", "END", "H2", "H3", "SOMATIC", "VALIDATED", "1000G",
                    "SVTYPE", "SVLEN", "CIPOS", "CIEND", "IMPRECISE"}
# per-variant fields vcztools reads as the record itself, never INFO
RECORD_FIELDS = {"variant_contig", "variant_position", "variant_length", "variant_allele", "variant_id",
                 "variant_id_mask", "variant_quality", "variant_filter"}
INT_FILL = schema.INT_FILL
FLOAT_FILL = schema.FLOAT32_FILL[()]


@dataclass
class Counts:
    """Genotype counts of some samples over a block of variants."""

    het: np.ndarray  # (variants, alleles)
    hom: np.ndarray
    hemi: np.ndarray
    ns: np.ndarray  # (variants,) samples with a called allele
    missing: np.ndarray  # (variants,) samples with a missing allele (F_MISSING's numerator)
    n_samples: int  # samples counted

    @property
    def alleles(self) -> np.ndarray:
        return self.het + self.hom + self.hemi

    @classmethod
    def zeros(cls, n_variants: int, n_alleles: int) -> Counts:
        z = np.zeros((n_variants, n_alleles), dtype=np.int64)
        return cls(z, z.copy(), z.copy(), np.zeros(n_variants, np.int64), np.zeros(n_variants, np.int64), 0)

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.het + other.het, self.hom + other.hom, self.hemi + other.hemi, self.ns + other.ns,
                      self.missing + other.missing, self.n_samples + other.n_samples)


def count_genotypes(gt: np.ndarray, n_alleles: int) -> Counts:
    """Counts (as bcftools +fill-tags) of a genotype block (variants x samples x ploidy)."""
    gt = np.asarray(gt)
    n_variants, n_samples = gt.shape[:2]
    called = gt >= 0
    ploidy = (gt != INT_FILL).sum(-1)
    nals = called.sum(-1)
    has_call = nals > 0
    # per allele: does the sample carry it (distinct alleles), without a (v, s, alleles) array
    nbits = np.zeros((n_variants, n_samples), dtype=np.int16)
    for a in range(n_alleles):
        nbits += (gt == a).any(-1)
    hom = has_call & (nbits == 1)
    hemi = (nals != ploidy) | (nals == 1)
    het = has_call & ~hom
    hom_full = hom & ~hemi
    hom_hemi = hom & hemi
    out = Counts.zeros(n_variants, n_alleles)
    for a in range(n_alleles):
        present = (gt == a).any(-1)
        out.het[:, a] = (present & het).sum(1)
        out.hom[:, a] = 2 * (present & hom_full).sum(1)
        out.hemi[:, a] = (present & hom_hemi).sum(1)
    out.ns = has_call.sum(1).astype(np.int64)
    out.missing = (gt == schema.INT_MISSING).any(-1).sum(1).astype(np.int64)
    out.n_samples = n_samples
    return out


def _live(root: zarr.Group, columns: Iterable[int]) -> np.ndarray:
    columns = np.asarray(sorted(set(int(c) for c in columns)), dtype=np.int64)
    if not len(columns):
        return columns
    ids = schema.as_str(schema.array(root, "sample_id").oindex[columns])
    return columns[ids != schema.NULL_SAMPLE]


def contributions(root: zarr.Group, columns: Iterable[int], block: slice) -> Counts:
    """Counts of the live samples among `columns` over the variants in `block`."""
    n_alleles = int(schema.array(root, "variant_allele").shape[1])
    live = _live(root, columns)
    out = Counts.zeros(block.stop - block.start, n_alleles)
    if not len(live):
        return out
    gt_array = schema.array(root, "call_genotype")
    step = int(gt_array.chunks[1])
    for i in range(0, len(live), step):
        cols = live[i:i + step]
        out = out + count_genotypes(np.asarray(gt_array.oindex[block, cols]), n_alleles)
    return out


def info_fields(root: zarr.Group) -> dict[str, zarr.Array]:
    """The repository's INFO arrays by VCF name."""
    return {name[len("variant_"):]: a for name, a in schema.arrays(root).items()
            if name.startswith("variant_") and name not in RECORD_FIELDS}


def maintained_fields(root: zarr.Group) -> list[str]:
    """INFO fields this module keeps true: as decided (see `decide`), else the candidates
    (those of MAINTAINED the repository has)."""
    if "call_genotype" not in root:
        return []
    state = summary_state(root)
    return [f for f in MAINTAINED if f in info_fields(root) and (state is None or f in state["maintained"])]


def stale_fields(root: zarr.Group) -> list[str]:
    """INFO fields that cannot be maintained as the sample set changes (site DP, QUAL-like
    scores, annotations computed from reads or from samples no longer there). Annotations of
    the site itself (SITE_ANNOTATIONS: ancestral allele, dbSNP membership, END, …) stay true
    whatever the samples, so they are never stale."""
    state = summary_state(root)
    keep = (set(state["maintained"]) if state else set(MAINTAINED)) | SITE_ANNOTATIONS
    return sorted(f for f in info_fields(root) if f not in keep)


def drop_stale(root: zarr.Group, fields: Sequence[str] | None = None) -> list[str]:
    """Delete stale INFO arrays (all of `stale_fields` by default); returns the names dropped."""
    fields = stale_fields(root) if fields is None else list(fields)
    for f in fields:
        del root[f"variant_{f}"]
    state = summary_state(root)
    if state:
        root.attrs[ATTR] = {**state, "stale": [f for f in state["stale"] if f not in fields]}
    return fields


def _n_live(root: zarr.Group) -> int:
    return int((schema.sample_ids(root) != schema.NULL_SAMPLE).sum())


def _alt_width(array: zarr.Array) -> int:
    return int(array.shape[1]) if array.ndim > 1 else 1


def _needs_hidden(fields: dict) -> bool:
    return bool({"AF", "MAF"} & set(fields)) and not {"AC", "AN"} <= set(fields)


COUNT_DTYPE = np.dtype(np.int32)  # the narrowest type counts that grow with the cohort are held in


def count_dtype(root: zarr.Group, n_columns: int | None = None) -> np.dtype:
    """The integer type the maintained counts need: int32, or int64 once every sample column
    (null ones included; `n_columns` of them, by default those there now) times the ploidy
    could exceed int32 (the most AN, AC or NS can reach)."""
    gt = schema.array(root, "call_genotype")
    columns = int(gt.shape[1]) if n_columns is None else n_columns
    capacity = columns * max(2, int(gt.shape[2]) if gt.ndim > 2 else 1)
    return widen.narrowest_int(0, capacity, COUNT_DTYPE)


def _narrow_counts(root: zarr.Group, fields: Sequence[str], need: np.dtype) -> dict[str, np.dtype]:
    """The count arrays of `fields` (and the hidden allele counts) held narrower than `need`,
    with the type each is widened to."""
    names = [f"variant_{f}" for f in LINEAR if f in fields] + ([HIDDEN_COUNTS] if HIDDEN_COUNTS in root else [])
    out = {}
    for name in names:
        dtype = np.dtype(schema.array(root, name).dtype)
        if dtype.kind in "iu" and np.promote_types(dtype, need) != dtype:
            out[name] = np.promote_types(dtype, need)
    return out


def widen_counts(pipe: chunks.Pipeline, root: zarr.Group, fields: dict[str, zarr.Array]) -> list[dict]:
    """Rewrite the maintained counts (and the hidden allele counts) held in a type narrower than
    `count_dtype` (bio2zarr stores AN=110 as int8), so that no later count wraps; `fields` is
    updated with the rewritten arrays. Returns the journal's record of each rewrite."""
    done = []
    for name, dtype in _narrow_counts(root, list(fields), count_dtype(root)).items():
        done.append(widen.retype(pipe, root, name, dtype=dtype).to_json())
        field = name.removeprefix("variant_")
        if field in fields:
            fields[field] = schema.array(root, name)
    return done


def planned_count_widening(root: zarr.Group, n_columns: int) -> list[widen.Widening]:
    """What the next change of the sample set would widen of the counts (nothing written), once
    the repository has `n_columns` sample columns: the maintained counts, or before the first
    change (when which fields are maintained is decided) every count field present."""
    if "call_genotype" not in root:
        return []
    state = summary_state(root)
    fields = state["maintained"] if state else list(info_fields(root))
    return [widen.plan(root, name, dtype=dtype)
            for name, dtype in _narrow_counts(root, fields, count_dtype(root, n_columns)).items()]


def init_hidden_counts(root: zarr.Group) -> zarr.Array:
    """Compute every variant's allele counts over all live samples (once) into HIDDEN_COUNTS."""
    from zarr.codecs import ZstdCodec

    from .checksums import with_checksum_codec

    n_variants, n_alleles = schema.array(root, "variant_allele").shape
    vchunk = int(schema.array(root, "variant_position").chunks[0])
    arr = root.create_array(HIDDEN_COUNTS, shape=(n_variants, n_alleles), dtype=count_dtype(root),
                            chunks=(vchunk, n_alleles), fill_value=0, dimension_names=["variants", "alleles"],
                            compressors=with_checksum_codec([ZstdCodec(level=0)]))
    live = np.flatnonzero(schema.sample_ids(root) != schema.NULL_SAMPLE)
    for block in schema.variant_blocks(root):
        arr[block] = schema.stored_as(contributions(root, live, block).alleles, arr)
    return arr


def stored(values: np.ndarray, array: zarr.Array) -> np.ndarray:
    """Computed values as `array` stores them: counts exactly, frequencies with VCZ's missing NaN."""
    return schema.stored_floats(values, array) if np.dtype(array.dtype).kind == "f" else schema.stored_as(values, array)


def _write(array: zarr.Array, block: slice, values: np.ndarray, n_alt: np.ndarray) -> None:
    """Write a maintained field over a block of variants. Number=A fields: the first n_alt
    values of each row, the rest (padding) left as they are."""
    if array.ndim == 1 and values.ndim == 1:
        array[block] = stored(values, array)
        return
    current = np.array(array[block])
    width = current.shape[1] if current.ndim > 1 else 1
    values = values.reshape(len(n_alt), -1)[:, :width]
    if current.ndim == 1:
        current = current[:, None]
    mask = np.arange(width)[None, :] < n_alt[:, None]
    current[mask] = stored(values, array)[mask]
    array[block] = current if array.ndim > 1 else current[:, 0]


ATTR = "vczrepo_summaries"
FLOAT_TOLERANCE = 1e-5  # VCF text keeps ~6 significant digits of a float


def _n_alt(root: zarr.Group, block: slice) -> np.ndarray:
    alleles = schema.as_str(schema.array(root, "variant_allele")[block])
    return np.maximum((alleles != "").sum(1) - 1, 0)


def expected_values(counts: Counts, n_alt: np.ndarray, n_samples: int) -> dict[str, np.ndarray]:
    """Every maintained field's values (as bcftools +fill-tags writes them) from full counts."""
    alleles = counts.alleles
    an = alleles.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        freq = alleles / np.maximum(an, 1)[:, None]
    valid = np.arange(alleles.shape[1])[None, :] <= n_alt[:, None]
    ordered = -np.sort(-np.where(valid, freq, -1), axis=1)
    maf = ordered[:, 1] if ordered.shape[1] > 1 else np.full(len(an), np.nan)
    return {
        "AC": alleles[:, 1:], "AN": an, "NS": counts.ns,
        "AC_Het": counts.het[:, 1:], "AC_Hom": counts.hom[:, 1:], "AC_Hemi": counts.hemi[:, 1:],
        "AF": np.where(an[:, None] > 0, freq[:, 1:], np.nan),
        "MAF": np.where((an > 0) & (n_alt > 0), maf, np.nan),
        "F_MISSING": counts.missing / n_samples if n_samples else np.full(len(an), np.nan),
    }


def values_without_calls(root: zarr.Group, n_alt: np.ndarray) -> dict[str, np.ndarray]:
    """Every maintained field's values at sites where none of the live samples has a call
    (sites `append --grow-variants` inserts): counts 0, frequencies missing, F_MISSING 1."""
    n_live = _n_live(root)
    counts = Counts.zeros(len(n_alt), int(n_alt.max(initial=0)) + 1)
    counts.missing[:] = n_live
    return expected_values(counts, n_alt, n_live)


def _agrees(stored: np.ndarray, want: np.ndarray, n_alt: np.ndarray) -> bool:
    stored = np.asarray(stored)
    if stored.ndim == 1 and want.ndim == 2:
        stored = stored[:, None]
    if stored.ndim == 2:
        width = stored.shape[1]
        want = np.pad(want[:, :width], ((0, 0), (0, max(0, width - want.shape[1]))))
        mask = _amask(stored, n_alt)
    else:
        mask = np.ones(stored.shape, dtype=bool)
    if stored.dtype.kind == "f":
        s, w = stored.astype(np.float64)[mask], np.asarray(want, dtype=np.float64)[mask]
        same_missing = np.isnan(s) == np.isnan(w)
        close = np.isnan(s) | (np.abs(s - np.nan_to_num(w)) <= FLOAT_TOLERANCE * np.maximum(1, np.abs(s)))
        return bool((same_missing & close).all())
    return bool((stored[mask] == np.asarray(want)[mask]).all())


@np.errstate(invalid="ignore")  # NaN (missing) frequencies cast to stored values
def verify(root: zarr.Group, columns: Sequence[int] | None = None) -> list[str]:
    """The MAINTAINED fields whose stored values equal those computed from the genotypes of
    `columns` (default: all live samples). One pass over call_genotype."""
    fields = {f: a for f, a in info_fields(root).items() if f in MAINTAINED}
    if "call_genotype" not in root or not fields:
        return []
    live = _live(root, np.flatnonzero(schema.sample_ids(root) != schema.NULL_SAMPLE) if columns is None
                 else columns)
    ok = set(fields)
    for block in schema.variant_blocks(root):
        n_alt = _n_alt(root, block)
        want = expected_values(contributions(root, live, block), n_alt, len(live))
        for f in list(ok):
            if not _agrees(np.asarray(fields[f][block]), want[f], n_alt):
                ok.discard(f)
        if not ok:
            break
    return sorted(ok, key=MAINTAINED.index)


def summary_state(root: zarr.Group) -> dict | None:
    """{"maintained": [...], "stale": [...]} once decided, else None."""
    state = root.attrs.get(ATTR)
    return dict(cast("dict[str, Any]", state)) if state else None  # the JSON object vczrepo wrote


@np.errstate(invalid="ignore")  # NaN (missing) frequencies cast to stored values
def decide(root: zarr.Group, columns: Sequence[int] | None = None) -> dict:
    """Verify the maintained fields on `columns` (the current sample set) and record the result."""
    maintained = verify(root, columns)
    state = {"maintained": maintained,
             "stale": sorted(f for f in info_fields(root) if f not in maintained)}
    root.attrs[ATTR] = state
    return state


def update_summaries(root: zarr.Group, added: Sequence[int] = (), removed: Sequence[int] = (),
                     removed_from: zarr.Group | None = None, pipe: chunks.Pipeline | None = None) -> dict:
    """Make the maintained INFO fields true for the repository's new sample set.

    `added`: sample columns already written (their contributions are added);
    `removed`: sample columns still holding their data, about to be nulled (subtracted).
    `removed_from`: read the removed columns (ids and genotypes) from this group instead,
    whose live samples are the "before" sample set (purge rewriting a commit: the old commit).
    Counts held in a type narrower than `count_dtype` are widened first (`pipe` rewrites
    them), except in a purge's rewrite: the later commits it replays were written over the
    arrays as they were, and removing samples only lowers counts.
    Returns {"updated": [fields], "stale": [fields], "widened": [what was rewritten]} for the journal.
    """
    candidates = {f: a for f, a in info_fields(root).items() if f in MAINTAINED}
    unchanged: dict = {"updated": [], "stale": stale_fields(root) if "call_genotype" in root else [], "widened": []}
    if "call_genotype" not in root or not candidates or (not len(added) and not len(removed)):
        return unchanged
    state = summary_state(root)
    if state is None:  # first change of the sample set: which fields are true of the samples before it
        before = sorted(set(np.flatnonzero(schema.sample_ids(root) != schema.NULL_SAMPLE).tolist())
                        - set(_live(root, added).tolist()))
        state = decide(root, before if removed_from is None else None)
        unchanged["stale"] = stale_fields(root)
    fields = {f: a for f, a in candidates.items() if f in state["maintained"]}
    if not fields:
        return unchanged
    source = root if removed_from is None else removed_from
    added_live, removed_live = _live(root, added), _live(source, removed)
    if removed_from is None:
        n_now = _n_live(root)
        n_before, n_after = n_now - len(added_live), n_now - len(removed_live)
    else:
        n_before = _n_live(source)
        n_after = n_before + len(added_live) - len(removed_live)
    _widen(root, fields)
    widened = [] if removed_from is not None else widen_counts(pipe or chunks.Pipeline(), root, fields)
    hidden = schema.array(root, HIDDEN_COUNTS) if HIDDEN_COUNTS in root else None
    if hidden is None and _needs_hidden(fields):
        # counts before the change: computed over the samples live before it
        hidden = init_hidden_counts(root)
        for block in schema.variant_blocks(root):
            before_change = np.asarray(hidden[block], dtype=np.int64) - contributions(root, added_live, block).alleles
            hidden[block] = schema.stored_as(before_change, hidden)
    for block in schema.variant_blocks(root):
        plus, minus = contributions(root, added_live, block), contributions(source, removed_live, block)
        n_alt = _n_alt(root, block)
        delta_alleles = plus.alleles - minus.alleles
        new = {}
        for f, get in (("AC_Het", "het"), ("AC_Hom", "hom"), ("AC_Hemi", "hemi")):
            if f in fields:
                d = getattr(plus, get) - getattr(minus, get)
                new[f] = _old(fields[f], block, n_alt) + d[:, 1:]
        if "AC" in fields:
            new["AC"] = _old(fields["AC"], block, n_alt) + delta_alleles[:, 1:]
        if "AN" in fields:
            new["AN"] = np.asarray(fields["AN"][block], dtype=np.int64) + delta_alleles.sum(1)
        if "NS" in fields:
            new["NS"] = np.asarray(fields["NS"][block], dtype=np.int64) + plus.ns - minus.ns
        if hidden is not None:
            counts = np.asarray(hidden[block], dtype=np.int64) + delta_alleles[:, : hidden.shape[1]]
            hidden[block] = schema.stored_as(counts, hidden)
        elif {"AF", "MAF"} & set(fields):
            ac, an = new["AC"], new["AN"]
            counts = np.concatenate([(an - np.where(_amask(ac, n_alt), ac, 0).sum(1))[:, None], ac], axis=1)
        if {"AF", "MAF"} & set(fields):
            new.update(_frequencies(counts, n_alt))
        if "F_MISSING" in fields:
            old = np.asarray(fields["F_MISSING"][block], dtype=np.float64)
            nmiss = np.where(np.isnan(old), 0, np.rint(old * n_before)) + plus.missing - minus.missing
            new["F_MISSING"] = nmiss / n_after if n_after else np.full(len(nmiss), np.nan)
        for f, values in new.items():
            if f in fields:
                _write(fields[f], block, np.asarray(values), n_alt)
    return {"updated": sorted(fields), "stale": stale_fields(root), "widened": widened}


def journal_entry(result: dict) -> dict:
    """What an operation's journal entry records of `update_summaries`' result."""
    return {**({"summaries_updated": result["updated"]} if result["updated"] else {}),
            **({"summaries_widened": result["widened"]} if result["widened"] else {})}


def _frequencies(counts: np.ndarray, n_alt: np.ndarray) -> dict[str, np.ndarray]:
    """AF and MAF (float64, NaN where AN = 0) from per-allele counts (REF first)."""
    an = counts.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        freq = np.where(an[:, None] > 0, counts / np.maximum(an, 1)[:, None], np.nan)
    ordered = -np.sort(-np.where(np.arange(freq.shape[1])[None, :] <= n_alt[:, None], freq, -1), axis=1)
    maf = ordered[:, 1] if ordered.shape[1] > 1 else np.full(len(an), np.nan)
    return {"AF": freq[:, 1:], "MAF": np.where((an > 0) & (n_alt > 0), maf, np.nan)}


def _widen(root: zarr.Group, fields: dict[str, zarr.Array]) -> None:
    """Grow per-allele arrays to the repository's allele count (new ALT alleles added at a site,
    `append --allow-new-alleles`): new entries within a site's alleles count 0, the rest are padding."""
    n_variants, n_alleles = schema.array(root, "variant_allele").shape
    grow = {f: a for f, a in fields.items() if a.ndim == 2 and a.shape[1] < n_alleles - 1}
    if HIDDEN_COUNTS in root and schema.array(root, HIDDEN_COUNTS).shape[1] < n_alleles:
        schema.array(root, HIDDEN_COUNTS).resize((n_variants, n_alleles))  # fill value 0: no counts yet
    if not grow:
        return
    for array in grow.values():
        array.resize((n_variants, n_alleles - 1))
    for block in schema.variant_blocks(root):
        n_alt = _n_alt(root, block)
        for array in grow.values():
            values = np.array(array[block])
            pad = ~_amask(values, n_alt)
            values[pad] = FLOAT_FILL if values.dtype.kind == "f" else INT_FILL
            array[block] = values


def _amask(values: np.ndarray, n_alt: np.ndarray) -> np.ndarray:
    return np.arange(values.shape[1])[None, :] < n_alt[:, None]


def _old(array: zarr.Array, block: slice, n_alt: np.ndarray) -> np.ndarray:
    """A Number=A integer field's values as (variants, alt) int64, padding and missing as 0."""
    values = np.asarray(array[block], dtype=np.int64)
    if values.ndim == 1:
        values = values[:, None]
    return np.where(_amask(values, n_alt) & (values >= 0), values, 0)


def recompute(root: zarr.Group, pipe: chunks.Pipeline | None = None) -> dict:
    """Recompute the maintained fields from scratch over all live samples (reference/repair)."""
    fields = {f: a for f, a in info_fields(root).items() if f in MAINTAINED}
    live = np.flatnonzero(schema.sample_ids(root) != schema.NULL_SAMPLE)
    root.attrs[ATTR] = {"maintained": [f for f in MAINTAINED if f in fields],
                        "stale": sorted(f for f in info_fields(root) if f not in fields)}
    for block in schema.variant_blocks(root):
        n_alt = _n_alt(root, block)
        for f in (*LINEAR, "F_MISSING"):
            if f in fields:
                shape = (len(n_alt), _alt_width(fields[f])) if f.startswith("AC") else (len(n_alt),)
                _write(fields[f], block, np.zeros(shape, np.int64), n_alt)
    if HIDDEN_COUNTS in root:
        del root[HIDDEN_COUNTS]
    return update_summaries(root, added=live.tolist(), pipe=pipe)


def drop_null_samples(ds):
    """An xarray Dataset without its null sample columns (sample_id == ""): what
    `open_dataset(..., keep_null_samples=False)` returns, so analyses see live samples only."""
    live = schema.as_str(ds["sample_id"].values) != schema.NULL_SAMPLE
    # no null columns: the dataset as it is (a fancy index on samples costs every read a gather)
    return ds if live.all() else ds.isel(samples=np.flatnonzero(live))
