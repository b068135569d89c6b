"""RFC 7946 §3.1.9 at the antimeridian: GeoJSON road layers of a scene that crosses 180°
have longitudes in [-180, 180] and lines cut at ±180° (roadx.io.vector.split_at_antimeridian)."""

import json
from pathlib import Path

import numpy as np
import pytest
from shapely.geometry import LineString, Point


@pytest.mark.parametrize("epsg", [32601, 32660])
def test_geojson_of_a_scene_across_the_antimeridian_is_cut_at_180(
    tmp_path: Path, epsg: int
) -> None:
    """RFC 7946 §3.1.9: a road mask in a UTM zone beside 180° (zone 1 west of its edge, zone
    60 east of its edge), vectorized through the CLI: every longitude lies in [-180, 180],
    the road that crosses 180° is a MultiLineString whose parts meet at ±180° at one
    latitude, and the parts add up to the road's length."""
    import subprocess
    import sys

    import rasterio
    from affine import Affine
    from pyproj import Geod, Transformer

    x180, y = Transformer.from_crs(4326, epsg, always_xy=True).transform(180.0, 63.0)
    mask = np.zeros((1, 48, 256), np.uint8)
    mask[0, 20:28, :] = 255  # an 8 m wide east-west road across the whole scene
    scene = tmp_path / "mask.tif"
    with rasterio.open(scene, "w", driver="GTiff", count=1, height=48, width=256,
                       dtype="uint8", crs=f"EPSG:{epsg}",
                       transform=Affine(1, 0, round(x180) - 128, 0, -1, round(y) + 24)) as dst:
        dst.write(mask)
    out = tmp_path / "roads.geojson"
    proc = subprocess.run([sys.executable, "-m", "roadx", "vectorize", str(scene), "-o",
                           str(out), "-q"], capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    features = json.loads(out.read_text())["features"]
    nodes = json.loads((tmp_path / "roads_junctions.geojson").read_text())["features"]
    lons = [xy[0] for f in features for part in f["geometry"]["coordinates"] for xy in part]
    lons += [f["geometry"]["coordinates"][0] for f in nodes]
    assert all(-180.0 <= lon <= 180.0 for lon in lons)
    crossing = [f["geometry"] for f in features if f["geometry"]["type"] == "MultiLineString"]
    assert len(crossing) == 1 and len(crossing[0]["coordinates"]) == 2
    west, east = crossing[0]["coordinates"]
    assert west[-1][0] == 180.0 and east[0][0] == -180.0 and west[-1][1] == east[0][1]
    assert all(lon > 179 for lon, _ in west) and all(lon < -179 for lon, _ in east)
    geod = Geod(ellps="WGS84")
    length = sum(geod.line_length(*zip(*part, strict=True)) for part in (west, east))
    assert length == pytest.approx(255.0, abs=2.0)  # 256 px at 1 m, end pixels' centres


def test_split_at_antimeridian_cases() -> None:
    from shapely.geometry import MultiLineString

    from roadx.io.vector import split_at_antimeridian as split

    assert split(LineString([(10, 1), (11, 2)])).equals(LineString([(10, 1), (11, 2)]))
    assert split(LineString([(179.9, 1), (-179.9, 2)])).equals(
        MultiLineString([[(179.9, 1), (180, 1.5)], [(-180, 1.5), (-179.9, 2)]]))
    assert split(LineString([(179, 1), (180, 1.5), (-179, 2)])).equals(  # vertex on 180°
        MultiLineString([[(179, 1), (180, 1.5)], [(-180, 1.5), (-179, 2)]]))
    assert split(LineString([(181, 1), (182, 2)])).equals(LineString([(-179, 1), (-178, 2)]))
    assert split(Point(180.5, 3)).equals(Point(-179.5, 3)) and split(None) is None
