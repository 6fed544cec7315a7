"""normalise: put batches from different genotyping panels on one variant set.

A variant is identified by contig, position, REF and its set of ALT alleles. `union`
gives the sorted union of several VCZs' variants (what `init --variants-from` stores);
`normalise` maps a batch onto a repository's variants: variants the batch lacks become
missing calls, ALT alleles in another order are remapped in the genotypes, and the
batch's variants the repository lacks are an error (or, with new ALT alleles at an
existing site, are added to that site's alleles when allowed).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from .. import chunks, schema, widen
from ..errors import IncompatibleBatchError, listing
from ..sources import Source, open_source, open_vcz

Site = tuple[str, int, str]  # contig, position, REF


@dataclass
class Variants:
    """A variant table: contigs in order, and per variant its site and ALT alleles."""

    contigs: list[str]
    sites: list[Site]
    alts: list[list[str]]

    @classmethod
    def read(cls, group: zarr.Group) -> Variants:
        contigs = schema.as_str(schema.array(group, "contig_id")[:]).tolist()
        contig = np.asarray(schema.array(group, "variant_contig")[:])
        pos = np.asarray(schema.array(group, "variant_position")[:])
        alleles = [schema.alleles_present(row)
                   for row in schema.as_str(schema.array(group, "variant_allele")[:]).tolist()]
        sites = [(contigs[c], int(p), a[0]) for c, p, a in zip(contig, pos, alleles, strict=True)]
        return cls(contigs, sites, [a[1:] for a in alleles])

    def label(self, i: int) -> str:
        c, p, ref = self.sites[i]
        return f"{c}:{p} {ref}>{','.join(self.alts[i]) or '.'}"


def union(tables: list[Variants]) -> Variants:
    """Sorted union (contig order of first appearance, then position, REF, ALTs) of variant tables."""
    contigs: list[str] = []
    for t in tables:
        contigs += [c for c in t.contigs if c not in contigs]
    seen: dict[tuple, list[str]] = {}
    for t in tables:
        for site, alts in zip(t.sites, t.alts, strict=True):
            seen.setdefault((*site, tuple(sorted(alts))), alts)
    keys = sorted(seen, key=lambda k: (contigs.index(k[0]), k[1], k[2], k[3]))
    return Variants(contigs, [k[:3] for k in keys], [list(seen[k]) for k in keys])


@dataclass
class Mapping:
    """Where each batch variant goes in the repository, and how its allele indexes change."""

    target: np.ndarray  # repository variant index per batch variant
    alleles: list[np.ndarray]  # per batch variant: batch allele index -> repository allele index
    new_alts: dict[int, list[str]]  # repository variant index -> ALT alleles to add

    @property
    def identity(self) -> bool:
        return all(np.array_equal(a, np.arange(len(a))) for a in self.alleles)


def map_variants(store: Variants, batch: Variants, allow_new_alleles: bool) -> Mapping:
    # contigs the batch's header merely declares (no variant on them) do not matter
    used = list(dict.fromkeys(site[0] for site in batch.sites))
    missing = [c for c in used if c not in store.contigs]
    if missing:
        raise IncompatibleBatchError(f"batch variants on contigs not in the repository: {listing(missing)}")
    by_site: dict[Site, list[int]] = {}
    for i, site in enumerate(store.sites):
        by_site.setdefault(site, []).append(i)
    new_alts: dict[int, list[str]] = {}
    target, alleles, unmatched = [], [], []
    for j, (site, alts) in enumerate(zip(batch.sites, batch.alts, strict=True)):
        candidates = by_site.get(site, [])
        exact = [i for i in candidates if set(store.alts[i]) == set(alts)]
        covering = [i for i in candidates if set(alts) <= set(store.alts[i])]
        choice = exact or covering
        if len(choice) != 1 and not (allow_new_alleles and len(candidates) == 1):
            unmatched.append(batch.label(j))
            continue
        i = choice[0] if len(choice) == 1 else candidates[0]
        extra = [a for a in alts if a not in store.alts[i] + new_alts.get(i, [])]
        if extra:
            new_alts.setdefault(i, []).extend(extra)
        known = [site[2], *store.alts[i], *new_alts.get(i, [])]
        target.append(i)
        alleles.append(np.array([known.index(a) for a in [site[2], *alts]]))
    if unmatched:
        shown = "; ".join(unmatched[:5]) + (f"; … ({len(unmatched)} in all)" if len(unmatched) > 5 else "")
        hint = "" if allow_new_alleles else " (--allow-new-alleles adds new ALT alleles at existing sites)"
        raise IncompatibleBatchError(f"batch variants not in the repository: {shown}{hint}")
    if len(set(target)) != len(target):
        raise IncompatibleBatchError("several batch variants map to one repository variant")
    return Mapping(np.array(target, dtype=np.int64), alleles, new_alts)


def _remap_genotypes(values: np.ndarray, lookup: np.ndarray) -> np.ndarray:
    """Allele indexes through per-variant lookup tables; negative (missing/fill) values are kept."""
    out = values.copy()
    for v in range(values.shape[0]):
        row = values[v]
        ok = row >= 0
        out[v][ok] = schema.exact_cast(lookup[v][row[ok]], out.dtype, "call_genotype")
    return out


def add_alleles(root: zarr.Group, new_alts: dict) -> None:
    """Append new ALT alleles to repository sites (keys: variant indexes); existing allele indexes stay valid."""
    if not new_alts:
        return
    new_alts = {int(k): v for k, v in new_alts.items()}
    array = schema.array(root, "variant_allele")
    current = schema.as_str(array.oindex[np.array(sorted(new_alts)), :])
    widths = [len([a for a in row if a]) + len(new_alts[i]) for i, row in zip(sorted(new_alts), current.tolist(),
                                                                                strict=True)]
    schema.widen(array, max(widths), "")
    for i in sorted(new_alts):
        row = schema.alleles_present(schema.as_str(array[i, :]).tolist()) + new_alts[i]
        array[i, :] = np.array(row + [""] * (array.shape[1] - len(row)), dtype=object)


def normalise(batch: zarr.Group, store: zarr.Group, out: str | os.PathLike, *, allow_new_alleles: bool = False,
              pipe: chunks.Pipeline | None = None) -> dict:
    """Write `batch` mapped onto `store`'s variants (plus any new ALT alleles) as a VCZ at `out`.

    Returns a summary: the new ALT alleles by repository variant index, how many repository
    variants the batch lacked, and how many variants had their alleles remapped.
    """
    pipe = pipe or chunks.Pipeline()
    mapping = map_variants(Variants.read(store), Variants.read(batch), allow_new_alleles)
    n_store = schema.array(store, "variant_position").shape[0]
    inverse = np.full(n_store, -1, dtype=np.int64)
    inverse[mapping.target] = np.arange(len(mapping.target))
    lookup = np.full((len(mapping.alleles), max((len(a) for a in mapping.alleles), default=1)), -1, dtype=np.int64)
    for j, a in enumerate(mapping.alleles):
        lookup[j, : len(a)] = a
    dst = zarr.open_group(str(out), mode="w-", zarr_format=3)
    dst.attrs.update(dict(store.attrs))
    vchunk = schema.array(store, "variant_position").chunks[0]
    for name, src in schema.arrays(store).items():
        if schema.sample_axis(src) is None:
            pipe.copy_array(src, schema.create_like(dst, name, src))
    add_alleles(dst, mapping.new_alts)
    for name, src in schema.sample_arrays(batch).items():
        if name == "sample_id":
            pipe.copy_array(src, schema.create_like(dst, name, src))
            continue
        if schema.allele_axes(src) and not mapping.identity:
            raise IncompatibleBatchError(f"field {name}: per-allele values cannot be remapped yet")
        if "genotypes" in schema.dims(src) and not mapping.identity:
            raise IncompatibleBatchError(f"field {name}: per-genotype values cannot be remapped")
        shape = (n_store, *src.shape[1:])
        out_arr = schema.create_like(dst, name, src, shape=shape, chunks=(vchunk, *src.chunks[1:]))
        missing, writer = schema.absent_call(name, src), pipe.writer(out_arr)

        def one(block: slice, src=src, name=name, missing=missing, writer=writer) -> None:
            rows = inverse[block]
            values = np.full((len(rows), *src.shape[1:]), missing, dtype=src.dtype)
            present = rows >= 0
            if present.any():
                got = np.asarray(src.oindex[rows[present]])
                if name == "call_genotype":
                    got = _remap_genotypes(got, lookup[rows[present]])
                values[present] = got
            writer[block] = values

        pipe.run_bounded(one, schema.variant_blocks(store), "recompose", desc=name)
    return {"new_alleles": {str(k): v for k, v in mapping.new_alts.items()},  # JSON keys, for the journal
            "n_variants_missing_from_batch": int((inverse < 0).sum()),
            "n_alleles_remapped": sum(not np.array_equal(a, np.arange(len(a))) for a in mapping.alleles)}


def _missing_like(dtype: np.dtype):
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return schema.FLOAT32_MISSING if dtype == np.float32 else np.nan
    if dtype.kind == "b":
        return False
    if dtype.kind in "iu":
        return -1
    return "."


def _is_missing(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values)
    if values.dtype.kind == "f":
        return np.isnan(values)
    if values.dtype.kind in "iu":
        return values < 0
    if values.dtype.kind == "b":
        return ~values
    return np.isin(schema.as_str(values), [".", ""])


SUMMED_INFO = ("DP", "DP4")  # bcftools merge's default --info-rules DP:sum,DP4:sum


@dataclass
class _Panel:
    group: zarr.Group
    variants: Variants
    rows: dict  # variant key -> row


def _key(site: Site, alts: list[str]) -> tuple:
    return (*site, tuple(sorted(alts)))


def _panel_rows(variants: Variants, panels: list[zarr.Group]) -> tuple[list[_Panel], list[list[tuple[int, int]]]]:
    """Per union variant: the (panel, row) pairs holding it, in panel order."""
    out = []
    for g in panels:
        v = Variants.read(g)
        out.append(_Panel(g, v, {_key(s, a): r for r, (s, a) in enumerate(zip(v.sites, v.alts, strict=True))}))
    holders = []
    for site, alts in zip(variants.sites, variants.alts, strict=True):
        k = _key(site, alts)
        holders.append([(p, panel.rows[k]) for p, panel in enumerate(out) if k in panel.rows])
    return out, holders


def write_sites(variants: Variants, like: zarr.Group, out: str | Path, panels: list[zarr.Group] | None = None) -> None:
    """A zero-sample VCZ holding `variants`, with `like`'s call fields (empty) and chunking.

    With `panels` (the VCZs the union was made from, in order), each variant keeps what
    `bcftools merge -m none` keeps of the records that hold it:

    - ID: the distinct non-missing IDs of the panels holding it, joined with ";" in panel order;
    - QUAL: the largest non-missing QUAL;
    - FILTER: the union of the panels' non-PASS filters; PASS when every panel that has a
      filter says PASS; none when no panel has one (filter ids: union, first seen first);
    - variant_length (END): the first panel's;
    - INFO DP and DP4: summed over the panels that have a value (bcftools' default rules);
    - INFO flags: set when any panel sets them;
    - INFO fields that are functions of the genotypes (summaries.MAINTAINED: AC, AN, NS,
      AC_Het, AC_Hom, AC_Hemi, AF, MAF, F_MISSING): the values for no samples (counts 0,
      frequencies missing), so that appends add their samples' counts and the result equals
      bcftools' recomputed AC/AN over the merged samples;
    - other INFO fields: the first panel's non-missing value; per-allele (Number=A/R)
      values follow the alleles to the union's allele order;
    - contigs: union in order of first appearance, each with the first panel's length.
    """
    from ..summaries import LINEAR, MAINTAINED

    n = len(variants.sites)
    vchunk = schema.array(like, "variant_position").chunks[0]
    dst = zarr.open_group(str(out), mode="w-", zarr_format=3)
    dst.attrs.update({k: v for k, v in like.attrs.items() if k in ("vcf_zarr_version", "vcf_meta_information")})
    width = 1 + max((len(a) for a in variants.alts), default=0)
    alleles = np.array([[s[2], *a] + [""] * (width - 1 - len(a)) for s, a in zip(variants.sites, variants.alts,
                                                                                 strict=True)], dtype=object)
    contig = np.array([variants.contigs.index(s[0]) for s in variants.sites], dtype=np.int32)
    pos = np.array([s[1] for s in variants.sites], dtype=np.int32)
    panels = panels or []
    infos, holders = _panel_rows(variants, panels)
    values = {name: [np.asarray(schema.array(p.group, name)[:]) if name in p.group else None for p in infos]
              for name in ("variant_length", "variant_id", "variant_quality", "variant_filter")}
    length = np.array([len(s[2]) for s in variants.sites], dtype=np.int32)
    ids = np.full(n, ".", dtype=object)
    qual = np.broadcast_to(schema.FLOAT32_MISSING, (n,)).copy()
    filters = list(schema.as_str(schema.array(like, "filter_id")[:])) if "filter_id" in like else ["PASS"]
    descriptions = dict(zip(filters, schema.as_str(schema.array(like, "filter_description")[:]).tolist(),
                            strict=True)) if "filter_description" in like else {}
    panel_filters = []
    for p in infos:
        names = schema.as_str(schema.array(p.group, "filter_id")[:]).tolist() if "filter_id" in p.group else []
        desc = schema.as_str(schema.array(p.group, "filter_description")[:]).tolist() \
            if "filter_description" in p.group else [""] * len(names)
        for f, d in zip(names, desc, strict=True):
            if f not in filters:
                filters.append(f)
            descriptions.setdefault(f, d)
        panel_filters.append(names)
    filter_rows = np.zeros((n, len(filters)), dtype=bool)
    for i, hold in enumerate(holders):
        if not hold:
            continue
        p0, r0 = hold[0]
        first_length = values["variant_length"][p0]
        if first_length is not None:
            length[i] = first_length[r0]
        seen_ids = []
        for j, r in hold:
            id_values = values["variant_id"][j]
            if id_values is not None:
                for x in str(schema.as_str(id_values[r:r + 1])[0]).split(";"):
                    if x not in (".", "") and x not in seen_ids:
                        seen_ids.append(x)
            q = values["variant_quality"][j]
            if q is not None and not np.isnan(q[r]) and (np.isnan(qual[i]) or q[r] > qual[i]):
                qual[i] = q[r]
        ids[i] = ";".join(seen_ids) or "."
        on = set()
        for j, r in hold:
            filter_values = values["variant_filter"][j]
            if filter_values is not None:
                on |= {panel_filters[j][k] for k in np.flatnonzero(filter_values[r])}
        if on - {"PASS"}:
            on -= {"PASS"}
        for f in on:
            filter_rows[i, filters.index(f)] = True

    def put(name, data, dim_names, dtype=None, chunk=None):
        data = np.asarray(data, dtype=dtype)
        a = dst.create_array(name, shape=data.shape, dtype=str if data.dtype == object else data.dtype,
                             chunks=chunk or data.shape or (1,), dimension_names=dim_names)
        if data.size:
            a[...] = data

    vc = max(1, min(vchunk, n))
    put("contig_id", np.array(variants.contigs, dtype=object), ["contigs"])
    lengths: dict[str, int] = {}
    for p in infos:
        if "contig_length" in p.group:
            contig_lengths = np.asarray(schema.array(p.group, "contig_length")[:]).tolist()
            for c, contig_len in zip(p.variants.contigs, contig_lengths, strict=True):
                lengths.setdefault(c, contig_len)
    if lengths or "contig_length" in like:
        put("contig_length", np.array([lengths.get(c, -1) for c in variants.contigs], dtype=np.int64), ["contigs"])
    put("variant_contig", contig, ["variants"], chunk=(vc,))
    put("variant_position", pos, ["variants"], chunk=(vc,))
    put("variant_length", length, ["variants"], chunk=(vc,))
    put("variant_allele", alleles.reshape(n, width), ["variants", "alleles"], chunk=(vc, width))
    put("variant_id", ids, ["variants"], chunk=(vc,))
    put("variant_id_mask", ids == ".", ["variants"], chunk=(vc,))
    put("variant_quality", qual, ["variants"], chunk=(vc,))
    put("filter_id", np.array(filters, dtype=object), ["filters"])
    if descriptions:
        put("filter_description", np.array([descriptions.get(f, "") for f in filters], dtype=object), ["filters"])
    put("variant_filter", filter_rows, ["variants", "filters"], chunk=(vc, len(filters)))
    put("region_index", schema.exact_cast(schema.region_rows(contig, pos, length, vc, 0), np.int32, "region_index"),
        ["region_index_values", "region_index_fields"])
    _write_info(dst, variants, infos, holders, vc, width, LINEAR, MAINTAINED)
    for name, src in schema.sample_arrays(like).items():
        axis = schema.sample_axis(src)
        shape = tuple(0 if i == axis else (n if i == 0 and name != "sample_id" else s)
                      for i, s in enumerate(src.shape))
        chunk = tuple(vc if i == 0 and name != "sample_id" else c for i, c in enumerate(src.chunks))
        schema.create_like(dst, name, src, shape=shape, chunks=chunk)


RECORD = {"variant_contig", "variant_position", "variant_length", "variant_allele", "variant_id",
          "variant_id_mask", "variant_quality", "variant_filter"}


def _write_info(dst, variants: Variants, infos: list[_Panel], holders, vc: int, width: int, linear, maintained):
    """INFO arrays of the union, combined from the panels by the rules in write_sites."""
    n = len(variants.sites)
    n_alt = np.array([len(a) for a in variants.alts], dtype=np.int64)
    names = []
    for p in infos:
        names += [k for k in sorted(p.group.array_keys()) if k.startswith("variant_") and k not in RECORD
                  and k not in names]
    for name in names:
        tag = name[len("variant_"):]
        first = next(schema.array(p.group, name) for p in infos if name in p.group)
        dim_names = schema.dims(first)
        per_allele = len(dim_names) > 1 and dim_names[1] in schema.ALLELE_DIMS
        offset = 1 if per_allele and dim_names[1] == "alt_alleles" else 0
        trailing = list(first.shape[1:])
        if per_allele:
            trailing[0] = width - offset
        else:
            for p in infos:
                if name in p.group:
                    trailing = [max(a, b) for a, b in zip(trailing, schema.array(p.group, name).shape[1:], strict=True)]
        dtype = np.dtype(first.dtype) if np.dtype(first.dtype).kind not in "OUST" else np.dtype(object)
        if dtype.kind in "iu":  # combined (DP summed) in int64, stored in the narrowest type that holds it
            dtype = np.dtype(np.int64)
        out = np.empty((n, *trailing), dtype=dtype)
        out[...] = _missing_like(dtype) if dtype != np.dtype(object) else "."
        if per_allele:  # padding beyond each variant's alleles
            k = np.arange(trailing[0])[None, :] >= (n_alt + 1 - offset)[:, None]
            out[k] = schema.fill_like(dtype)
        data = [np.asarray(schema.array(p.group, name)[:]) if name in p.group else None for p in infos]
        if tag in maintained:
            if tag in linear:
                base = np.zeros((n, *trailing), dtype=dtype)
                if per_allele:
                    base[k] = schema.fill_like(dtype)
                out = base
            # frequencies stay missing: no samples yet
        else:
            for i, hold in enumerate(holders):
                for p, r in hold:
                    if data[p] is None:
                        continue
                    v = data[p][r]
                    if per_allele:
                        panel_alleles = [infos[p].variants.sites[r][2], *infos[p].variants.alts[r]]
                        union_alleles = [variants.sites[i][2], *variants.alts[i]]
                        mapped = np.array(out[i], copy=True)
                        for j, allele in enumerate(panel_alleles[offset:]):
                            if j < len(v):
                                mapped[union_alleles.index(allele) - offset] = v[j]
                        v = mapped
                    v = np.asarray(v)
                    if tag in SUMMED_INFO and v.dtype.kind in "iuf":
                        cur = np.asarray(out[i])
                        ok = ~_is_missing(v)
                        out[i] = np.where(ok, np.where(_is_missing(cur), 0, cur) + v, cur)
                    elif dtype.kind == "b":
                        out[i] = out[i] | v
                    elif _is_missing(np.asarray(out[i]).reshape(-1)).all():
                        if v.ndim == 0 or v.shape == np.shape(out[i]):
                            out[i] = v
                        else:
                            out[i][tuple(slice(0, s) for s in v.shape)] = v
        arr = schema.create_like(dst, name, first, shape=out.shape, chunks=(vc, *out.shape[1:]))
        if dtype.kind in "iu":
            held = widen.narrowest_int(int(out.min(initial=0)), int(out.max(initial=0)), np.dtype(first.dtype))
            if held != np.dtype(arr.dtype):
                widen.retype(chunks.Pipeline(), dst, name, dtype=held)
                arr = schema.array(dst, name)
        if out.size:
            arr[...] = schema.stored_as(out, arr)


@contextlib.contextmanager
def union_source(paths: Sequence[str | os.PathLike]) -> Iterator[Source]:
    """A zero-sample VCZ (in a temporary directory) of the sorted union of several VCZs' variants."""
    with contextlib.ExitStack() as stack:
        sources = [stack.enter_context(open_source(p)) for p in paths]
        variants = union([Variants.read(s.group) for s in sources])
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vczrepo-union-")))
        write_sites(variants, sources[0].group, tmp / "union.vcz",
                    panels=[s.group for s in sources])  # per-variant data as bcftools merge keeps it
        digest = hashlib.sha256("".join(s.sha256 for s in sources).encode()).hexdigest()
        yield Source(open_vcz(tmp / "union.vcz"), " + ".join(s.path for s in sources), "union",
                     sum(s.size for s in sources), digest, str(tmp / "union.vcz"))
