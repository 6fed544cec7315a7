"""Open a VCZ as an xarray Dataset and compute one array over a range of variants: a vczrepo
repository at a ref (`--at`, through `Repository.open_dataset`), or a plain VCZ or the main
branch of a plain icechunk repository (`--icechunk`) through xarray's `open_zarr`, as sgkit
reads VCZ. A click command, so measure.py times it apart from start-up:

    python scripts/measure.py --cli read_array:main OUT.json -- SOURCE call_genotype --variants 0:3000 [--at REF]
"""

from __future__ import annotations

import click


@click.command()
@click.argument("source")
@click.argument("array")
@click.option("--variants", default=":", help="rows START:STOP (default all)")
@click.option("--at", help="read a vczrepo repository at this ref (default: SOURCE is a plain VCZ)")
@click.option("--icechunk", "main_branch", is_flag=True,
              help="SOURCE is a plain icechunk repository (vczstore's): read its main branch")
def main(source: str, array: str, variants: str, at: str | None, main_branch: bool) -> None:
    """Print the array's shape and the sum of its values (so every chunk is decoded)."""
    import icechunk
    import xarray as xr

    import vczrepo

    if at:
        ds = vczrepo.Repository.open(source).open_dataset(at)
    else:
        store = (icechunk.Repository.open(icechunk.local_filesystem_storage(source)).readonly_session("main").store
                 if main_branch else source)
        ds = xr.open_zarr(store, consolidated=False, zarr_format=3)
    start, _, stop = variants.partition(":")
    rows = slice(int(start) if start else None, int(stop) if stop else None)
    values = ds[array].isel(variants=rows).values
    click.echo(f"{array} {values.shape} sum {int(values.sum())}")


if __name__ == "__main__":
    main()
