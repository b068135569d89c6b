"""Render predicted road lines over their scene as a PNG, to check that they overlay the imagery.

Usage::

    roadx predict scene.tif -o /tmp/roads.gpkg
    python examples/render_overlay.py scene.tif /tmp/roads.gpkg /tmp/overlay.png \
        [--truth gt.geojson] [--max-px 2000]

The image is read decimated (long side at most ``--max-px``) and drawn with its georeferenced
extent; the road lines (GPKG/GeoJSON/SHP, any CRS) are reprojected to the image CRS and drawn
in red, optional ground-truth lines in cyan. Images without georeferencing (plain JPEG/PNG
predicted with ``roadx predict --gsd``) are drawn in pixel coordinates, as roadx writes them.

The PNG shows the imagery, so it derives from the scene's data: write it outside the
repository when the data may not be redistributed (the script refuses paths inside it).
"""

import argparse
import sys
import warnings
from pathlib import Path

import geopandas as gpd
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import rasterio  # noqa: E402
from rasterio.errors import NotGeoreferencedWarning  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def read_decimated(path: Path, max_px: int) -> tuple[np.ndarray, tuple[float, float, float, float], object]:
    """Read up to 3 bands decimated to ``max_px`` on the long side.

    Returns:
        (H, W, 3) uint8 RGB, the extent (left, right, bottom, top) in CRS units (pixels when
        not georeferenced), and the CRS (None when not georeferenced).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as src:
            scale = max(1.0, max(src.width, src.height) / max_px)
            shape = (max(1, round(src.height / scale)), max(1, round(src.width / scale)))
            bands = [1, 2, 3] if src.count >= 3 else [1, 1, 1]
            data = src.read(bands, out_shape=(3, *shape)).astype(np.float64)
            if src.crs is None:
                extent = (0.0, float(src.width), float(src.height), 0.0)
            else:
                b = src.bounds
                extent = (b.left, b.right, b.bottom, b.top)
            crs = src.crs
    if data.max() > 255:  # 16-bit: 2-98 % stretch for display
        lo, hi = np.percentile(data, [2, 98])
        data = (data - lo) / max(hi - lo, 1e-9) * 255
    return np.clip(data, 0, 255).astype(np.uint8).transpose(1, 2, 0), extent, crs


def draw_lines(ax: plt.Axes, path: Path, crs: object, colour: str, label: str) -> int:
    """Draw the lines of a vector file (reprojected to ``crs`` when both have one)."""
    layers = gpd.list_layers(path)["name"].tolist() if path.suffix.lower() == ".gpkg" else []
    frame = gpd.read_file(path, layer="roads" if "roads" in layers else None)
    if crs is not None and frame.crs is not None:
        frame = frame.to_crs(crs)
    if crs is None and len(frame) and frame.total_bounds[3] <= 0:
        frame = frame.set_geometry(frame.geometry.scale(1.0, -1.0, origin=(0, 0)))  # y-up pixels
    frame.plot(ax=ax, color=colour, linewidth=1.2, label=label)
    return len(frame)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, render and save the overlay; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", type=Path, help="scene raster (GeoTIFF, JPEG, ...)")
    parser.add_argument("roads", type=Path, help="predicted road lines (GPKG, GeoJSON, SHP)")
    parser.add_argument("output", type=Path, help="PNG to write (outside the repository)")
    parser.add_argument("--truth", type=Path, help="ground-truth road lines to draw as well")
    parser.add_argument("--max-px", type=int, default=2000, help="long side of the drawn image")
    parser.add_argument("--title", default=None)
    args = parser.parse_args(argv)
    out = args.output.resolve()
    if out.is_relative_to(REPO):
        print(f"error: {out} is inside the repository; the overlay derives from the scene's "
              "imagery, so write it elsewhere (e.g. /tmp/overlay.png).", file=sys.stderr)
        return 1
    missing = [p for p in (args.image, args.roads, args.truth) if p is not None and not p.exists()]
    if missing:
        print(f"error: {missing[0]}: no such file.", file=sys.stderr)
        return 1
    image, extent, crs = read_decimated(args.image, args.max_px)
    height_in = 10 * image.shape[0] / image.shape[1]
    fig, ax = plt.subplots(figsize=(10, max(height_in, 3)), dpi=150)
    ax.imshow(image, extent=extent, interpolation="bilinear")
    n_truth = draw_lines(ax, args.truth, crs, "cyan", "ground truth") if args.truth else 0
    n_roads = draw_lines(ax, args.roads, crs, "red", "predicted")
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    if crs is not None and crs.is_geographic:  # degrees: equal metres on both axes
        ax.set_aspect(1.0 / np.cos(np.deg2rad((extent[2] + extent[3]) / 2)))
    ax.set_title(args.title or f"{args.image.name}: {n_roads} predicted lines"
                 + (f", {n_truth} ground-truth lines" if args.truth else ""))
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
