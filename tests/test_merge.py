"""``--merge``: the networks of adjacent scenes become one, lines joined across borders.

A probability picture with roads that cross a scene border is vectorized whole and as two
(or four) adjacent scenes; merging the parts must give the whole scene's lines: the same
number of roads, the same total length (to a pixel per join), no cut ends left on the
inner borders.
"""

from pathlib import Path

import numpy as np
import pytest
from affine import Affine

from roadx.batch import merge_outputs
from roadx.errors import InputError
from roadx.io import write_roads
from roadx.vectorize import RoadNetwork, VectorizeParams, vectorize
from roadx.vectorize.merge import merge_networks

GSD = 0.5
PARAMS = VectorizeParams(bridge_m=0.0, snap_m=0.0)


def _picture() -> np.ndarray:
    """400 x 600 px: a horizontal road, a diagonal and a vertical one crossing it (8 px
    wide); the whole picture vectorizes to 7 lines with two junctions."""
    prob = np.full((400, 600), 0.02, np.float32)
    prob[96:104, 20:580] = 0.95
    rr = np.arange(30, 370)
    for d in range(-4, 4):
        prob[rr, np.clip(rr + 120 + d, 0, 599)] = 0.95
    prob[250:390, 446:454] = 0.95
    return prob


def _part(prob: np.ndarray, rows: slice, cols: slice, crs: str = "EPSG:32633") -> RoadNetwork:
    x0, y0 = 400000 + cols.start * GSD, 5000000 - rows.start * GSD
    return vectorize(prob[rows, cols], transform=Affine(GSD, 0, x0, 0, -GSD, y0), crs=crs,
                     pixel_size_m=GSD, params=PARAMS)


@pytest.mark.parametrize("cuts", [[(slice(0, 400), slice(0, 300)), (slice(0, 400), slice(300, 600))],
                                  [(r, c) for r in (slice(0, 200), slice(200, 400))
                                   for c in (slice(0, 300), slice(300, 600))]])
def test_merged_parts_equal_the_whole_scene(cuts: list[tuple[slice, slice]]) -> None:
    prob = _picture()
    whole = _part(prob, slice(0, 400), slice(0, 600))
    parts = [_part(prob, r, c) for r, c in cuts]
    assert sum(len(p.edges) for p in parts) > len(whole.edges)  # the borders cut lines
    merged = merge_networks(parts, names=[f"s{i}" for i in range(len(parts))])
    assert len(merged.edges) == len(whole.edges) >= 3
    assert merged.edges.crs == whole.edges.crs
    assert abs(merged.length_m - whole.length_m) < 2 * GSD * len(cuts)
    inner_cut = merged.nodes[merged.nodes["cut"]]
    x, y = inner_cut.geometry.x - 400000, 5000000 - inner_cut.geometry.y
    on_outer_edge = (x < 2) | (x > 600 * GSD - 2) | (y < 2) | (y > 400 * GSD - 2)
    assert on_outer_edge.all()  # every cut end left is on the outer border
    joined = merged.edges[merged.edges["scene"].str.contains(r"\+")]
    assert len(joined) >= 2
    assert list(merged.edges["id"]) == list(range(len(merged.edges)))
    assert set(merged.edges["u"]) | set(merged.edges["v"]) == set(merged.nodes["id"])


def test_merge_outputs_reads_files_and_refuses_pixel_space_with_crs(tmp_path: Path) -> None:
    prob = _picture()
    left, right = tmp_path / "left.gpkg", tmp_path / "right.shp"
    write_roads(_part(prob, slice(0, 400), slice(0, 300)), left)
    write_roads(_part(prob, slice(0, 400), slice(300, 600)), right)
    out = merge_outputs([left, right], tmp_path / "all.gpkg")
    import geopandas as gpd

    roads = gpd.read_file(out, layer="roads")
    whole = _part(prob, slice(0, 400), slice(0, 600))
    assert len(roads) == len(whole.edges) and "left+right" in set(roads["scene"])
    bare = vectorize(prob[:, :300], transform=None, crs=None, pixel_size_m=GSD, params=PARAMS)
    with pytest.raises(InputError, match="no CRS"):
        merge_networks([_part(prob, slice(0, 400), slice(300, 600)), bare])
