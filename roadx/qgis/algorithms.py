"""The roadx Processing algorithms: Extract roads, Vectorize probability, Evaluate.

Each one builds a roadx command line from its parameters, runs it with
:func:`.runner.run_roadx` (progress into the QGIS feedback, cancel stops roadx) and hands the
outputs to QGIS, which loads them with roadx's styles (GeoPackage ``layer_styles``, ``.qml``
sidecars) when "Open output file after running" is checked.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from qgis.core import (
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingOutputVectorLayer,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
    QgsProcessingUtils,
)
from qgis.PyQt.QtGui import QIcon

from . import runner

_ICON = Path(__file__).resolve().parent / "icon.svg"
_VECTOR_EXTENSIONS = (".gpkg", ".shp", ".geojson")
_DOUBLE = QgsProcessingParameterNumber.Double
_INTEGER = QgsProcessingParameterNumber.Integer
_TTA = ["none", "flip", "d4"]
_DEVICES = ["auto", "cpu", "cuda"]

# (parameter, roadx option, description, maximum): the road-network options shared by
# Extract roads and Vectorize probability (roadx/cli/options.py); unset = roadx's default.
_NETWORK = [
    ("MIN_SPUR_M", "--min-spur-m", "Prune dead-end branches shorter than, m (default 10)", None),
    ("SIMPLIFY_M", "--simplify-m", "Douglas–Peucker tolerance, m (default 1)", None),
    ("MIN_EDGE_PROB", "--min-edge-prob",
     "Prune dead ends and isolated pieces with mean probability below (default 0: off)", 0.99),
    ("BRIDGE_M", "--bridge-m", "Bridge gaps ahead of dead ends up to, m (default 30; 0: off)",
     200.0),
    ("BRIDGE_MIN_PROB", "--bridge-min-prob",
     "Lowest geometric-mean probability across a bridged gap (default 0.1)", 0.99),
    ("SNAP_M", "--snap-m", "Snap dead ends onto a road this close ahead, m (default 3; 0: off)",
     None),
    ("MERGE_JUNCTIONS_M", "--merge-junctions-m",
     "Merge junctions joined by a shorter line, m (default 8; 0: off)", None),
    ("DUPLICATE_M", "--duplicate-m",
     "Collapse parallel duplicate lines closer than, m (default 15; 0: off)", None),
]

# Layer post-processors must outlive processAlgorithm (QGIS calls them after it returns).
_POST_PROCESSORS: list["StyleLoader"] = []


class StyleLoader(QgsProcessingLayerPostProcessorInterface):
    """Applies the style roadx stored with a loaded output (QGIS's Processing skips it)."""

    def postProcessLayer(self, layer, context, feedback) -> None:  # noqa: N802 (QGIS's name)
        message, ok = layer.loadDefaultStyle()
        if not ok:
            feedback.pushInfo(f"{layer.name()}: roadx style not loaded ({message})")
        layer.triggerRepaint()


def _advanced(param: QgsProcessingParameterDefinition) -> QgsProcessingParameterDefinition:
    param.setFlags(param.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
    return param


def destination_path(value: str) -> str:
    """A file path from an output widget's value (``ogr:dbname='x.gpkg' table=…`` → x.gpkg)."""
    match = re.match(r"^ogr:dbname='(?P<path>(?:[^']|'')+)'", value)
    return match["path"].replace("''", "'") if match else value


def roads_layers(output: str) -> tuple[str, str]:
    """The data sources of the roads and junctions layers roadx writes for ``output``."""
    path = Path(output)
    if path.suffix.lower() == ".gpkg":
        return f"{output}|layername=roads", f"{output}|layername=junctions"
    return output, str(path.with_name(f"{path.stem}_junctions{path.suffix}"))


class RoadxAlgorithm(QgsProcessingAlgorithm):
    """What the three algorithms share: running roadx, errors, loading outputs."""

    NAME = ""
    DISPLAY = ""
    HELP = ""

    def name(self) -> str:
        return self.NAME

    def displayName(self) -> str:  # noqa: N802 (QGIS's name)
        return self.DISPLAY

    def shortHelpString(self) -> str:  # noqa: N802 (QGIS's name)
        return self.HELP

    def icon(self) -> QIcon:
        return QIcon(str(_ICON))

    def createInstance(self):  # noqa: N802 (QGIS's name)
        return type(self)()

    def flags(self):
        # roadx runs in its own process; a GUI run keeps QGIS responsive in the background
        return super().flags() | QgsProcessingAlgorithm.FlagCanCancel

    # -- parameters ------------------------------------------------------------------------
    def _add_network_parameters(self) -> None:
        self.addParameter(QgsProcessingParameterNumber(
            "THRESHOLD", "Road probability threshold (hysteresis high; low = 0.6 × it)",
            type=_DOUBLE, defaultValue=0.5, minValue=0.01, maxValue=1.0))
        for name, _, description, maximum in _NETWORK:
            param = QgsProcessingParameterNumber(name, description, type=_DOUBLE, optional=True,
                                                 minValue=0.0)
            if maximum is not None:
                param.setMaximum(maximum)
            self.addParameter(_advanced(param))
        self.addParameter(_advanced(QgsProcessingParameterBoolean(
            "NO_REPAIR", "No network repair (no bridging, snapping, junction merging or "
            "duplicate collapsing)", defaultValue=False)))

    def _add_gsd_parameter(self) -> None:
        self.addParameter(_advanced(QgsProcessingParameterNumber(
            "GSD", "Metres per pixel of an image without georeferencing (outputs in pixel space)",
            type=_DOUBLE, optional=True, minValue=0.0)))

    def _add_overwrite_parameter(self) -> None:
        self.addParameter(QgsProcessingParameterBoolean(
            "OVERWRITE", "Overwrite existing outputs", defaultValue=False))

    @staticmethod
    def _is_set(parameters: dict, name: str) -> bool:
        value = parameters.get(name)
        return value is not None and value != ""

    def _number_options(self, parameters, context, names) -> list[str]:
        args = []
        for name, option in names:
            if self._is_set(parameters, name):
                args += [option, repr(self.parameterAsDouble(parameters, name, context))]
        return args

    def _network_args(self, parameters, context) -> list[str]:
        args = []
        if self.parameterAsBoolean(parameters, "NO_REPAIR", context):
            args.append("--no-repair")  # before the explicit options, which still apply
        args += self._number_options(parameters, context, [("THRESHOLD", "--threshold")])
        args += self._number_options(parameters, context, [(n, o) for n, o, _, _ in _NETWORK])
        args += self._number_options(parameters, context, [("GSD", "--gsd")])
        if self.parameterAsBoolean(parameters, "OVERWRITE", context):
            args.append("--overwrite")
        return args

    def _raster_source(self, parameters, name, context) -> str:
        layer = self.parameterAsRasterLayer(parameters, name, context)
        if layer is None:
            raise QgsProcessingException(f"{name}: no raster layer given")
        if layer.providerType() != "gdal":
            raise QgsProcessingException(
                f"{layer.name()}: roadx reads files GDAL opens; this layer comes from the "
                f"{layer.providerType()} provider")
        return layer.source()

    def _vector_output(self, parameters, context) -> str:
        output = destination_path(self.parameterAsOutputLayer(parameters, "OUTPUT", context))
        if Path(output).suffix.lower() not in _VECTOR_EXTENSIONS:
            raise QgsProcessingException(
                f"{output}: roadx writes .gpkg, .shp or .geojson; choose one of these formats")
        return output

    # -- running ---------------------------------------------------------------------------
    def _run(self, args: list[str], feedback: QgsProcessingFeedback | None,
             outputs: list[str] = ()) -> str:
        """Run roadx with ``args``; return its stdout. Errors become QgsProcessingException.

        ``outputs``: the output paths, whose folders are cleaned if roadx must be killed.
        """
        from .provider import configured_executable

        feedback = feedback or QgsProcessingFeedback()
        try:
            command = runner.find_roadx(configured_executable())
            feedback.pushCommandInfo(" ".join(shlex.quote(a) for a in [*command, *args]))
            return runner.run_roadx(
                args, command=command, on_line=feedback.pushConsoleInfo,
                on_progress=feedback.setProgress,
                on_start=lambda pid: feedback.pushDebugInfo(f"roadx process id {pid}"),
                on_exit=lambda code: feedback.pushDebugInfo(f"roadx exit code {code}"),
                is_canceled=feedback.isCanceled,
                cleanup_dirs=sorted({str(Path(p).parent) for p in outputs if p}),
            )
        except (runner.RoadxNotFoundError, runner.RoadxCanceledError) as err:
            raise QgsProcessingException(str(err)) from None
        except runner.RoadxFailedError as err:
            message = str(err).replace("pass --overwrite", 'check "Overwrite existing outputs"')
            raise QgsProcessingException(f"roadx: {message}") from None
        except OSError as err:
            raise QgsProcessingException(f"roadx could not be started: {err}") from None

    @staticmethod
    def _load_on_completion(context: QgsProcessingContext, replaces: str,
                            layers: list[tuple[str, str, str]]) -> None:
        """When QGIS is to load the output ``replaces``, load ``layers`` (source, name, output
        name) in its place."""
        if not context.willLoadLayerOnCompletion(replaces):
            return
        project = context.layerToLoadOnCompletionDetails(replaces).project
        pending = dict(context.layersToLoadOnCompletion())
        pending.pop(replaces, None)
        context.setLayersToLoadOnCompletion(pending)
        RoadxAlgorithm._load_styled(context, project, layers)

    @staticmethod
    def _load_styled(context: QgsProcessingContext, project,
                     layers: list[tuple[str, str, str]]) -> None:
        """Load ``layers`` (source, name, output name) into ``project`` when the algorithm
        has finished, each with the style roadx stored (:class:`StyleLoader`)."""
        for source, name, output_name in layers:
            details = QgsProcessingContext.LayerDetails(name, project, output_name)
            loader = StyleLoader()
            _POST_PROCESSORS.append(loader)
            details.setPostProcessor(loader)
            context.addLayerToLoadOnCompletion(source, details)


class ExtractRoadsAlgorithm(RoadxAlgorithm):
    """``roadx predict``: a scene raster → roads, junctions and optionally the probability."""

    NAME = "extractroads"
    DISPLAY = "Extract roads"
    HELP = (
        "Extracts the road network of a satellite or aerial scene (any CRS, 1–N bands) with "
        "roadx's model (roadx predict): road lines and junctions in the scene's CRS, styled, "
        "and optionally the road probability as a GeoTIFF. The output format follows the "
        "file extension: GeoPackage (layers roads and junctions), Shapefile or GeoJSON "
        "(EPSG:4326; junctions in <name>_junctions). Runs on the CPU unless CUDA is "
        "available to roadx; test-time augmentation 'none' is 8× faster than 'd4'. "
        "roadx runs in a separate process (Processing → Options → Providers → roadx)."
    )

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 (QGIS's name)
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Scene raster"))
        self.addParameter(QgsProcessingParameterFile(
            "WEIGHTS", "Model weights (.safetensors; default: the shipped weights)",
            optional=True, fileFilter="roadx weights (*.safetensors)"))
        self.addParameter(QgsProcessingParameterEnum(
            "TTA", "Test-time augmentation", options=_TTA, defaultValue=2))
        self._add_network_parameters()
        self._add_gsd_parameter()
        self.addParameter(_advanced(QgsProcessingParameterString(
            "MODEL", "Architecture whose default weights to use", defaultValue="d3fnet34")))
        self.addParameter(_advanced(QgsProcessingParameterEnum(
            "DEVICE", "Compute device", options=_DEVICES, defaultValue=0)))
        self.addParameter(_advanced(QgsProcessingParameterString(
            "BANDS", "Source bands in R,G,B order, 1-based (e.g. 1,2,3), or one band; R,G,B,NIR for a NIR model",
            optional=True)))
        self.addParameter(_advanced(QgsProcessingParameterNumber(
            "NODATA", "No-data value for a scene that does not declare it (e.g. 0 for "
            "zero-filled edges); replaces the file's", type=_DOUBLE, optional=True)))
        self.addParameter(_advanced(QgsProcessingParameterNumber(
            "BATCH_SIZE", "Windows per forward pass", type=_INTEGER, defaultValue=4,
            minValue=1)))
        self._add_overwrite_parameter()
        self.addParameter(QgsProcessingParameterVectorDestination(
            "OUTPUT", "Roads", type=QgsProcessing.TypeVectorLine))
        self.addParameter(QgsProcessingParameterRasterDestination(
            "PROBABILITY", "Road probability", optional=True, createByDefault=False))
        self.addOutput(QgsProcessingOutputVectorLayer(
            "JUNCTIONS", "Junctions", QgsProcessing.TypeVectorPoint))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS's name)
        scene = self._raster_source(parameters, "INPUT", context)
        output = self._vector_output(parameters, context)
        args = ["predict", scene, "--output", output,
                "--tta", _TTA[self.parameterAsEnum(parameters, "TTA", context)],
                "--model", self.parameterAsString(parameters, "MODEL", context) or "d3fnet34",
                "--device", _DEVICES[self.parameterAsEnum(parameters, "DEVICE", context)],
                "--batch-size", str(self.parameterAsInt(parameters, "BATCH_SIZE", context))]
        weights = self.parameterAsFile(parameters, "WEIGHTS", context)
        if weights:
            args += ["--weights", weights]
        bands = self.parameterAsString(parameters, "BANDS", context).strip()
        if bands:
            args += ["--bands", bands]
        args += self._number_options(parameters, context, [("NODATA", "--nodata")])
        probability = ""
        if self._is_set(parameters, "PROBABILITY"):
            probability = self.parameterAsOutputLayer(parameters, "PROBABILITY", context)
        if probability:
            args += ["--prob", probability]
        args += self._network_args(parameters, context)
        self._run(args, feedback, [output, probability])

        roads, junctions = roads_layers(output)
        self._load_on_completion(context, output, [(roads, "roads", "OUTPUT"),
                                                   (junctions, "junctions", "JUNCTIONS")])
        if probability:
            self._load_on_completion(context, probability,
                                     [(probability, "road probability", "PROBABILITY")])
        return {"OUTPUT": roads, "JUNCTIONS": junctions, "PROBABILITY": probability or None}


class VectorizeProbabilityAlgorithm(RoadxAlgorithm):
    """``roadx vectorize``: a probability or mask raster → roads and junctions."""

    NAME = "vectorizeprobability"
    DISPLAY = "Vectorize probability"
    HELP = (
        "Turns a road probability or mask raster into a routable road network (roadx "
        "vectorize): roadx's uint8 probabilities (e.g. from Extract roads), float 0–1 "
        "probabilities, 0/255 or 0/1 masks from another model. Thresholding, skeleton "
        "tracing, pruning and network repair (gap bridging, T-junction snapping, junction "
        "merging) as in Extract roads; the advanced parameters tune them."
    )

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 (QGIS's name)
        self.addParameter(QgsProcessingParameterRasterLayer(
            "INPUT", "Probability or mask raster"))
        self._add_network_parameters()
        self._add_gsd_parameter()
        self._add_overwrite_parameter()
        self.addParameter(QgsProcessingParameterVectorDestination(
            "OUTPUT", "Roads", type=QgsProcessing.TypeVectorLine))
        self.addOutput(QgsProcessingOutputVectorLayer(
            "JUNCTIONS", "Junctions", QgsProcessing.TypeVectorPoint))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS's name)
        probability = self._raster_source(parameters, "INPUT", context)
        output = self._vector_output(parameters, context)
        self._run(["vectorize", probability, "--output", output,
                   *self._network_args(parameters, context)], feedback, [output])
        roads, junctions = roads_layers(output)
        self._load_on_completion(context, output, [(roads, "roads", "OUTPUT"),
                                                   (junctions, "junctions", "JUNCTIONS")])
        return {"OUTPUT": roads, "JUNCTIONS": junctions}


# (output, description, path in roadx eval's JSON report)
_METRICS = [
    ("APLS", "APLS", ("apls", "apls")),
    ("APLS_TILES", "APLS per tile (mean)", ("apls_tiles", "apls")),
    ("CCQ_COMPLETENESS", "CCQ completeness", ("ccq", "completeness")),
    ("CCQ_CORRECTNESS", "CCQ correctness", ("ccq", "correctness")),
    ("CCQ_QUALITY", "CCQ quality", ("ccq", "quality")),
    ("TOPO_F1", "TOPO F1", ("topo", "f1")),
    ("JUNCTION_F1", "Junction F1", ("junctions", "f1")),
    ("PIXEL_IOU", "Pixel IoU", ("pixel", "iou")),
]


def _lookup(report: dict, path: tuple[str, ...]):
    value = report
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def summary_line(report: dict) -> str:
    """One line of the headline metrics of a ``roadx eval --json`` report."""
    parts = [f"{description} {value:.3f}" for _, description, path in _METRICS
             if (value := _lookup(report, path)) is not None]
    return ", ".join(parts) or "no metric computed"


class EvaluateAlgorithm(RoadxAlgorithm):
    """``roadx eval``: a prediction against reference roads → metrics, JSON report."""

    NAME = "evaluate"
    DISPLAY = "Evaluate"
    HELP = (
        "Compares a road prediction with reference roads (roadx eval): APLS (whole area and "
        "per tile), CCQ completeness / correctness / quality, TOPO, junction precision / "
        "recall / F1 and, for rasters, pixel IoU/F1 and relaxed F1. The prediction is road "
        "vectors (e.g. from Extract roads), a probability or mask raster, or a CSV of "
        "pixel-coordinate WKT lines (georeferenced through the scene image); the reference "
        "is centreline vectors or a mask. Layers of the project or files. The full report "
        "is written as JSON; a report folder adds diff.gpkg (missed, spurious, matched "
        "roads) and comparison.png."
    )

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 (QGIS's name)
        self.addParameter(QgsProcessingParameterFile(
            "PREDICTION", "Prediction (road vectors, probability/mask raster or WKT CSV)"))
        self.addParameter(QgsProcessingParameterFile(
            "REFERENCE", "Reference roads (centreline vectors or mask raster)"))
        self.addParameter(QgsProcessingParameterRasterLayer(
            "IMAGE", "Scene image (figure underlay, default area, georeferences a WKT CSV)",
            optional=True))
        self.addParameter(_advanced(QgsProcessingParameterNumber(
            "BUFFER_M", "CCQ buffer, m (default 3)", type=_DOUBLE, optional=True,
            minValue=0.0)))
        self.addParameter(_advanced(QgsProcessingParameterNumber(
            "THRESHOLD", "Probability threshold of a raster prediction (default 0.5)",
            type=_DOUBLE, optional=True, minValue=0.0, maxValue=1.0)))
        self.addParameter(_advanced(QgsProcessingParameterNumber(
            "APLS_TILE_M", "APLS tile size, m (default 400)", type=_DOUBLE, optional=True,
            minValue=0.0)))
        self.addParameter(_advanced(QgsProcessingParameterBoolean(
            "TOPO", "Compute TOPO", defaultValue=True)))
        self._add_gsd_parameter()
        self._add_overwrite_parameter()
        self.addParameter(QgsProcessingParameterFileDestination(
            "OUTPUT", "JSON report", fileFilter="JSON (*.json)", optional=True))
        self.addParameter(QgsProcessingParameterFolderDestination(
            "REPORT", "Report folder (report.json, diff.gpkg, comparison.png)", optional=True,
            createByDefault=False))
        for name, description, _ in _METRICS:
            self.addOutput(QgsProcessingOutputNumber(name, description))
        self.addOutput(QgsProcessingOutputString("SUMMARY", "Summary"))

    def _input_path(self, parameters, name, context) -> str:
        """A file path, or the source of the project layer (id or name) given instead."""
        value = self.parameterAsFile(parameters, name, context) or ""
        if value and not Path(value).exists():
            layer = QgsProcessingUtils.mapLayerFromString(value, context)
            if layer is not None:
                value = layer.source()
        path = value.split("|", 1)[0]  # OGR's "file.gpkg|layername=…": roadx picks `roads`
        if not path:
            raise QgsProcessingException(f"{name}: no file given")
        return path

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS's name)
        args = ["eval", self._input_path(parameters, "PREDICTION", context),
                self._input_path(parameters, "REFERENCE", context), "--json"]
        if self._is_set(parameters, "IMAGE"):
            args += ["--image", self._raster_source(parameters, "IMAGE", context)]
        args += self._number_options(parameters, context, [
            ("BUFFER_M", "--buffer-m"), ("THRESHOLD", "--threshold"),
            ("APLS_TILE_M", "--apls-tile-m"), ("GSD", "--gsd")])
        if not self.parameterAsBoolean(parameters, "TOPO", context):
            args.append("--no-topo")
        report_dir = ""
        if self._is_set(parameters, "REPORT"):
            report_dir = self.parameterAsFileOutput(parameters, "REPORT", context)
        if report_dir:
            args += ["--report", report_dir]
        if self.parameterAsBoolean(parameters, "OVERWRITE", context):
            args.append("--overwrite")
        json_path = ""
        if self._is_set(parameters, "OUTPUT"):
            json_path = self.parameterAsFileOutput(parameters, "OUTPUT", context)
        if json_path and Path(json_path).exists() and "--overwrite" not in args:
            raise QgsProcessingException(
                f'{json_path} exists; check "Overwrite existing outputs" to replace it')

        stdout = self._run(args, feedback, [report_dir])
        try:
            report = json.loads(stdout)
        except ValueError:
            raise QgsProcessingException("roadx eval printed no JSON report") from None
        if json_path:
            Path(json_path).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        summary = summary_line(report)
        feedback.pushInfo(summary)
        results = {name: _lookup(report, path) for name, _, path in _METRICS}
        results.update(SUMMARY=summary, OUTPUT=json_path or None, REPORT=report_dir or None)
        diff = Path(report_dir) / "diff.gpkg" if report_dir else None
        if diff is not None and diff.exists() and context.project() is not None:
            self._load_styled(context, context.project(), [
                (f"{diff}|layername={layer}", f"{layer} (roadx eval)", "")
                for layer in ("matched", "spurious", "missed")])
        return results
