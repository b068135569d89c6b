"""roadx.io vector side: write_roads (GeoPackage, Shapefile, RFC 7946 GeoJSON), atomic
replacement and overwrite rules, and check_output_path."""

import json
from pathlib import Path
from types import SimpleNamespace

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
from shapely.geometry import LineString, Point

from roadx.errors import OutputError, OutputExistsError
from roadx.io import check_output_path, write_roads

UTM_11N = "EPSG:32611"
X0, Y0 = 666_000.0, 3_999_000.0  # Las Vegas, about -115.17, 36.13


def network(crs: str | None = UTM_11N, *, empty: bool = False) -> SimpleNamespace:
    """A tee: three roads meeting at one junction, in UTM 11N metres (or pixel coordinates)."""
    centre = (X0, Y0)
    ends = [(X0 - 50, Y0), (X0 + 50, Y0), (X0, Y0 + 80)]
    edges = gpd.GeoDataFrame(
        {"id": [0, 1, 2], "u": [0, 0, 0], "v": [1, 2, 3], "length_m": [50.0, 50.0, 80.0],
         "prob_mean": [0.9, 0.8, 0.7], "prob_min": [0.6, 0.5, 0.4],
         "probability_median": [0.91, 0.81, 0.71]},
        geometry=[LineString([centre, e]) for e in ends], crs=crs,
    )
    nodes = gpd.GeoDataFrame(
        {"id": [0, 1, 2, 3], "degree": [3, 1, 1, 1], "kind": ["junction", "end", "end", "end"]},
        geometry=[Point(centre), *(Point(e) for e in ends)], crs=crs,
    )
    if empty:
        edges, nodes = edges.iloc[:0], nodes.iloc[:0]
    return SimpleNamespace(edges=edges, nodes=nodes)


def no_temp_left(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.startswith(".roadx-") or "partial" in p.name]


def test_geopackage_has_both_layers_in_native_crs(tmp_path: Path) -> None:
    out = tmp_path / "roads.gpkg"
    assert write_roads(network(), out) == [out]
    layers = dict(pyogrio.list_layers(out))
    # layer_styles: the default QGIS styles (an attribute table, as QGIS writes it)
    assert layers == {"roads": "LineString", "junctions": "Point", "layer_styles": None}
    roads = gpd.read_file(out, layer="roads")
    nodes = gpd.read_file(out, layer="junctions")
    assert roads.crs.to_epsg() == 32611 and nodes.crs.to_epsg() == 32611
    assert roads["length_m"].tolist() == [50.0, 50.0, 80.0]
    assert roads.geometry.iloc[2].coords[:] == [(X0, Y0), (X0, Y0 + 80)]
    assert nodes["kind"].tolist() == ["junction", "end", "end", "end"]
    assert no_temp_left(tmp_path)


def test_geojson_is_rfc7946_lon_lat(tmp_path: Path) -> None:
    out = tmp_path / "roads.geojson"
    written = write_roads(network(), out)
    assert written == [out, tmp_path / "roads_junctions.geojson"]
    doc = json.loads(out.read_text())
    assert "crs" not in doc and len(doc["features"]) == 3
    lon, lat = doc["features"][0]["geometry"]["coordinates"][0]
    assert lon == pytest.approx(-115.17, abs=0.05) and lat == pytest.approx(36.13, abs=0.05)
    assert all(len(str(v).split(".")[1]) <= 7 for v in (lon, lat))  # RFC 7946: ~1 cm
    nodes = json.loads(written[1].read_text())
    assert [f["properties"]["kind"] for f in nodes["features"]][0] == "junction"
    back = gpd.read_file(out).to_crs(UTM_11N)
    assert back.geometry.iloc[1].coords[1] == pytest.approx((X0 + 50, Y0), abs=0.05)


def test_geojson_round_trip_of_real_lines(shared_data: Path, tmp_path: Path) -> None:
    gt = gpd.read_file(shared_data / "spacenet_apls" / "AOI_2_Vegas_img0_roads_gt.geojson")
    edges = gt[["geometry"]].to_crs(UTM_11N).assign(id=range(len(gt)))
    nodes = gpd.GeoDataFrame({"id": [0]}, geometry=[Point(edges.geometry.iloc[0].coords[0])],
                             crs=UTM_11N)
    out = tmp_path / "vegas.geojson"
    write_roads(SimpleNamespace(edges=edges, nodes=nodes), out)
    back = gpd.read_file(out)
    assert back.crs.to_epsg() == 4326 and len(back) == len(gt)
    lons = np.array([c[0] for g in back.geometry for c in g.coords])
    lats = np.array([c[1] for g in back.geometry for c in g.coords])
    assert -115.18 < lons.min() and lons.max() < -115.16 and 36.23 < lats.min() < lats.max() < 36.25
    first = np.array(gt.geometry.iloc[0].coords)[:, :2]
    assert np.array(back.geometry.iloc[0].coords)[:, :2] == pytest.approx(first, abs=2e-7)


def test_shapefile_fields_and_companion(tmp_path: Path) -> None:
    out = tmp_path / "roads.shp"
    written = write_roads(network(), out)
    assert written == [out, tmp_path / "roads_junctions.shp"]
    info = pyogrio.read_info(out)
    assert all(len(name) <= 10 for name in info["fields"])
    assert list(info["fields"]) == ["id", "u", "v", "length_m", "prob_mean", "prob_min",
                                    "probabilit"]
    assert pyogrio.read_info(out)["crs"] == "EPSG:32611"
    assert (tmp_path / "roads.prj").exists() and (tmp_path / "roads_junctions.dbf").exists()
    assert pyogrio.read_info(written[1])["features"] == 4 and no_temp_left(tmp_path)


def test_pixel_coordinates(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="RFC 7946 needs lon/lat|needs lon/lat"):
        write_roads(network(None), tmp_path / "r.geojson")
    assert not list(tmp_path.iterdir())
    out = tmp_path / "r.gpkg"
    write_roads(network(None), out)
    assert pyogrio.read_info(out, layer="roads")["crs"] is None
    # overwriting a georeferenced shapefile with a pixel-coordinate one drops the stale .prj
    write_roads(network(), tmp_path / "r.shp")
    assert (tmp_path / "r.prj").exists()
    write_roads(network(None), tmp_path / "r.shp", overwrite=True)
    assert not (tmp_path / "r.prj").exists()
    assert pyogrio.read_info(tmp_path / "r.shp")["crs"] is None


@pytest.mark.parametrize("suffix", [".gpkg", ".shp", ".geojson"])
def test_empty_network_writes_valid_empty_layers(tmp_path: Path, suffix: str) -> None:
    written = write_roads(network(empty=True), tmp_path / f"empty{suffix}")
    for path, layer, geometry in zip(written * 2 if suffix == ".gpkg" else written,
                                     ["roads", "junctions"], ["LineString", "Point"], strict=True):
        info = pyogrio.read_info(path, layer=layer if suffix == ".gpkg" else None)
        assert info["features"] == 0
        if suffix == ".geojson":  # GeoJSON has no layer geometry type; an empty collection
            assert json.loads(path.read_text())["features"] == []
        else:
            assert info["geometry_type"] == geometry and info["crs"] == "EPSG:32611"


def test_overwrite_rules_and_atomicity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "roads.gpkg"
    out.write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match=r"roads\.gpkg exists; pass --overwrite"):
        write_roads(network(), out)
    companion = tmp_path / "r_junctions.geojson"
    companion.write_text("{}")
    with pytest.raises(OutputExistsError, match="r_junctions"):
        write_roads(network(), tmp_path / "r.geojson")
    assert not (tmp_path / "r.geojson").exists()

    real = pyogrio.write_dataframe
    calls = []

    def fail_second(*args, **kwargs):
        calls.append(kwargs.get("layer"))
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(pyogrio, "write_dataframe", fail_second)
    with pytest.raises(RuntimeError, match="disk full"):
        write_roads(network(), out, overwrite=True)
    assert out.read_bytes() == b"precious" and no_temp_left(tmp_path)
    monkeypatch.setattr(pyogrio, "write_dataframe", real)
    write_roads(network(), out, overwrite=True)
    assert len(gpd.read_file(out, layer="roads")) == 3 and no_temp_left(tmp_path)


def test_check_output_path(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match=r"\.kml.*\.gpkg, \.shp, \.geojson"):
        check_output_path(tmp_path / "r.kml", overwrite=False,
                          suffixes=(".gpkg", ".shp", ".geojson"))
    with pytest.raises(OutputError, match="does not exist"):
        check_output_path(tmp_path / "no" / "r.gpkg", overwrite=False, suffixes=(".gpkg",))
    existing = tmp_path / "r.GPKG"
    existing.touch()
    with pytest.raises(OutputExistsError):
        check_output_path(existing, overwrite=False, suffixes=(".gpkg",))
    assert check_output_path(existing, overwrite=True, suffixes=(".gpkg",)) == existing


def test_outputs_carry_qgis_styles(tmp_path) -> None:
    """GeoPackage: default styles in layer_styles, one per layer; Shapefile/GeoJSON: .qml
    sidecars (kept when they exist, unless --overwrite). The rules name real columns."""
    import xml.etree.ElementTree as ET

    from affine import Affine

    from roadx.vectorize import VectorizeParams, vectorize

    prob = np.zeros((200, 400), np.float32)
    prob[96:105, :] = 0.95
    prob[96:105, 180:220] = 0.2  # a faint gap: one bridged line
    net = vectorize(prob, transform=Affine(0.5, 0, 500_000, 0, -0.5, 4_000_000),
                    crs="EPSG:32633", pixel_size_m=0.5, params=VectorizeParams())
    gpkg = tmp_path / "roads.gpkg"
    write_roads(net, gpkg)
    styles = pyogrio.read_dataframe(gpkg, layer="layer_styles")
    assert sorted(styles["f_table_name"]) == ["junctions", "roads"]
    assert styles["useAsDefault"].all() and (styles["f_geometry_column"] == "geom").all()
    for qml, layer in zip(styles["styleQML"], styles["f_table_name"], strict=True):
        root = ET.fromstring(qml.split("\n", 1)[1])
        filters = [r.get("filter") for r in root.iter("rule")]
        columns = set(net.edges.columns if layer == "roads" else net.nodes.columns)
        named = {w.strip('"') for f in filters for w in f.split() if w.startswith('"')}
        assert named and named <= columns, (layer, named)
    assert "bridged" in styles.loc[styles["f_table_name"] == "roads", "styleQML"].iloc[0]

    shp = tmp_path / "roads.shp"
    (tmp_path / "roads.qml").write_text("<qgis>my own style</qgis>")
    write_roads(net, shp)
    assert (tmp_path / "roads.qml").read_text() == "<qgis>my own style</qgis>"
    assert "RuleRenderer" in (tmp_path / "roads_junctions.qml").read_text()
    write_roads(net, shp, overwrite=True)
    assert "RuleRenderer" in (tmp_path / "roads.qml").read_text()

