"""End-to-end tests of ``roadx predict`` (pipeline.extract) on real scenes.

A *mask oracle* stands in for the network: its logits are a per-pixel function of the input
(bright = road), so feeding it the SpaceNet road mask as the "scene" must give back the
SpaceNet road centrelines — through the real reader (resampling to the card GSD), tiler,
TTA, stitcher, vectorizer and writers. Any georeferencing, flip or seam error moves or
breaks the lines and fails the completeness/correctness check.
"""

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import torch
from rasterio.warp import Resampling, calculate_default_transform, reproject

from roadx.models import ModelCard, uniform_bands
from roadx.pipeline import ExtractOptions, extract, vectorize_raster
from roadx.predict import PredictOptions

UTM_11N = "EPSG:32611"


class MaskOracle(torch.nn.Module):
    """Logits = 20 × (mean input − 0.5): a bright pixel is road (dihedral-equivariant)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 20.0 * (x.float().mean(dim=1, keepdim=True) - 0.5)


ORACLE_CARD = ModelCard(
    name="d3fnet34", gsd_m=1.0, tile_px=256, bands=uniform_bands("BGR", 1 / 255, 0.0)
)


@pytest.fixture
def oracle(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Make load_checkpoint return the mask oracle; returns a weights path to pass."""
    calls = []

    def fake_load(path: Path, *, device: str = "cpu") -> tuple[torch.nn.Module, ModelCard]:
        calls.append(path)
        return MaskOracle().eval(), ORACLE_CARD

    monkeypatch.setattr("roadx.models.load_checkpoint", fake_load)
    weights = tmp_path / "oracle.safetensors"
    weights.write_bytes(b"unused")
    return weights


def ccq(pred: gpd.GeoDataFrame, gt: gpd.GeoDataFrame, buffer_m: float = 3.0) -> tuple[float, float]:
    """(completeness, correctness) of line sets with a buffer in metres, in UTM 11N."""
    p = pred.to_crs(UTM_11N).geometry.union_all()
    g = gt.to_crs(UTM_11N).geometry.union_all()
    completeness = g.intersection(p.buffer(buffer_m)).length / g.length
    correctness = p.intersection(g.buffer(buffer_m)).length / p.length
    return completeness, correctness


def _gt(shared_data: Path) -> gpd.GeoDataFrame:
    return gpd.read_file(shared_data / "spacenet_solaris" / "sample_roads_for_masking.geojson")


def test_epsg4326_scene_gives_geojson_lines_on_the_ground_truth(
    shared_data: Path, oracle: Path, tmp_path: Path
) -> None:
    scene = shared_data / "spacenet_solaris" / "sample_road_raster_mask.tif"
    out = tmp_path / "roads.geojson"
    prob = tmp_path / "prob.tif"
    result = extract(
        scene,
        out,
        options=ExtractOptions(
            weights=oracle,
            overlap_px=64,
            probability_path=prob,
            predict=PredictOptions(tta="d4", device="cpu"),
        ),
    )
    assert result.resampled and abs(result.gsd_m - 1.0) < 0.05
    roads = gpd.read_file(out)
    assert roads.crs.to_epsg() == 4326
    lon, lat = roads.geometry.union_all().centroid.coords[0]
    assert -115.24 < lon < -115.23 and 36.13 < lat < 36.15
    completeness, correctness = ccq(roads, _gt(shared_data))
    assert completeness >= 0.85 and correctness >= 0.85, (completeness, correctness)
    # the probability raster covers the scene on the processing grid, same CRS
    with rasterio.open(scene) as src, rasterio.open(prob) as p:
        assert p.crs == src.crs
        assert p.dtypes[0] == "uint8" and p.nodata == 255
        for a, b in zip(p.bounds, src.bounds, strict=True):
            assert abs(a - b) < 2 * abs(p.transform.a)
    assert result.roads == len(roads) and result.total_km > 0.5


def test_utm_scene_gives_gpkg_in_native_crs(shared_data: Path, oracle: Path, tmp_path: Path) -> None:
    src_path = shared_data / "spacenet_solaris" / "sample_road_raster_mask.tif"
    scene = tmp_path / "mask_utm.tif"  # a reprojected derivative, only in tmp
    with rasterio.open(src_path) as src:
        transform, width, height = calculate_default_transform(
            src.crs, UTM_11N, src.width, src.height, *src.bounds, resolution=0.5
        )
        profile = src.profile | {
            "crs": UTM_11N, "transform": transform, "width": width, "height": height
        }
        with rasterio.open(scene, "w", **profile) as dst:
            reproject(rasterio.band(src, 1), rasterio.band(dst, 1), resampling=Resampling.nearest)
    out = tmp_path / "roads.gpkg"
    result = extract(
        scene, out, options=ExtractOptions(weights=oracle, predict=PredictOptions(tta="flip"))
    )
    roads = gpd.read_file(out, layer="roads")
    junctions = gpd.read_file(out, layer="junctions")
    assert roads.crs.to_epsg() == 32611 and junctions.crs.to_epsg() == 32611
    assert {"length_m", "prob_mean"} <= set(roads.columns)
    assert (roads["prob_mean"] > 0.5).all()
    completeness, correctness = ccq(roads, _gt(shared_data))
    assert completeness >= 0.85 and correctness >= 0.85, (completeness, correctness)
    # lengths are metres on the ground
    assert np.isclose(roads["length_m"].sum(), roads.geometry.length.sum(), rtol=0.05)
    assert result.junctions == int((junctions["kind"] == "junction").sum())


def test_vectorize_command_on_a_mask_matches_ground_truth(shared_data: Path, tmp_path: Path) -> None:
    mask = shared_data / "spacenet_solaris" / "sample_road_raster_mask.tif"
    out = tmp_path / "roads.gpkg"
    result = vectorize_raster(mask, out, band_rows=300)
    roads = gpd.read_file(out, layer="roads")
    assert roads.crs.to_epsg() == 4326
    completeness, correctness = ccq(roads, _gt(shared_data))
    assert completeness >= 0.9 and correctness >= 0.9, (completeness, correctness)
    assert result.roads == len(roads)


def test_cli_predict_json_with_a_real_d3fnet_checkpoint(shared_data: Path, tmp_path: Path) -> None:
    """A randomly initialised d3fnet34 checkpoint runs through the real CLI (no oracle)."""
    from typer.testing import CliRunner

    from roadx.cli import app
    from roadx.models import create_model, get_card, save_checkpoint

    torch.manual_seed(0)
    weights = tmp_path / "random.safetensors"
    card = get_card("d3fnet34")
    save_checkpoint(weights, create_model("d3fnet34", width=8), card=card,
                    model_kwargs={"width": 8})
    scene = shared_data / "spacenet_solaris" / "road_mask_input.tif"  # uint16 pan, EPSG:4326
    out = tmp_path / "roads.gpkg"
    result = CliRunner().invoke(
        app,
        ["predict", str(scene), "-o", str(out), "--weights", str(weights), "--tta", "none",
         "--tile", "256", "--overlap", "64", "--device", "cpu", "--json"],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["model"] == "d3fnet34" and report["windows"] >= 4
    assert report["crs"] == "EPSG:4326" and out.exists()
    gpd.read_file(out, layer="roads")  # readable, possibly empty for random weights


@pytest.mark.slow
def test_shipped_weights_find_the_roads_of_the_example_scene(tmp_path: Path) -> None:
    """The quick start: default weights on the bundled synthetic scene recover its roads."""
    import subprocess
    import sys

    from roadx.pipeline import default_weights_path

    assert default_weights_path().is_file(), "weights/d3fnet34.safetensors is not shipped"
    repo = Path(__file__).resolve().parents[1]
    subprocess.run(
        [sys.executable, str(repo / "examples" / "make_example_scene.py"), str(tmp_path)],
        check=True, capture_output=True,
    )
    out = tmp_path / "roads.gpkg"
    result = extract(
        tmp_path / "synthetic_scene.tif", out,
        options=ExtractOptions(predict=PredictOptions(tta="none", device="cpu")),
    )
    roads = gpd.read_file(out, layer="roads")
    truth = gpd.read_file(tmp_path / "synthetic_centrelines.gpkg")
    p = roads.geometry.union_all()
    g = truth.geometry.union_all()
    completeness = g.intersection(p.buffer(3.0)).length / g.length
    correctness = p.intersection(g.buffer(3.0)).length / p.length
    assert completeness >= 0.8 and correctness >= 0.8, (completeness, correctness)
    assert result.junctions >= 4 and roads.crs.to_epsg() == 32619


def test_concurrent_and_sequential_pipelines_write_identical_outputs(
    shared_data: Path, oracle: Path, tmp_path: Path
) -> None:
    """The vectorizer/writer thread changes when work happens, never what is written."""
    scene = shared_data / "spacenet_solaris" / "sample_road_raster_mask.tif"
    outputs = {}
    for concurrent in (False, True):
        folder = tmp_path / ("concurrent" if concurrent else "sequential")
        folder.mkdir()
        result = extract(
            scene, folder / "roads.gpkg",
            options=ExtractOptions(
                weights=oracle, tile_px=64, overlap_px=16, probability_path=folder / "p.tif",
                predict=PredictOptions(tta="flip", device="cpu", batch_size=3),
                concurrent=concurrent,
            ),
        )
        assert result.windows > 20  # many row bands pass through the queue
        with rasterio.open(folder / "p.tif") as src:
            prob = src.read(1)
        outputs[concurrent] = (
            prob,
            gpd.read_file(folder / "roads.gpkg", layer="roads"),
            gpd.read_file(folder / "roads.gpkg", layer="junctions"),
        )
    (p0, r0, j0), (p1, r1, j1) = outputs[False], outputs[True]
    assert np.array_equal(p0, p1) and (p0 < 255).any()
    assert len(r0) == len(r1) > 5
    assert all(a.equals_exact(b, 0.0) for a, b in zip(r0.geometry, r1.geometry, strict=True))
    assert r0.drop(columns="geometry").equals(r1.drop(columns="geometry"))
    assert all(a.equals_exact(b, 0.0) for a, b in zip(j0.geometry, j1.geometry, strict=True))


def test_consume_bands_keeps_order_and_surfaces_sink_errors() -> None:
    from roadx.pipeline import consume_bands
    from roadx.tiling import Window

    bands = [(Window(r, 0, 1, 4), np.full((1, 4), r, np.float32)) for r in range(10)]
    seen: list[int] = []
    consume_bands(iter(bands), [lambda w, p: seen.append(w.row_off)], concurrent=True)
    assert seen == list(range(10))

    pulled: list[int] = []

    def producer():  # noqa: ANN202
        for window, prob in bands:
            pulled.append(window.row_off)
            yield window, prob

    def failing(window: Window, prob: np.ndarray) -> None:
        if window.row_off == 3:
            raise ValueError("disk full at band 3")

    with pytest.raises(ValueError, match="band 3"):
        consume_bands(producer(), [failing], concurrent=True, max_pending=2)
    assert max(pulled) <= 3 + 3  # stops within the bounded queue, not at the end
    with pytest.raises(ValueError, match="band 3"):
        consume_bands(iter(bands), [failing], concurrent=False)


def test_cli_predict_reports_the_precision(
    shared_data: Path, oracle: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from roadx.cli import app
    from roadx.runtime import choose_precision

    scene = shared_data / "spacenet_solaris" / "sample_road_raster_mask.tif"
    expected = choose_precision("auto", torch.device("cpu"))
    cases = (("auto", expected.name, expected.reason), ("fp32", "fp32", "requested"))
    for flag, name, reason in cases:
        out = tmp_path / f"{flag}.gpkg"
        result = CliRunner().invoke(
            app,
            ["predict", str(scene), "-o", str(out), "--weights", str(oracle), "--tta", "none",
             "--device", "cpu", "--precision", flag, "--threads", "1", "--json"],
        )
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["precision"] == name and report["precision_reason"] == reason
        assert report["tile_px"] == 256 and out.exists()
    bad = CliRunner().invoke(app, ["predict", str(scene), "-o", str(tmp_path / "x.gpkg"),
                                   "--precision", "fp64"])
    assert bad.exit_code == 2 and "fp64" in bad.output


def test_vectorize_cli_bridges_occlusions_and_no_repair_turns_it_off(
    shared_data: Path, tmp_path: Path
) -> None:
    """`roadx vectorize` on the SpaceNet mask with faint occlusions (written beside the test,
    never committed): the default bridges the gaps and flags them; --no-repair does not;
    an explicit option after --no-repair still applies."""
    from typer.testing import CliRunner

    from roadx.cli import app
    from roadx.metrics.occlusion import occluded_probability, occlusion_points
    from roadx.vectorize import VectorizeParams, vectorize

    src = shared_data / "spacenet_solaris" / "sample_road_raster_mask.tif"
    with rasterio.open(src) as ds:
        mask = ds.read(1) > 127
        profile = ds.profile
    reference = vectorize(mask.astype(np.float32), transform=None, crs=None,
                          pixel_size_m=0.27, params=VectorizeParams().without_repair())
    occlusions = occlusion_points(list(reference.edges.geometry), gsd_m=0.27,
                                  shape=mask.shape, per_km=8.0, rng=np.random.default_rng(0))
    prob = occluded_probability(mask, occlusions, gap_m=10.0, gsd_m=0.27)
    occluded = tmp_path / "occluded.tif"
    profile.update(dtype="float32", nodata=None)
    with rasterio.open(occluded, "w", **profile) as ds:
        ds.write(prob, 1)

    def run(*options: str) -> tuple[dict, gpd.GeoDataFrame]:
        out = tmp_path / f"roads{len(list(tmp_path.glob('roads*')))}.gpkg"
        result = CliRunner().invoke(app, ["vectorize", str(occluded), "-o", str(out), "--json",
                                          *options])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout), gpd.read_file(out, layer="roads")

    report, roads = run()
    assert report["bridged"] >= 5 and roads["bridged"].sum() == report["bridged"]
    assert (roads.loc[roads["bridged"], "bridged_m"] > 5.0).all()
    # each 10 m gap is bridged from road end to road end (plus the two half-widths)
    assert roads["bridged_m"].sum() <= 20.0 * len(occlusions)
    completeness, correctness = ccq(roads, _gt(shared_data))
    assert completeness >= 0.95 and correctness >= 0.95, (completeness, correctness)
    raw_report, raw = run("--no-repair")
    assert raw_report["bridged"] == 0 and not raw["bridged"].any()
    assert raw_report["dead_ends"] >= report["dead_ends"] + 8  # every gap adds two dead ends
    only_bridging, _ = run("--no-repair", "--bridge-m", "30")
    assert only_bridging["bridged"] >= 5


def test_outputs_record_their_provenance(shared_data: Path, tmp_path: Path) -> None:
    """GeoPackage metadata, GeoTIFF tags and --json name the roadx version, the weights and
    their sha256, TTA, precision, threshold, repair parameters, scene and command."""
    import hashlib

    import pyogrio

    from roadx.models import create_model, get_card, save_checkpoint

    torch.manual_seed(0)
    weights = tmp_path / "tiny.safetensors"
    save_checkpoint(weights, create_model("d3fnet34", width=8), card=get_card("d3fnet34"),
                    model_kwargs={"width": 8})
    scene = shared_data / "spacenet_solaris" / "road_mask_input.tif"
    options = ExtractOptions(weights=weights, probability_path=tmp_path / "prob.tif",
                             predict=PredictOptions(tta="flip", device="cpu"))
    result = extract(scene, tmp_path / "roads.gpkg", options=options)
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert result.weights_sha256 == sha
    meta = pyogrio.read_info(tmp_path / "roads.gpkg", layer="roads")["layer_metadata"]
    junctions = pyogrio.read_info(tmp_path / "roads.gpkg", layer="junctions")["layer_metadata"]
    assert {k: v for k, v in junctions.items() if k != "DESCRIPTION"} == {
        k: v for k, v in meta.items() if k != "DESCRIPTION"}  # both layers carry it
    gpd.read_file(tmp_path / "roads.gpkg", layer="roads", engine="pyogrio")
    assert not (tmp_path / "roads.gpkg.aux.xml").exists()  # reading leaves no GDAL sidecar
    with rasterio.open(tmp_path / "prob.tif") as src:
        tags = src.tags()
    for record in (meta, tags):
        assert record["weights_sha256"] == sha and record["roadx_version"] == result.roadx_version
        assert record["scene"] == str(scene) and record["tta"] == "flip"
        assert record["precision"] == result.precision and record["threshold"] == "0.5 (low 0.3)"
        assert json.loads(record["network_repair"])["bridge_m"] == 30.0
        assert record["command"]
    vectorized = vectorize_raster(tmp_path / "prob.tif", tmp_path / "again.gpkg")
    again = pyogrio.read_info(tmp_path / "again.gpkg", layer="roads")["layer_metadata"]
    assert again["probability"] == str(tmp_path / "prob.tif") and vectorized.roads >= 0
