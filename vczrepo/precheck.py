"""What init, append and extend check from a VCF/BCF batch's header, before converting it.

Converting a batch with bio2zarr takes minutes to hours; a batch the repository cannot take
(a sample id twice, samples it already has, other contigs) is refused in moments instead.
Each check here is one the operation makes again on the converted batch (vczrepo.validate,
ops.extend), with the same one-line error, and only what the header proves is checked:
sample ids always, contigs only when the header declares them (bio2zarr otherwise takes
them from the index), and nothing about variants, which only the records hold.
"""

from __future__ import annotations

import os
from pathlib import Path

import zarr

from . import validate
from .sources import is_url, is_vcf
from .vcfheader import VcfHeader, read_header


def header_of(source: str | os.PathLike | zarr.Group) -> VcfHeader | None:
    """The header of a local VCF/BCF file; None for anything else (a VCZ, a zarr group, a URL,
    a path that does not exist: opening the source reports those)."""
    if isinstance(source, zarr.Group) or is_url(source) or not is_vcf(source) or not Path(source).is_file():
        return None
    return read_header(Path(source))


def before_init(header: VcfHeader) -> None:
    validate.check_sample_ids(header.samples)


def before_append(root: zarr.Group, header: VcfHeader, *, same_variants: bool) -> None:
    """The checks of validate.check_appendable that the header can make, in its order;
    `same_variants`: the batch must have the repository's variants (no normalise, no growth)."""
    validate.check_new_samples(root, validate.check_sample_ids(header.samples))
    if same_variants and header.contigs is not None:
        validate.check_same_contigs(root, header.contigs)


def before_extend(root: zarr.Group, header: VcfHeader) -> None:
    from .ops.extend import sample_columns

    validate.check_sample_ids(header.samples)
    sample_columns(root, header.samples)
