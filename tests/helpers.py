"""Assertions' building blocks: read back through vcztools, snapshot a repository's refs."""

from __future__ import annotations

import contextlib
import io

import vcztools

import vczrepo


def vcf_body(source, samples: list[str] | None = None) -> str:
    """VCF text vcztools writes for a VCZ path or zarr group, without ## header lines."""
    root = source if hasattr(source, "arrays") else vcztools.open_zarr(str(source))
    out = io.StringIO()
    with vcztools.VczReader(root) as reader:
        if samples:
            reader.set_samples(samples)
        vcztools.write_vcf(reader, out)
    return "".join(line + "\n" for line in out.getvalue().splitlines() if not line.startswith("##"))


def without_info(vcf: str) -> str:
    """VCF text with the INFO column blanked (vcztools recomputes AC/AN for sample subsets)."""
    rows = [line.split("\t") for line in vcf.splitlines()]
    return "\n".join("\t".join(r[:7] + r[8:]) for r in rows) + "\n"


def vcztools_samples(source) -> list[str]:
    root = source if hasattr(source, "arrays") else vcztools.open_zarr(str(source))
    with vcztools.VczReader(root) as reader:
        return [str(s) for s in reader.sample_ids]


def state(repo_path) -> tuple[dict, dict, list[str]]:
    """Everything a failed operation must leave unchanged: branch heads, tags, history."""
    repo = vczrepo.Repository.open(repo_path)
    return repo.branches(), repo.tags(), [c.id for c in repo.log()]


VCF_COLUMNS = ["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT"]


def indexed_vcf(tmp, name: str, header: str, samples: list[str], records: list[str]):
    """`tmp/name.vcf.gz`, bgzipped and indexed by bcftools, from a header, sample names and data lines."""
    import subprocess

    raw = tmp / f"{name}.vcf"
    raw.write_text(header + "\t".join(VCF_COLUMNS + samples) + "\n" + "\n".join(records) + "\n")
    out = tmp / f"{name}.vcf.gz"
    subprocess.run(["bcftools", "view", "-Oz", "-o", str(out), str(raw)], check=True)
    subprocess.run(["bcftools", "index", "-f", str(out)], check=True)
    return out


def converted(vcf, variants_chunk_size: int, samples_chunk_size: int):
    """The bio2zarr conversion of `x.vcf.gz` beside it, as `x.vcz` (made once)."""
    from bio2zarr import vcf as b2z_vcf

    out = vcf.parent / vcf.name.replace(".vcf.gz", ".vcz")
    if not out.exists():
        b2z_vcf.convert([str(vcf)], str(out), variants_chunk_size=variants_chunk_size,
                        samples_chunk_size=samples_chunk_size, zarr_format=3)
    return out


def damage_array_metadata(path, name: str) -> None:
    """Commit an array metadata document that icechunk accepts and zarr cannot read."""
    import json

    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    session = vczrepo.Repository.open(path).icechunk.writable_session("main")
    proto = default_buffer_prototype()
    doc = json.loads(sync(session.store.get(f"{name}/zarr.json", proto)).to_bytes())
    doc["data_type"] = "no_such_type"
    sync(session.store.set(f"{name}/zarr.json", proto.buffer.from_bytes(json.dumps(doc).encode())))
    session.commit("damaged metadata", metadata={})


def narrowed(value, dtype) -> str | None:
    """Why writing `value` into an array of `dtype` stores something else (None if it does not):
    an integer that wraps, a fraction or NaN cast to an integer, a float that overflows, a
    float32 NaN that is neither VCZ's missing (0x7F800001) nor fill (0x7F800002) value."""
    import numpy as np

    value, dtype = np.asarray(value), np.dtype(dtype)
    if value.dtype.kind in "OTUSV" or dtype.kind in "OTUSV":
        return None
    with np.errstate(all="ignore"):
        stored = value.astype(dtype)
        if dtype.kind != "f":
            bad = stored.astype(value.dtype) != value
        else:
            wide = value.astype(np.float64)
            bad = (np.isfinite(wide) != np.isfinite(stored)) | (np.isnan(wide) != np.isnan(stored))
            bad |= np.isfinite(wide) & (np.abs(stored - wide) > np.abs(wide) * 2.0 ** -23)
            if dtype == np.float32:
                bits = stored.view(np.int32)
                bad |= np.isnan(stored) & (bits != 0x7F800001) & (bits != 0x7F800002)
    if not np.any(bad):
        return None
    i = np.unravel_index(int(np.flatnonzero(bad)[0]), np.shape(bad)) if np.ndim(bad) else ()
    shown = hex(int(stored[i].view(np.int32))) if dtype == np.float32 else stored[i].item()
    return f"{value[i].item()!r} ({value.dtype}) stored in {dtype} as {shown}"


@contextlib.contextmanager
def narrowing_guard():
    """Record every zarr write (all of zarr's setitem paths end in `zarr.core.array._set_selection`)
    whose values the array's dtype does not hold unchanged; yields the list of problems."""
    import zarr.core.array as zarr_array

    problems: list[str] = []
    real = zarr_array._set_selection

    async def guarded(store_path, metadata, *args, **kwargs):
        value = args[4] if len(args) > 4 else kwargs["value"]  # (codec_pipeline, config, chunk_grid, indexer, value)
        problem = narrowed(value, metadata.dtype.to_native_dtype())
        if problem:
            problems.append(f"{store_path.path}: {problem}")
        return await real(store_path, metadata, *args, **kwargs)

    zarr_array._set_selection = guarded
    try:
        yield problems
    finally:
        zarr_array._set_selection = real
