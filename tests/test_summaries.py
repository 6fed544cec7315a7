"""Per-variant summaries stay true: bcftools +fill-tags on the current samples is the reference."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import zarr
from helpers import vcf_body

import vczrepo
from vczrepo import summaries

pytestmark = pytest.mark.skipif(shutil.which("bcftools") is None,
                                reason="bcftools not installed (apt-get install bcftools tabix)")

TAGS = "AC,AN,AF,NS,AC_Het,AC_Hom,AC_Hemi,MAF,F_MISSING"
SAMPLES = [f"S{i:02d}" for i in range(12)]


def real_shaped_vcf(path: Path, seed: int = 0, n_variants: int = 40) -> Path:
    """Multi-allelic sites (1-3 ALTs), missing and mixed-missing genotypes ("./.", "0/."),
    haploid calls next to diploid ones on chrX, a site INFO field (DP) that cannot be maintained."""
    rng = np.random.default_rng(seed)
    lines = ["##fileformat=VCFv4.3", "##contig=<ID=chr20,length=100000>", "##contig=<ID=chrX,length=100000>",
             '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
             '##INFO=<ID=DP,Number=1,Type=Integer,Description="Total depth">',
             "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT", *SAMPLES])]

    def call(n_alt: int, ploidy: int) -> str:
        if rng.random() < 0.08:
            return "/".join(["."] * ploidy)
        alleles = [str(rng.integers(0, n_alt + 1)) if rng.random() > 0.1 else "." for _ in range(ploidy)]
        if all(a == "." for a in alleles):
            alleles[0] = "0"
        return "/".join(alleles)

    for i in range(n_variants):
        chrom = "chr20" if i < n_variants * 5 // 8 else "chrX"
        n_alt = [1, 1, 2, 3][i % 4]
        calls = [call(n_alt, 1 if chrom == "chrX" and j % 3 == 0 else 2) for j in range(len(SAMPLES))]
        lines.append("\t".join([chrom, str(100 + 10 * i), f"rs{i}", "A", ",".join("CGT"[:n_alt]), "50", "PASS",
                                f"DP={rng.integers(10, 99)}", "GT", *calls]))
    raw = path.with_suffix(".raw.vcf")
    raw.write_text("\n".join(lines) + "\n")
    return bcf(["view", "-Oz", "-o", str(path), str(raw)], path)


def bcf(args: list[str], out: Path | None = None) -> Path | str:
    res = subprocess.run(["bcftools", *args], check=True, capture_output=True, text=True)
    if out is not None:
        subprocess.run(["bcftools", "index", "-f", str(out)], check=True)
        return out
    return res.stdout


def fill_tags(src: Path, out: Path, samples: list[str] | None = None, exclude: list[str] | None = None) -> Path:
    """bcftools view -s (its own INFO counts only its samples) | +fill-tags."""
    sel = []
    if samples:
        sel = ["-s", ",".join(samples)]
    elif exclude:
        sel = ["-s", "^" + ",".join(exclude)]
    tmp = out.with_suffix(".sub.vcf.gz")
    bcf(["view", *sel, "-Oz", "-o", str(tmp), str(src)], tmp)
    return bcf(["+fill-tags", str(tmp), "-Oz", "-o", str(out), "--", "-t", TAGS], out)


def to_vcz(vcf: Path, out: Path, samples_chunk_size: int = 4) -> zarr.Group:
    from bio2zarr import vcf as b2z_vcf

    b2z_vcf.convert([str(vcf)], str(out), samples_chunk_size=samples_chunk_size, variants_chunk_size=16,
                    zarr_format=3)
    return zarr.open_group(str(out), mode="r+")


def info_of(text: str) -> list[dict]:
    rows = [line.split("\t") for line in text.splitlines() if line and not line.startswith("#")]
    return [dict(kv.split("=", 1) if "=" in kv else (kv, "") for kv in r[7].split(";")) for r in rows]


def assert_same_summaries(got: list[dict], want: list[dict], fields=summaries.MAINTAINED) -> None:
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        for f in fields:
            assert (f in g) == (f in w), (i, f, g, w)
            if f not in w:
                continue
            gv, wv = g[f].split(","), w[f].split(",")
            assert len(gv) == len(wv), (i, f, g[f], w[f])
            assert gv == wv, (i, f, g[f], w[f])


def reference(vcf: Path) -> str:
    """vcztools' output for a whole-file conversion of bcftools' output (vcztools prints
    floats with 3 decimals, so the comparison is vcztools against vcztools on bcftools' values)."""
    out = vcf.parent / (vcf.name.removesuffix(".vcf.gz") + "-ref.vcz")
    body = vcf_body(zarr.open_group(str(out), mode="r") if out.exists() else to_vcz(vcf, out))
    raw = info_of(bcf(["view", "-H", str(vcf)]))
    got = info_of(body)
    for g, r in zip(got, raw, strict=True):  # the integer counts are printed alike by both tools
        assert {f: g[f] for f in summaries.LINEAR if f in g} == {f: r[f] for f in summaries.LINEAR if f in r}
    return body


@pytest.fixture
def panel(tmp_path) -> Path:
    return real_shaped_vcf(tmp_path / "whole.vcf.gz")


def test_count_genotypes_follows_fill_tags_rules():
    # one variant, REF + 2 ALTs: 0/1 het, 1/1 hom, "1" haploid (hemi), "0/." mixed (hemi),
    # "./." nothing, "2/2/2"-like triploid hom counts 2, "0/1/1" counts allele 1 once
    gt = np.array([[[0, 1, -2], [1, 1, -2], [1, -2, -2], [0, -1, -2], [-1, -1, -2], [2, 2, 2], [0, 1, 1]]])
    c = summaries.count_genotypes(gt, 3)
    assert c.het.tolist() == [[2, 2, 0]]
    assert c.hom.tolist() == [[0, 2, 2]]
    assert c.hemi.tolist() == [[1, 1, 0]]
    assert c.ns.tolist() == [6]
    assert c.missing.tolist() == [2]
    assert c.alleles.sum() == 10  # AN


def test_append_then_remove_equals_fill_tags(tmp_path, panel):
    from vczrepo.chunks import Pipeline
    from vczrepo.ops.append import grow_and_copy
    from vczrepo.ops.remove import null_columns

    first, second = SAMPLES[:7], SAMPLES[7:]
    root = to_vcz(fill_tags(panel, tmp_path / "a.vcf.gz", samples=first), tmp_path / "repo.vcz")
    batch = to_vcz(fill_tags(panel, tmp_path / "b.vcf.gz", samples=second), tmp_path / "b.vcz")
    assert set(summaries.maintained_fields(root)) == set(summaries.MAINTAINED)
    assert summaries.stale_fields(root) == ["DP"]

    # append: the batch's columns are written first, then their contributions are added
    grow_and_copy(Pipeline(), root, batch, 7, 12)
    result = summaries.update_summaries(root, added=range(7, 12))
    assert result["stale"] == ["DP"]
    assert set(result["updated"]) == set(summaries.MAINTAINED)
    want = fill_tags(panel, tmp_path / "whole-tags.vcf.gz")
    assert_same_summaries(info_of(vcf_body(root)), info_of(reference(want)))

    # remove: contributions subtracted while the columns still hold data, then nulled
    gone = ["S02", "S09", "S10"]
    cols = [SAMPLES.index(s) for s in gone]
    summaries.update_summaries(root, removed=cols)
    null_columns(Pipeline(), root, cols)
    want = fill_tags(panel, tmp_path / "rest.vcf.gz", exclude=gone)
    assert_same_summaries(info_of(vcf_body(root)), info_of(reference(want)))

    # re-consent: a removed sample comes back as a new column
    back = to_vcz(fill_tags(panel, tmp_path / "s09.vcf.gz", samples=["S09"]), tmp_path / "s09.vcz")
    grow_and_copy(Pipeline(), root, back, 12, 13)
    summaries.update_summaries(root, added=[12])
    want = fill_tags(panel, tmp_path / "rest2.vcf.gz", exclude=["S02", "S10"])
    # bcftools' column order differs (S09 in place); summaries do not depend on order
    assert_same_summaries(info_of(vcf_body(root)), info_of(reference(want)))

    # null columns do not count, removing nothing live changes nothing
    before = vcf_body(root)
    summaries.update_summaries(root, removed=cols[:1])
    assert vcf_body(root) == before

    # recompute from scratch agrees with the incremental result
    summaries.recompute(root)
    assert_same_summaries(info_of(vcf_body(root)), info_of(reference(want)))


def test_af_without_ac_an_keeps_hidden_counts(tmp_path, panel):
    from vczrepo.chunks import Pipeline
    from vczrepo.ops.remove import null_columns

    root = to_vcz(fill_tags(panel, tmp_path / "w.vcf.gz"), tmp_path / "repo.vcz")
    for f in ("AC", "AN"):
        del root[f"variant_{f}"]
    gone = ["S00", "S05"]
    cols = [SAMPLES.index(s) for s in gone]
    summaries.update_summaries(root, removed=cols)
    null_columns(Pipeline(), root, cols)
    assert summaries.HIDDEN_COUNTS in root
    want = fill_tags(panel, tmp_path / "rest.vcf.gz", exclude=gone)
    body = vcf_body(root)
    assert "vczrepo" not in body  # the hidden counts are never emitted
    assert_same_summaries(info_of(body), info_of(reference(want)),
                          fields=("AF", "MAF", "NS", "AC_Het", "AC_Hom", "AC_Hemi", "F_MISSING"))
    # a second change uses the hidden counts incrementally
    summaries.update_summaries(root, removed=[1])
    null_columns(Pipeline(), root, [1])
    want = fill_tags(panel, tmp_path / "rest2.vcf.gz", exclude=[*gone, "S01"])
    assert_same_summaries(info_of(vcf_body(root)), info_of(reference(want)), fields=("AF", "MAF"))


def test_drop_stale(tmp_path, panel):
    root = to_vcz(fill_tags(panel, tmp_path / "w.vcf.gz"), tmp_path / "repo.vcz")
    assert summaries.drop_stale(root) == ["DP"]
    assert "variant_DP" not in root
    assert summaries.stale_fields(root) == []
    assert "DP=" not in vcf_body(root)


def test_open_dataset_statistics_equal_whole_file_without_removed(tmp_path, panel):
    """sgkit-like statistics (xarray) on a repository with removed samples equal those on a
    whole-file conversion of the VCF without them."""
    import vczrepo

    xr = pytest.importorskip("xarray")
    gone = ["S01", "S07"]
    repo, _ = vczrepo.Repository.init(tmp_path / "r", to_vcz_path(panel, tmp_path / "whole.vcz"))
    repo.remove(gone)
    rest = bcf(["view", "-s", "^" + ",".join(gone), "-Oz", "-o", str(tmp_path / "rest.vcf.gz"), str(panel)],
               tmp_path / "rest.vcf.gz")
    want = xr.open_zarr(str(to_vcz_path(rest, tmp_path / "rest.vcz")), consolidated=False)
    got = vczrepo.open_dataset(tmp_path / "r")
    assert list(got.sample_id.values) == list(want.sample_id.values)

    def stats(ds):
        gt = ds.call_genotype
        called = (gt >= 0).any("ploidy")
        return {
            "variant_call_rate": called.mean("samples").values,  # sgkit: fraction of samples called
            "sample_call_rate": called.mean("variants").values,
            "variant_n_called_alleles": (gt >= 0).sum(["samples", "ploidy"]).values,
            "variant_n_het": ((gt.max("ploidy") != gt.where(gt >= 0).min("ploidy")) & (gt >= 0).all("ploidy"))
            .sum("samples").values,
        }

    for key, value in stats(want).items():
        np.testing.assert_array_equal(stats(got)[key], value, err_msg=key)
    assert stats(vczrepo.open_dataset(tmp_path / "r", keep_null_samples=True))["variant_call_rate"].max() < 1
    assert repo.check("main").ok


def to_vcz_path(vcf: Path, out: Path) -> Path:
    to_vcz(vcf, out)
    return out


def test_repository_operations_keep_summaries_true(tmp_path, panel):
    """append, remove, revert and purge (wired to update_summaries) against bcftools +fill-tags."""
    import datetime as dt

    import vczrepo
    from vczrepo.ops.gc import gc as collect

    first, second = SAMPLES[:5], SAMPLES[5:]
    a = to_vcz_path(fill_tags(panel, tmp_path / "a.vcf.gz", samples=first), tmp_path / "a.vcz")
    b = to_vcz_path(fill_tags(panel, tmp_path / "b.vcf.gz", samples=second), tmp_path / "b.vcz")
    repo, _ = vczrepo.Repository.init(tmp_path / "r", a)
    appended = repo.append(b)
    assert appended.metadata.get("summaries_updated")
    whole = fill_tags(panel, tmp_path / "whole-tags.vcf.gz")
    assert_same_summaries(info_of(vcf_body(repo.group("main"))), info_of(reference(whole)))

    removed = repo.remove(["S03", "S08"])
    rest = fill_tags(panel, tmp_path / "rest.vcf.gz", exclude=["S03", "S08"])
    assert_same_summaries(info_of(vcf_body(repo.group("main"))), info_of(reference(rest)))

    repo.revert(removed.snapshot_id)  # restores S03 and S08
    assert_same_summaries(info_of(vcf_body(repo.group("main"))), info_of(reference(whole)))

    repo.remove(["S11"])
    repo.purge(["S11"])  # every commit since S11's append is rewritten without it
    collect(repo, dt.timedelta(0), safe_margin=dt.timedelta(0))
    without = fill_tags(panel, tmp_path / "without.vcf.gz", exclude=["S11"])
    assert_same_summaries(info_of(vcf_body(repo.group("main"))), info_of(reference(without)))
    # the rewritten append commit's summaries count the other samples only
    first_append = [c for c in repo.log() if c.op == "append"][0]
    rest_b = fill_tags(panel, tmp_path / "nos11.vcf.gz", exclude=["S11"])
    assert_same_summaries(info_of(vcf_body(repo.group(first_append.id))), info_of(reference(rest_b)))
    assert repo.check("main").ok


def test_frequencies_where_no_sample_has_a_call_are_missing(tmp_path, panel):
    """Removing every sample called at a site leaves AN = 0 there: AF and MAF are missing, stored
    as VCZ's missing value (0x7F800001: vcztools reads it as missing, not as nan), as bcftools
    +fill-tags writes them."""
    import vczrepo

    whole = fill_tags(panel, tmp_path / "w.vcf.gz")
    repo, _ = vczrepo.Repository.init(tmp_path / "r", to_vcz_path(whole, tmp_path / "w.vcz"))
    gt = np.asarray(repo.group()["call_genotype"][:])
    called = (gt >= 0).any(-1)
    site = int(np.argmin(called.sum(1)))
    gone = [SAMPLES[j] for j in np.flatnonzero(called[site])]
    repo.remove(gone)
    got, want = info_of(vcf_body(repo.group())), info_of(reference(fill_tags(panel, tmp_path / "r.vcf.gz",
                                                                            exclude=gone)))
    assert got[site]["AN"] == "0"
    assert "AF" not in got[site]  # all missing: vcztools leaves them out (a nan it would print)
    assert "MAF" not in got[site]
    assert_same_summaries(got, want)
    stored = np.asarray(repo.group()["variant_AF"][site]).reshape(-1).view(np.int32)
    assert set(stored.tolist()) <= {0x7F800001, 0x7F800002}
    assert 0x7F800001 in stored


def test_new_alleles_widen_per_allele_fields(tmp_path, panel):
    """append --normalise --allow-new-alleles adds an ALT at a site: AC/AF/… grow, and the
    incremental result equals a recomputation from all genotypes (itself checked against bcftools)."""
    import vczrepo

    base = tmp_path / "base.vcf.gz"
    bcf(["view", "-s", ",".join(SAMPLES[:6]), "-i", "N_ALT==1", "-Oz", "-o", str(base), str(panel)], base)
    repo, _ = vczrepo.Repository.init(tmp_path / "r", to_vcz_path(fill_tags(base, tmp_path / "bt.vcf.gz"),
                                                                   tmp_path / "base.vcz"))
    width = repo.group("main")["variant_AC"].shape[1]
    # the same sites, with a second ALT at the first one: its samples carry it
    other = tmp_path / "other.vcf.gz"
    bcf(["view", "-s", ",".join(SAMPLES[6:]), "-i", "N_ALT==1", "-Oz", "-o", str(other), str(panel)], other)
    text = bcf(["view", str(other)])
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if not line.startswith("#"))
    row = lines[first].split("\t")
    row[4] = row[4] + ",TTT"
    row[9:] = ["2/2", "0/2", *row[11:]]
    lines[first] = "\t".join(row)
    raw = tmp_path / "other2.vcf"
    raw.write_text("\n".join(lines) + "\n")
    other2 = tmp_path / "other2.vcf.gz"
    bcf(["view", "-Oz", "-o", str(other2), str(raw)], other2)
    repo.append(to_vcz_path(fill_tags(other2, tmp_path / "ot.vcf.gz"), tmp_path / "other.vcz"),
                normalise=True, allow_new_alleles=True)
    root = repo.group("main")
    assert root["variant_AC"].shape[1] == max(width, 2)
    got = info_of(vcf_body(root))
    assert got[0]["AC"].count(",") == 1
    assert got[0]["AF"].count(",") == 1
    copy = tmp_path / "copy.vcz"
    repo.checkout(copy, "main")
    summaries.recompute(zarr.open_group(str(copy), mode="r+"))
    assert_same_summaries(got, info_of(vcf_body(zarr.open_group(str(copy)))))


def test_fields_not_true_of_the_samples_are_stale_and_left_alone(tmp_path, panel):
    """INFO counted on another cohort (`bcftools view -s … -I` keeps the whole file's AC/AN):
    verification at the first change marks them stale; they are never rewritten."""
    from vczrepo.chunks import Pipeline
    from vczrepo.ops.remove import null_columns

    whole = fill_tags(panel, tmp_path / "w.vcf.gz")
    sub = tmp_path / "sub.vcf.gz"
    bcf(["view", "-I", "-s", ",".join(SAMPLES[:7]), "-Oz", "-o", str(sub), str(whole)], sub)
    root = to_vcz(sub, tmp_path / "repo.vcz")
    before = vcf_body(root)
    result = summaries.update_summaries(root, removed=[0])
    null_columns(Pipeline(), root, [0])
    assert result["updated"] == []
    assert set(summaries.MAINTAINED) <= set(result["stale"])
    assert "DP" in result["stale"]
    assert summaries.maintained_fields(root) == []
    assert [r[7] for r in (line.split("\t") for line in vcf_body(root).splitlines()[1:])] == \
        [r[7] for r in (line.split("\t") for line in before.splitlines()[1:])]
    # an explicit recomputation makes them true again, and maintained from then on
    summaries.recompute(root)
    assert summaries.maintained_fields(root) == list(summaries.MAINTAINED)
    want = fill_tags(panel, tmp_path / "rest.vcf.gz", samples=SAMPLES[1:7])
    assert_same_summaries(info_of(vcf_body(root)), info_of(reference(want)))


def test_grow_variants_keeps_summaries_true(tmp_path, panel):
    """A second wave with sites the first lacks, appended with --grow-variants: the maintained
    fields equal +fill-tags on `bcftools merge -m none` of the waves (missing where a wave lacks a site)."""
    first, second = SAMPLES[:7], SAMPLES[7:]
    rows = [line.split("\t") for line in bcf(["view", "-H", str(panel)]).splitlines()]
    lacking = tmp_path / "lacking.tsv"  # every third site is not in the first wave
    lacking.write_text("".join(f"{r[0]}\t{r[1]}\n" for i, r in enumerate(rows) if i % 3 == 0))
    wave_a = bcf(["view", "-s", ",".join(first), "-T", f"^{lacking}", "-Oz", "-o", str(tmp_path / "a0.vcf.gz"),
                  str(panel)], tmp_path / "a0.vcf.gz")
    wave_a = bcf(["+fill-tags", str(wave_a), "-Oz", "-o", str(tmp_path / "a.vcf.gz"), "--", "-t", TAGS],
                 tmp_path / "a.vcf.gz")
    wave_b = fill_tags(panel, tmp_path / "b.vcf.gz", samples=second)
    repo, _ = vczrepo.Repository.init(tmp_path / "r", to_vcz_path(wave_a, tmp_path / "a.vcz"))
    result = repo.append(to_vcz_path(wave_b, tmp_path / "b.vcz"), grow_variants=True)
    assert result.metadata["variants_grown"]["n_variants_inserted"] == len(rows[::3])
    assert set(result.metadata["summaries_updated"]) == set(summaries.MAINTAINED)
    merged = bcf(["merge", "-m", "none", "-Oz", "-o", str(tmp_path / "m0.vcf.gz"), str(wave_a), str(wave_b)],
                 tmp_path / "m0.vcf.gz")
    want = bcf(["+fill-tags", str(merged), "-Oz", "-o", str(tmp_path / "m.vcf.gz"), "--", "-t", TAGS],
               tmp_path / "m.vcf.gz")
    assert_same_summaries(info_of(vcf_body(repo.group())), info_of(reference(want)))
