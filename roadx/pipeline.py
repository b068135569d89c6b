"""The one place that composes the stages: read → tiles → model → stitch → vectorize → write.

Each stage is a module with a small, typed interface; none calls the next. What crosses
each arrow (``../shared/specs/style.md`` §6):

==================  =========================================================================
from → to           value
==================  =========================================================================
io → pipeline       :class:`roadx.io.Scene`: CRS, affine transform, size and GSD of the
                    processing grid, band indexes in model order, valid mask, uint16 stretch
tiling → predict    :class:`roadx.tiling.TileGrid`: global grid from pixel (0, 0); each tile a
                    boundless ``read`` window and the ``core`` it owns
io → predict        ``read_window_aux(Window) -> (image (C, h, w) uint8, valid (h, w) bool,
                    aux_valid (h, w) bool | None)``; C = the card's bands
predict → model     ``(B, C, tile_px, tile_px)`` float32 scaled per the ModelCard, NaN in
                    ``nir``/``aux`` channels where the ``--aux`` raster has no data
model → predict     ``(B, 1, H, W)`` logits
predict → pipeline  finished full-width row bands ``(Window, prob (h, W) float32, NaN = nodata)``
pipeline → io       the same bands → :class:`roadx.io.ProbabilityWriter` (optional)
pipeline → vector.  the same bands → :class:`roadx.vectorize.BandVectorizer` (halo inside)
vectorize → io      :class:`roadx.vectorize.RoadNetwork` (edges + junctions GeoDataFrames)
==================  =========================================================================

Peak memory is bounded by the window batch, the stitcher's row accumulators
(about ``tile_px × width`` pixels) and the vectorizer's band + halo, never by scene height.
"""

import collections
import contextlib
import datetime
import hashlib
import json
import logging
import math
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from roadx.errors import CheckpointError, InputError, OutputError
from roadx.predict import PredictOptions
from roadx.vectorize import BandVectorizer, VectorizeParams
from roadx.vectorize import RoadNetwork as GraphNetwork

if TYPE_CHECKING:
    import geopandas as gpd
    import numpy as np

    from roadx.tiling import TileGrid, Window

log = logging.getLogger(__name__)

VECTOR_SUFFIXES = (".gpkg", ".shp", ".geojson")
PROBABILITY_SUFFIXES = (".tif", ".tiff")
DEFAULT_MODEL = "d3fnet34"


def default_weights_path(model: str = DEFAULT_MODEL) -> Path:
    """Where the shipped default weights of ``model`` live.

    ``$ROADX_WEIGHTS_DIR/<model>.safetensors`` when that variable is set, else the package
    data ``roadx.weights`` (the repository's top-level ``weights/`` folder, installed inside
    the package by ``pip install .`` or a wheel; an editable install maps it to the source
    tree).
    """
    root = os.environ.get("ROADX_WEIGHTS_DIR")
    if root:
        return Path(root) / f"{model}.safetensors"
    return _packaged_weights_file(f"{model}.safetensors")


def _packaged_weights_file(name: str) -> Path:
    """A file of the ``roadx.weights`` package data (the source ``weights/`` as fallback)."""
    from importlib import resources

    try:
        return Path(str(resources.files("roadx.weights").joinpath(name)))
    except ModuleNotFoundError:  # a source tree or editable install: the top-level folder
        return Path(__file__).resolve().parents[1] / "weights" / name


@dataclass(frozen=True)
class ExtractOptions:
    """Everything ``roadx predict`` can be told, beside the scene and the output path.

    Attributes:
        model: registered architecture used when ``weights`` is None (its default weights).
        weights: a roadx ``.safetensors`` checkpoint (carries its own ModelCard).
        tile_px: window side in pixels (None: the card's ``tile_px``).
        overlap_px: overlap between neighbouring windows in pixels (None: a quarter of the
            window, i.e. 256 px for 1024 px windows — about the receptive-field margin).
        bands: 1-based source bands in R,G,B order (None: from the colour interpretation);
            R,G,B,NIR for a model with a near-infrared input that reads it from the scene.
        aux: a separate, co-registered raster (any CRS and GSD; uint8, uint16 or float; a
            local path or a GDAL path/URL) that supplies the model's near-infrared/auxiliary
            channels (card roles ``nir``/``aux``) from its band 1 (bands 1..k for k such
            channels); the scene then supplies R,G,B. Warped onto the scene's processing grid
            window by window; where it has no data (nodata, masked, outside its extent) the
            model gets "no auxiliary data" (NaN) and computes its RGB-only path there. See
            :func:`roadx.io.raster.open_aux`. None: the scene supplies every channel.
        nodata: a source value marking no-data, declared for scenes that do not declare it
            (or declare another; it replaces the file's nodata value): see
            :func:`roadx.io.raster.open_scene`. None: the file's own nodata, masks and alpha.
        gsd_m: metres per pixel for an image without georeferencing: outputs then have no
            CRS and lie at ``x = col * gsd_m``, ``y = -row * gsd_m`` (GDAL/QGIS's placement
            of such an image, scaled to metres; see :func:`roadx.io.raster.pixel_space_transform`).
        resample: read the scene resampled to the card GSD when it differs by > 10 %.
        probability_path: optional output GeoTIFF of the stitched probability (a COG).
        preview_path: optional quick-look PNG of the roads over the scene (at most
            ``PREVIEW_MAX_PX`` on its longer side; :mod:`roadx.io.preview`).
        overwrite: replace existing outputs.
        predict: TTA, blending, batch size, device, precision, memory format, compile.
        vectorize: threshold, clean-up, pruning and simplification parameters.
        concurrent: the consumers of stitched bands (probability writer, vectorizer) run on
            a worker thread behind a bounded queue, so the model does not wait for them
            (False: the same work in the model's thread; the output is identical).
        threads: torch intra-op CPU threads (None: torch's default, one per core).
        force: run even when the up-front estimates say the run is unusually large (more
            windows than :data:`roadx.predict.budget.MAX_WINDOWS`, more memory than is
            available now) or the probability raster may not fit the free disk space; a run
            that needs more memory than the machine has is refused anyway.

    Raises:
        roadx.errors.InputError: ``tile_px`` is not a positive multiple of 32; ``aux``
            together with 4 ``bands`` (R,G,B,NIR from the scene).
    """

    model: str = DEFAULT_MODEL
    weights: Path | None = None
    tile_px: int | None = None
    overlap_px: int | None = None
    bands: tuple[int, ...] | None = None
    aux: str | None = None
    nodata: float | None = None
    gsd_m: float | None = None
    resample: bool = True
    probability_path: Path | None = None
    preview_path: Path | None = None
    overwrite: bool = False
    predict: PredictOptions = field(default_factory=PredictOptions)
    vectorize: VectorizeParams = field(default_factory=VectorizeParams)
    concurrent: bool = True
    threads: int | None = None
    force: bool = False

    def __post_init__(self) -> None:
        if self.tile_px is not None and (self.tile_px < 32 or self.tile_px % 32):
            raise InputError(
                f"--tile {self.tile_px}: the window must be a positive multiple of 32 px (the "
                f"networks downsample by 32), e.g. {max(32, round(self.tile_px / 32) * 32)}"
            )
        if self.nodata is not None:
            object.__setattr__(self, "nodata", float(self.nodata))
        if self.aux is not None:
            object.__setattr__(self, "aux", os.fspath(self.aux))
            if self.bands is not None and len(self.bands) == 4:
                raise InputError(
                    f"--aux {self.aux} supplies the near-infrared/auxiliary channel, but --bands "
                    f"{','.join(map(str, self.bands))} takes 4 bands (R,G,B,NIR) from the scene; "
                    "with --aux give the scene's R,G,B (e.g. --bands 1,2,3), or drop --aux to "
                    "read the NIR band from the scene."
                )


@dataclass
class ExtractResult:
    """Summary of one ``extract`` run (rendered by the CLI, or dumped as JSON)."""

    scene: str
    outputs: list[str]
    probability: str | None
    crs: str | None
    georeferenced: bool
    width_px: int
    height_px: int
    gsd_m: float
    resampled: bool
    area_km2: float
    windows: int
    model: str
    weights: str
    weights_sha256: str
    roadx_version: str
    tta: str
    device: str
    precision: str
    precision_reason: str
    tile_px: int
    roads: int
    junctions: int
    dead_ends: int
    bridged: int
    total_km: float
    seconds: float
    windows_per_s: float
    km2_per_h: float
    aux: str | None = None


class _RasterGrid(Protocol):
    """What the pipeline needs of a raster it vectorizes: :class:`roadx.io.Scene` and
    :class:`roadx.io.ProbabilityRaster` both provide it (sizes in pixels, metres per pixel)."""

    width: int
    height: int
    transform: Any
    crs: Any
    pixel_size_m: tuple[float, float]
    georeferenced: bool


Progress = Callable[[int, int, float], None]
"""``on_progress(done, total, km2_done)``: units done, total units, and scene area done (km²)."""

BandSource = Callable[[Any, "TileGrid", Callable[[int], None]],
                      Iterable[tuple["Window", "np.ndarray"]]]
"""Where a run's probability bands come from: ``source(scene, grid, advance)`` gets the
open :class:`roadx.io.Scene` and its window grid, yields the finished full-width bands
``(Window(row0, 0, h, width), prob (h, width) float32)`` of the whole scene in row order,
exactly as :func:`roadx.predict.predict_scene` does, and calls ``advance(n)`` after ``n``
more windows are done. The default runs the model in this process; the Ray backend
(:mod:`roadx.ray_backend`) gathers the bands from stripes run on Ray actors."""


def resolve_weights(options: ExtractOptions) -> Path:
    """The checkpoint a run with ``options`` loads: ``options.weights``, or the default
    weights of ``options.model`` (:func:`default_weights_path`).

    Raises:
        roadx.errors.InputError: ``options.weights`` does not exist.
        roadx.errors.CheckpointError: no default weights for ``options.model``.
    """
    if options.weights is not None:
        path = Path(options.weights)
        if not path.is_file():
            raise InputError(f"weights file {path} not found")
        return path
    path = default_weights_path(options.model)
    if not path.is_file():
        raise CheckpointError(
            f"no default weights for model {options.model!r} (looked for {path}); "
            "pass --weights FILE.safetensors, or train them with `roadx train`"
        )
    return path


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _command_line() -> str:
    """The command that is running, as a user would type it."""
    program = Path(sys.argv[0]).name if sys.argv else "python"
    if program == "__main__.py":
        program = "python -m roadx"
    return " ".join([program, *(shlex.quote(a) for a in sys.argv[1:])])


def _provenance(params: VectorizeParams, **inputs: str) -> dict[str, str]:
    """What produced an output, as text tags (GeoPackage metadata, GeoTIFF tags): roadx
    version, time, command, the inputs given, and the vectorisation parameters."""
    from roadx import __version__

    repair = ("bridge_m", "bridge_min_prob", "bridge_angle_deg", "snap_m",
              "merge_junctions_m", "duplicate_m", "min_spur_m", "min_edge_prob", "simplify_m")
    return {
        "roadx_version": __version__,
        "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": _command_line(),
        **inputs,
        "threshold": f"{params.threshold:g} (low {params.threshold_low:g})",
        "network_repair": json.dumps({k: getattr(params, k) for k in repair}),
    }


def _check_outputs(
    scene_path: str | Path, output: Path | None, options: ExtractOptions
) -> None:
    """Every output of a run, before any work: writable names, no clash with each other or
    with the input scene (also through links, also with ``--overwrite``)."""
    from roadx.io import check_output_path, vector_output_paths
    from roadx.io.raster import scene_reference

    if output is not None:
        vector_output_paths(output, overwrite=options.overwrite, suffixes=VECTOR_SUFFIXES)
    if options.probability_path is not None:
        check_output_path(
            options.probability_path, overwrite=options.overwrite, suffixes=PROBABILITY_SUFFIXES
        )
        if output is not None and Path(options.probability_path).resolve() == output.resolve():
            raise OutputError("--prob and -o must be different files")
    if options.preview_path is not None:
        from roadx.io.preview import check_preview_path

        check_preview_path(options.preview_path, overwrite=options.overwrite)
    for out in (output, options.probability_path, options.preview_path):
        if (out is not None and isinstance(scene_path, Path)
                and Path(out).resolve() == scene_path.resolve()):
            raise OutputError(
                f"{out} is the input scene {scene_path} (also through links); roadx never "
                "writes over its input: choose another output path"
            )
        aux = None if options.aux is None else scene_reference(options.aux)
        if out is not None and isinstance(aux, Path) and Path(out).resolve() == aux.resolve():
            raise OutputError(
                f"{out} is the auxiliary raster --aux {aux} (also through links); roadx never "
                "writes over its input: choose another output path"
            )


class RoadNetwork(GraphNetwork):
    """The road network of a scene as :func:`predict_roads` returns it: GeoDataFrames plus
    writing.

    Attributes (besides ``edges``/``nodes`` of :class:`roadx.vectorize.RoadNetwork`):
        metadata: provenance (roadx version, model, weights sha256, TTA, precision,
            threshold, command, scene), stored in the GeoPackage by :meth:`to_file`.
        summary: the run's :class:`ExtractResult` (counts, km, timing, CRS, GSD).
    """

    metadata: dict[str, str]
    summary: "ExtractResult"

    def __init__(self, network: GraphNetwork, metadata: dict[str, str],
                 summary: "ExtractResult") -> None:
        super().__init__(network.edges, network.nodes)
        self.metadata, self.summary = metadata, summary

    @property
    def roads(self) -> "gpd.GeoDataFrame":
        """Road centrelines: one LineString per edge, in the scene's CRS (None: pixel
        space, see :class:`ExtractOptions` ``gsd_m``); columns as ``edges``."""
        return self.edges

    @property
    def junctions(self) -> "gpd.GeoDataFrame":
        """Graph nodes (junctions, dead ends, degree-2 nodes; column ``kind``)."""
        return self.nodes

    def to_file(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> list[Path]:
        """Write ``roads`` and ``junctions`` as :func:`roadx.io.write_roads` does
        (``.gpkg`` with provenance and QGIS styles, ``.shp``, ``.geojson`` in EPSG:4326).

        Returns:
            The files written, roads first.

        Raises:
            roadx.errors.OutputError: unsupported extension, unwritable folder, GeoJSON
                without CRS.
            roadx.errors.OutputExistsError: an output exists and ``overwrite`` is false.
        """
        from roadx.io import write_roads

        return write_roads(self, path, overwrite=overwrite, metadata=self.metadata)


class Predictor:
    """A model loaded once, for many scenes: weights, model card, device and precision.

    :func:`extract` and :func:`predict_roads` load the weights on every call; a Predictor
    loads them once and runs any number of scenes with them (``roadx predict A.tif B.tif``,
    :func:`roadx.batch.predict_many`). The stages of a run stay those of :func:`extract`;
    only the model loading moves here. Results are identical to separate calls.

    Attributes:
        options: the settings it was made with; the default of :meth:`extract` and
            :meth:`predict_roads`.
        weights: the checkpoint file used (``options.weights``, or the default weights of
            ``options.model``).
        weights_sha256: hex sha256 of that file (recorded in every output's provenance).
        device: the ``torch.device`` the model lives on.
        precision: the :class:`roadx.runtime.precision.Precision` the runs use (name and
            reason, for the summaries).
        model: the float32 model in eval mode on ``device``.
        card: its :class:`roadx.models.ModelCard` (GSD, bands, scaling, window size).

    Raises (on construction):
        roadx.errors.InputError: an unknown setting, a missing ``weights`` file.
        roadx.errors.CheckpointError: corrupt or mismatched weights, no default weights.
        roadx.errors.DeviceError: CUDA requested but absent.

    Example:
        >>> predictor = roadx.Predictor(tta="none")  # doctest: +SKIP
        >>> for scene in ("a.tif", "b.tif"):  # doctest: +SKIP
        ...     predictor.extract(scene, scene.replace(".tif", ".gpkg"))
    """

    _IDENTITY = ("weights", "model")
    _PREDICT_IDENTITY = ("device", "precision")

    def __init__(self, options: ExtractOptions | None = None, **settings: Any) -> None:
        from roadx.models import load_checkpoint
        from roadx.runtime.device import resolve_device
        from roadx.runtime.precision import choose_precision

        self.options = with_settings(options or ExtractOptions(), settings)
        self.weights = resolve_weights(self.options)
        self.device = resolve_device(self.options.predict.device)
        self.precision = choose_precision(self.options.predict.precision, self.device)
        self.model, self.card = load_checkpoint(self.weights, device=str(self.device))
        self.weights_sha256 = file_sha256(self.weights)
        log.info("loaded %s (%s) on %s, %s", self.card.name, self.weights, self.device,
                 self.precision.name)

    def check_options(self, options: ExtractOptions) -> None:
        """Refuse ``options`` that ask for another model than the one loaded.

        Raises:
            roadx.errors.InputError: ``weights``, ``model``, ``predict.device`` or
                ``predict.precision`` differ from the predictor's own options.
        """
        differ = [name for name in self._IDENTITY
                  if getattr(options, name) != getattr(self.options, name)]
        differ += [name for name in self._PREDICT_IDENTITY
                   if getattr(options.predict, name) != getattr(self.options.predict, name)]
        if differ:
            raise InputError(
                f"the options ask for another {', '.join(differ)} than this Predictor was "
                f"loaded with ({self.weights} on {self.device}, {self.precision.name}); make "
                "a Predictor with those options"
            )

    def extract(
        self, scene_path: str | os.PathLike[str], output: str | os.PathLike[str], *,
        options: ExtractOptions | None = None, on_progress: Progress | None = None,
    ) -> "ExtractResult":
        """:func:`extract` with this predictor's model (``options`` default: its own)."""
        return extract(scene_path, Path(output), options=options, on_progress=on_progress,
                       predictor=self)

    def predict_roads(
        self, scene: str | os.PathLike[str], *, options: ExtractOptions | None = None,
        on_progress: Progress | None = None, **settings: Any,
    ) -> "RoadNetwork":
        """:func:`predict_roads` with this predictor's model (``options`` default: its own)."""
        return predict_roads(scene, options=options, on_progress=on_progress, predictor=self,
                             **settings)


def predict_roads(
    scene: str | os.PathLike[str],
    *,
    options: ExtractOptions | None = None,
    on_progress: Progress | None = None,
    predictor: "Predictor | None" = None,
    **settings: Any,
) -> RoadNetwork:
    """Extract the road network of a scene and return it (nothing written unless asked).

    The same pipeline as ``roadx predict`` (and :func:`extract`): windowed reads on one
    global grid, the model with TTA, seam-free stitching, vectorization and network repair,
    streaming in row bands (memory does not grow with the scene).

    Args:
        scene: GeoTIFF path or GDAL path/URL (``/vsicurl/...``, ``https://``, ``s3://``);
            a plain image needs ``gsd_m``.
        options: all settings (:class:`ExtractOptions`); default: the default weights, d4 TTA.
        on_progress: called with ``(windows_done, windows_total, km2_done)``.
        predictor: a :class:`Predictor` whose loaded model to use (many scenes, one load);
            ``options`` then defaults to the predictor's, and must name the same weights,
            model, device and precision.
        **settings: shortcuts that override ``options``: ``weights``, ``model``, ``gsd_m``,
            ``bands``, ``aux`` (a separate NIR/auxiliary raster for a multimodal model, see
            :class:`ExtractOptions`), ``probability_path`` (also write the probability
            GeoTIFF there), ``overwrite``, ``threads``, ``force`` (:class:`ExtractOptions` fields); ``tta``,
            ``device``, ``precision``, ``batch_size`` (:class:`roadx.predict.PredictOptions`);
            ``threshold``, ``min_spur_m``, ``simplify_m``, ``bridge_m``, ...
            (:class:`roadx.vectorize.VectorizeParams`).

    Returns:
        A :class:`RoadNetwork`: ``.roads`` and ``.junctions`` GeoDataFrames in the scene's
        CRS, ``.summary`` and ``.to_file(path)``.

    Raises:
        roadx.errors.InputError: an unknown setting; ``options`` that ask for another model,
            device or precision than ``predictor`` was loaded with; or as :func:`extract`.
        Every error of :func:`extract` (scene, weights, outputs, device).

    Example:
        >>> import roadx  # doctest: +SKIP
        >>> net = roadx.predict_roads("scene.tif", tta="none")  # doctest: +SKIP
        >>> net.roads[["length_m", "prob_mean"]].describe()  # doctest: +SKIP
        >>> net.to_file("roads.gpkg")  # doctest: +SKIP
    """
    if options is None and predictor is not None:
        options = predictor.options
    options = with_settings(options or ExtractOptions(), settings)
    network, _ = _run(scene, None, options, on_progress, predictor)
    return network


def with_settings(options: ExtractOptions, settings: dict[str, Any]) -> ExtractOptions:
    """``options`` with fields of it, of its ``predict`` and of its ``vectorize`` replaced.

    Raises:
        roadx.errors.InputError: a name that none of the three option classes has.
    """
    import dataclasses

    own = {f.name for f in dataclasses.fields(ExtractOptions)} - {"predict", "vectorize"}
    pred = {f.name for f in dataclasses.fields(PredictOptions)}
    vect = {f.name for f in dataclasses.fields(VectorizeParams)}
    unknown = sorted(set(settings) - own - pred - vect)
    if unknown:
        raise InputError(
            f"unknown setting(s) {', '.join(unknown)}; expected fields of ExtractOptions, "
            "PredictOptions or VectorizeParams"
        )
    path_fields = {"weights", "probability_path"}
    top = {k: (Path(v) if k in path_fields and v is not None else v)
           for k, v in settings.items() if k in own}
    return dataclasses.replace(
        options, **top,
        predict=dataclasses.replace(options.predict,
                                    **{k: v for k, v in settings.items() if k in pred}),
        vectorize=dataclasses.replace(options.vectorize,
                                      **{k: v for k, v in settings.items() if k in vect}),
    )


def extract(
    scene_path: str | Path,
    output: str | Path,
    *,
    options: ExtractOptions | None = None,
    on_progress: Progress | None = None,
    predictor: "Predictor | None" = None,
    source: BandSource | None = None,
) -> ExtractResult:
    """Extract a road network from a scene and write it as vector layers.

    Reads ``scene_path`` window by window on one global grid, runs the model (with TTA) on
    batches of windows, stitches seam-free probabilities into finished row bands, optionally
    writes them as a probability GeoTIFF, vectorizes the bands into a road graph (lines
    continue across band seams) and writes the layers to ``output`` atomically.

    Args:
        scene_path: a GeoTIFF (any CRS, 1–N bands, uint8/uint16), or a plain image with
            ``options.gsd_m``.
        output: ``.gpkg`` (layers ``roads`` and ``junctions``, native CRS), ``.shp``
            (native CRS) or ``.geojson`` (RFC 7946, EPSG:4326).
        options: see :class:`ExtractOptions` (defaults: d3fnet34 default weights, d4 TTA).
        on_progress: called after each window with ``(done, total, km2_done)``.
        predictor: a :class:`Predictor` whose loaded model to use instead of loading the
            weights again (many scenes, one load); ``options`` then defaults to the
            predictor's, and must name the same weights, model, device and precision.
        source: where the probability bands come from (:data:`BandSource`; default: the
            predictor's model in this process). With a source, ``predictor`` needs only
            ``options``, ``weights``, ``weights_sha256``, ``device``, ``precision``,
            ``card`` and ``check_options`` (the Ray backend passes a description of the
            model its actors hold).

    Returns:
        An :class:`ExtractResult` with counts, lengths (km), timing and output paths.

    Raises:
        roadx.errors.InputError: missing scene or weights file.
        roadx.errors.SceneError: no georeferencing (and no ``gsd_m``), bad bands, no valid pixel.
        roadx.errors.CheckpointError: corrupt or mismatched weights, no default weights.
        roadx.errors.OutputError: unsupported extension, missing or unwritable folder, output
            exists, or (without ``force``) too little free space for the probability raster.
        roadx.errors.InputError: (without ``force``) more windows or memory than the
            estimates allow, or (always) more memory than the machine has.
        roadx.errors.DeviceError: CUDA requested but absent.
        roadx.errors.InputError: ``options`` ask for another model, device or precision
            than ``predictor`` was loaded with.
    """
    if options is None and predictor is not None:
        options = predictor.options
    return _run(scene_path, Path(output), options or ExtractOptions(), on_progress,
                predictor, source)[1]


def _run(
    scene_path: str | os.PathLike[str],
    output: Path | None,
    options: ExtractOptions,
    on_progress: Progress | None,
    predictor: "Predictor | None" = None,
    source: BandSource | None = None,
) -> tuple[RoadNetwork, ExtractResult]:
    """The pipeline behind :func:`extract` and :func:`predict_roads` (``output`` None: no
    vector file is written; ``predictor`` None: the weights are loaded for this run;
    ``source`` None: :func:`roadx.predict.predict_scene` runs the model here)."""
    from roadx.io import ProbabilityWriter, open_scene, write_roads
    from roadx.predict import predict_scene
    from roadx.runtime.device import torch_threads
    from roadx.tiling import TileGrid

    from roadx.io.raster import scene_reference

    scene_path = scene_reference(scene_path)
    if isinstance(scene_path, Path) and not scene_path.exists():
        raise InputError(f"scene {scene_path} not found")
    _check_outputs(scene_path, output, options)
    if predictor is None:
        predictor = Predictor(options)
    else:
        predictor.check_options(options)
    weights, device, precision = predictor.weights, predictor.device, predictor.precision
    model, card, weights_sha256 = predictor.model, predictor.card, predictor.weights_sha256
    if options.aux is not None:
        _check_aux_card(options.aux, card, weights)
    provenance = _provenance(
        options.vectorize, scene=str(scene_path), model=card.name, weights=str(weights),
        weights_sha256=weights_sha256, tta=options.predict.tta, device=str(device),
        precision=precision.name, **({} if options.aux is None else {"aux": options.aux}),
        **({} if options.nodata is None else {"nodata": f"{options.nodata:g}"}),
    )

    start = time.perf_counter()
    with torch_threads(options.threads), open_scene(
        scene_path,
        bands=options.bands,
        band_order=card.band_names,
        target_gsd_m=card.gsd_m if options.resample else None,
        gsd_m=options.gsd_m,
        aux=options.aux,
        optional=tuple(b.name for b in card.bands if b.optional),
        nodata=options.nodata,
    ) as scene:
        if output is not None:
            _check_geojson_possible(scene_path, scene, output)
        tile_px = options.tile_px or _default_tile_px(
            card.tile_px, scene.height, scene.width, multiple=card.input_multiple_px
        )
        if tile_px % card.input_multiple_px:
            up = -(-tile_px // card.input_multiple_px) * card.input_multiple_px
            raise InputError(
                f"window size {tile_px} px (--tile) is not a multiple of "
                f"{card.input_multiple_px} px, which {card.name} needs; use {up}."
            )
        overlap_px = tile_px // 4 if options.overlap_px is None else options.overlap_px
        grid = TileGrid(scene.height, scene.width, tile_px=tile_px, overlap_px=overlap_px)
        _check_budget(scene_path, grid, options, device)
        total = len(grid)
        area_km2 = _area_km2(scene)
        done = 0

        def advance(n: int) -> None:
            nonlocal done
            done += n
            if on_progress is not None:
                on_progress(done, total, area_km2 * done / total)

        if on_progress is not None:  # the total is known before the first batch runs
            on_progress(0, total, 0.0)

        vectorizer = _band_vectorizer(scene, options.vectorize)
        if source is None:
            bands = predict_scene(
                scene.read_window_aux, grid, model, card, options.predict, on_progress=advance
            )
        else:
            bands = source(scene, grid, advance)
        with contextlib.ExitStack() as stack:
            sinks: list[BandSink] = []
            writer = None
            if options.probability_path is not None:
                writer = ProbabilityWriter(
                    options.probability_path,
                    width=scene.width,
                    height=scene.height,
                    crs=scene.crs,
                    transform=scene.transform,
                    overwrite=options.overwrite,
                    tags=provenance,
                )
                stack.callback(writer.abort)  # removes the temporary file unless committed
                sinks.append(writer.write)
            sinks.append(lambda window, prob: vectorizer.add_rows(window.row_off, prob))
            consume_bands(bands, sinks, concurrent=options.concurrent)
            if writer is not None:
                writer.finish()
            network = vectorizer.finish()
            # the outputs as a set: the probability raster is put in place only after the
            # road layers were written, so a failed run leaves neither
            written = [] if output is None else write_roads(
                network, output, overwrite=options.overwrite, metadata=provenance
            )
            if options.preview_path is not None:
                written.append(_write_preview(options.preview_path, scene, card.band_names, network,
                                              overwrite=options.overwrite))
            if writer is not None:
                writer.commit()
        seconds = time.perf_counter() - start
        result = ExtractResult(
            scene=str(scene_path),
            outputs=[str(p) for p in written],
            probability=str(options.probability_path) if options.probability_path else None,
            crs=scene.crs.to_string() if scene.crs is not None else None,
            georeferenced=scene.georeferenced,
            width_px=scene.width,
            height_px=scene.height,
            gsd_m=round(scene.gsd_m, 4),
            resampled=scene.resampled,
            area_km2=round(area_km2, 4),
            windows=total,
            model=card.name,
            weights=str(weights),
            weights_sha256=weights_sha256,
            roadx_version=provenance["roadx_version"],
            tta=options.predict.tta,
            device=str(device),
            precision=precision.name,
            precision_reason=precision.reason,
            tile_px=tile_px,
            **_network_summary(network),
            seconds=round(seconds, 2),
            windows_per_s=round(total / seconds, 3) if seconds > 0 else math.inf,
            km2_per_h=round(area_km2 / (seconds / 3600), 2) if seconds > 0 else math.inf,
            aux=options.aux,
        )
    log.info("extracted %d roads (%.2f km) in %.1f s", result.roads, result.total_km, seconds)
    return RoadNetwork(network, provenance, result), result


def _check_aux_card(aux: str, card: Any, weights: Path) -> None:
    """Refuse ``--aux`` for a model that has no channel for it: a card without ``nir``/``aux``
    bands, or one whose other non-R,G,B bands (e.g. ``pan``) an auxiliary raster cannot
    supply.

    Raises:
        roadx.errors.InputError: naming the auxiliary raster, the model and its bands.
    """
    names = ",".join(card.band_names)
    if not card.aux_channels:
        raise InputError(
            f"--aux {aux}: model {card.name!r} ({weights}) has no near-infrared or auxiliary "
            f"input band (its bands: {names}); use a multimodal model such as --model "
            "d3fnet34-mm, or drop --aux."
        )
    others = [b.name for i, b in enumerate(card.bands)
              if b.name not in ("R", "G", "B") and i not in card.aux_channels]
    if others:
        raise InputError(
            f"--aux {aux}: model {card.name!r} ({weights}) has bands {names}; an auxiliary "
            f"raster supplies only near-infrared/auxiliary bands, not {','.join(others)}."
        )


PREVIEW_MAX_PX = 2048


def _write_preview(
    path: Path, scene: Any, bands: Sequence[str], network: GraphNetwork, *, overwrite: bool
) -> Path:
    """Render ``network`` over a decimated read of ``scene`` into the PNG ``path``."""
    import numpy as np

    from roadx.io.preview import render_preview, write_png

    image = scene.read_overview(PREVIEW_MAX_PX)
    names = [b.upper() for b in bands]
    order = [names.index(b) for b in ("R", "G", "B")] if {"R", "G", "B"} <= set(names) else None
    rgb = image[order] if order else np.repeat(image[:1], 3, axis=0)
    inverse = ~scene.transform
    sy, sx = image.shape[1] / scene.height, image.shape[2] / scene.width

    def to_pixel(xy: "np.ndarray") -> "np.ndarray":
        cols, rows = inverse @ (xy[:, 0], xy[:, 1])
        return np.stack([np.asarray(cols) * sx, np.asarray(rows) * sy], axis=1)

    edges = network.edges
    lines = [(np.asarray(g.coords), bool(b)) for g, b in zip(edges.geometry, edges["bridged"])]
    return write_png(Path(path), render_preview(rgb, lines, to_pixel), overwrite=overwrite)


def _check_budget(
    scene_path: str | Path, grid: "TileGrid", options: ExtractOptions, device: Any
) -> None:
    """Refuse a run whose estimated windows, memory or probability-raster size is absurd,
    before anything is allocated or written (see :mod:`roadx.predict.budget`); ``device``
    is the ``torch.device`` the run uses (the pipeline layer does not import torch)."""
    from roadx.fs import check_free_space
    from roadx.predict.budget import check_run, estimate_run
    from roadx.predict.engine import images_per_forward
    from roadx.predict.tta import tta_views
    from roadx.runtime.memory import memory_limits

    estimate = estimate_run(
        height=grid.height, width=grid.width, tile_px=grid.tile_px, windows=len(grid),
        batch_size=options.predict.batch_size, views=len(tta_views(options.predict.tta)),
        images_per_forward=images_per_forward(options.predict, device),
        on_gpu=device.type == "cuda", probability=options.probability_path is not None,
    )
    log.info("estimate: %d windows, peak memory about %.2f GiB", estimate.windows,
             estimate.memory_bytes / 2**30)
    check_run(estimate, memory_limits(), force=options.force, scene=str(scene_path))
    if options.probability_path is not None and not options.force:
        check_free_space(Path(options.probability_path).absolute(), estimate.probability_bytes,
                         what="the probability raster")


BandSink = Callable[["Window", "np.ndarray"], None]
"""Consumer of finished probability bands: ``sink(Window(row0, 0, h, W), prob (h, W))``."""


def consume_bands(
    bands: Iterable[tuple["Window", "np.ndarray"]],
    sinks: Sequence[BandSink],
    *,
    concurrent: bool = True,
    max_pending: int = 2,
) -> None:
    """Pass every band, in order, to every sink; optionally on a worker thread.

    With ``concurrent``, the sinks (probability writer, vectorizer: CPU work) run on one
    worker thread while the caller's thread keeps pulling bands from ``bands`` (the model's
    forward passes), behind a bounded queue of ``max_pending`` bands, so the model does not
    wait for skeletonizing and writing, and memory stays bounded (``max_pending`` bands of
    ``tile_px × width`` float32). The sinks see exactly the same calls in the same order as
    without ``concurrent``, so the outputs are identical.

    Args:
        bands: ``(window, prob)`` pairs, e.g. from :func:`roadx.predict.predict_scene`.
        sinks: called as ``sink(window, prob)`` for each band, in list order.
        concurrent: run the sinks on a worker thread (True) or inline (False).
        max_pending: bands handed to the worker and not yet consumed (>= 1).

    Raises:
        Whatever a sink or ``bands`` raises; after an error no further band is consumed,
        and the worker has stopped before this returns. ``bands``, if it is a generator, is
        closed before this returns or raises (so its own threads have stopped too).
    """

    try:
        _consume(bands, sinks, concurrent=concurrent, max_pending=max_pending)
    finally:
        # Close a generator now (e.g. predict_scene, which then waits for its reader thread),
        # not when it is garbage-collected: the caller closes the scene it reads right after
        # this returns or raises, and a read still running then would use a freed dataset.
        close = getattr(bands, "close", None)
        if close is not None:
            close()


def _consume(
    bands: Iterable[tuple["Window", "np.ndarray"]], sinks: Sequence[BandSink], *,
    concurrent: bool, max_pending: int,
) -> None:
    """The loop of :func:`consume_bands`."""

    def consume(window: "Window", prob: "np.ndarray") -> None:
        for sink in sinks:
            sink(window, prob)

    if not concurrent:
        for window, prob in bands:
            consume(window, prob)
        return
    pending: collections.deque[Future[None]] = collections.deque()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="roadx-vectorize") as pool:
        try:
            for window, prob in bands:
                while pending and (len(pending) >= max_pending or pending[0].done()):
                    pending.popleft().result()  # re-raises a sink's error here
                pending.append(pool.submit(consume, window, prob))
            while pending:
                pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def _default_tile_px(card_tile_px: int, height: int, width: int, *, multiple: int = 32) -> int:
    """The card's window, shrunk to the scene (a multiple of the card's ``multiple``: 32 for
    the LinkNets, 64 for DDRNet) when one window covers it.

    A 400 × 400 px scene then runs one 416² window (448² for DDRNet) instead of a mostly
    padded 1024² one (6× less compute); larger scenes use the card's window.
    """
    fit = -(-max(height, width) // multiple) * multiple
    return min(card_tile_px, max(fit, 64, multiple))


def _network_summary(network: GraphNetwork) -> dict[str, Any]:
    """``roads`` (edge count), ``junctions`` (degree ≥ 3 nodes), ``dead_ends`` (degree-1
    nodes that are not cut by the scene edge or nodata), ``bridged`` (bridge
    lines: gaps bridged and dead ends snapped) and ``total_km`` of a network."""
    nodes, edges = network.nodes, network.edges
    return {
        "roads": len(edges),
        "junctions": int((nodes["kind"] == "junction").sum()) if len(nodes) else 0,
        "dead_ends": int(((nodes["kind"] == "end") & ~nodes["cut"]).sum()) if len(nodes) else 0,
        "bridged": int(edges["bridged"].sum()) if len(edges) else 0,
        "total_km": round(float(edges["length_m"].sum()) / 1000, 3) if len(edges) else 0.0,
    }


def _area_km2(grid: _RasterGrid) -> float:
    """Ground area of a raster grid in km²."""
    row_m, col_m = grid.pixel_size_m
    return float(grid.width * grid.height * row_m * col_m / 1e6)


def _check_geojson_possible(source: Path, grid: _RasterGrid, output: Path) -> None:
    """Refuse GeoJSON output for a raster without CRS (pixel coordinates, or a world file
    without CRS): RFC 7946 needs lon/lat."""
    if output.suffix.lower() == ".geojson" and grid.crs is None:
        what = "georeferencing" if not grid.georeferenced else "CRS (only a geotransform)"
        raise OutputError(
            f"{source} has no {what}, so {output} cannot be RFC 7946 GeoJSON "
            "(lon/lat); write .gpkg or .shp instead"
        )


def _band_vectorizer(grid: _RasterGrid, params: VectorizeParams) -> BandVectorizer:
    """The streaming vectorizer for the rows of ``grid``, in its CRS and pixel size."""
    return BandVectorizer(
        width=grid.width,
        height=grid.height,
        transform=grid.transform,
        crs=grid.crs,
        pixel_size_m=grid.pixel_size_m,
        params=params,
    )


@dataclass
class VectorizeResult:
    """Summary of one ``vectorize_raster`` run."""

    probability: str
    outputs: list[str]
    crs: str | None
    width_px: int
    height_px: int
    roads: int
    junctions: int
    dead_ends: int
    bridged: int
    total_km: float
    seconds: float


def vectorize_raster(
    probability_path: str | Path,
    output: str | Path,
    *,
    params: VectorizeParams | None = None,
    gsd_m: float | None = None,
    overwrite: bool = False,
    band_rows: int = 2048,
    on_progress: Progress | None = None,
) -> VectorizeResult:
    """Vectorize an existing probability or mask raster (e.g. from another model) into roads.

    The raster is read in row bands of ``band_rows`` rows and fed to the same streaming
    vectorizer ``extract`` uses, so large rasters need not fit in memory.

    Args:
        probability_path: GeoTIFF of road probability (roadx uint8 0–254 with 255 nodata,
            float 0–1) or a road mask (0/255 or 0/1).
        output: ``.gpkg``, ``.shp`` or ``.geojson`` (see :func:`extract`).
        params: vectorization parameters (threshold, clean-up, pruning, simplification).
        gsd_m: metres per pixel for a raster without georeferencing.
        overwrite: replace an existing output.
        band_rows: rows read per band (memory ≈ ``band_rows × width × 4 B`` plus a halo).
        on_progress: called with ``(rows_done, total_rows, km2_done)``.

    Returns:
        A :class:`VectorizeResult`.

    Raises:
        roadx.errors.InputError: missing or unreadable raster; no georeferencing without
            ``gsd_m``.
        roadx.errors.OutputError: unsupported extension, missing folder, or output exists.
    """
    from roadx.io import open_probability, vector_output_paths, write_roads

    from roadx.io.raster import scene_reference

    probability_path, output = scene_reference(probability_path), Path(output)
    if isinstance(probability_path, Path) and not probability_path.exists():
        raise InputError(f"probability raster {probability_path} not found")
    vector_output_paths(output, overwrite=overwrite, suffixes=VECTOR_SUFFIXES)
    start = time.perf_counter()
    with open_probability(probability_path, gsd_m=gsd_m) as raster:
        _check_geojson_possible(probability_path, raster, output)
        vectorizer = _band_vectorizer(raster, params or VectorizeParams())
        area_km2 = _area_km2(raster)
        for row0 in range(0, raster.height, band_rows):
            row1 = min(raster.height, row0 + band_rows)
            vectorizer.add_rows(row0, raster.read_rows(row0, row1))
            if on_progress is not None:
                on_progress(row1, raster.height, area_km2 * row1 / raster.height)
        crs = raster.crs.to_string() if raster.crs is not None else None
        width_px, height_px = raster.width, raster.height
    network = vectorizer.finish()
    provenance = _provenance(params or VectorizeParams(), probability=str(probability_path))
    written = write_roads(network, output, overwrite=overwrite, metadata=provenance)
    return VectorizeResult(
        probability=str(probability_path),
        outputs=[str(p) for p in written],
        crs=crs,
        width_px=width_px,
        height_px=height_px,
        **_network_summary(network),
        seconds=round(time.perf_counter() - start, 2),
    )
