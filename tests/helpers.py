"""Assertions' building blocks: read back through vcztools, snapshot a repository's refs."""

from __future__ import annotations

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
