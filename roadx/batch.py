"""Many scenes in one resumable run: ``roadx predict A.tif B.tif -o OUT_DIR`` and
:func:`predict_many`.

The model is loaded once (:class:`roadx.pipeline.Predictor`) and every scene runs through
:func:`roadx.pipeline.extract` unchanged, writing ``OUT_DIR/<scene stem>.<format>`` (plus
``<stem>_prob.tif`` / ``<stem>_preview.png`` in the folders asked for). A scene that fails
is recorded and the batch goes on.

``OUT_DIR/index.json`` records every scene: ``status`` (``ok``, ``failed``, ``skipped`` —
finished by an earlier run —, or ``pending`` while the batch is still running), ``roads``,
``km``, ``seconds``, ``outputs`` (path relative to ``OUT_DIR``, bytes, mtime in ns),
``error``, and the ``settings_hash`` it was made with. It is rewritten atomically (temporary
file + :func:`os.replace`) after each scene, so a killed batch loses at most the scene in
flight, whose temporary files the next run removes (:func:`roadx.fs.remove_stale_partials`).
Running the same batch again skips every scene whose entry is ``ok`` or ``skipped`` with the
same settings hash and whose outputs still exist with the recorded sizes and mtimes; the
others run again. ``overwrite`` redoes all scenes.

``backend="ray"`` runs the scenes on a Ray cluster (:mod:`roadx.ray_backend`), several at
once, with outputs identical to the local backend's (so the settings hash, and resuming,
do not depend on the backend). ``merge`` also writes all scenes' roads as one network
(:func:`merge_outputs`).
"""

import dataclasses
import datetime
import glob
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from roadx.errors import InputError, OutputError, OutputExistsError, RoadxError, describe_os_error
from roadx.fs import check_writable_folder, discard, partial_path
from roadx.io.raster import is_remote
from roadx.pipeline import (
    VECTOR_SUFFIXES,
    ExtractOptions,
    Predictor,
    Progress,
    file_sha256,
    resolve_weights,
    with_settings,
)

if TYPE_CHECKING:
    from roadx.ray_backend import RayOptions

log = logging.getLogger(__name__)

SCENE_SUFFIXES = (".tif", ".tiff", ".vrt", ".jp2", ".img")
"""Files a folder given as input contributes (compared case-insensitively)."""
FORMATS = ("gpkg", "shp", "geojson")
BACKENDS = ("local", "ray")
INDEX_NAME = "index.json"
INDEX_KIND = "roadx-batch-index"
INDEX_VERSION = 1
_GLOB_CHARS = frozenset("*?[")

OnScene = Callable[[int, int, "SceneRecord"], None]
"""``on_scene(i, n, record)``: before scene ``i`` (0-based) of ``n`` runs (``record.status``
``"running"``), and when it is done (``ok``, ``failed`` or ``skipped``)."""


@dataclass
class OutputFile:
    """One output of a finished scene, as index.json records it.

    Attributes:
        path: relative to the batch's output folder (``../`` for other folders).
        bytes: size in bytes.
        mtime_ns: modification time in nanoseconds since the epoch.
    """

    path: str
    bytes: int
    mtime_ns: int


@dataclass
class SceneRecord:
    """What the batch did with one scene (one entry of index.json).

    Attributes:
        scene: the scene as run: an absolute local path, or a GDAL path/URL as given.
        stem: the name its outputs are named after (``<stem>.gpkg``).
        status: ``"ok"``, ``"failed"``, ``"skipped"`` (finished by an earlier run with the
            same settings, outputs unchanged), ``"pending"`` (not run yet) or ``"running"``.
        roads: road lines found (None unless finished).
        km: their total length in km.
        area_km2: the scene's area in km².
        seconds: wall time of the scene's run, in seconds.
        outputs: the files written, with sizes and mtimes.
        error: the one-line error of a failed scene.
        settings_hash: hash of the settings the outputs were made with.
        finished_utc: when the scene finished (ISO 8601, UTC).
    """

    scene: str
    stem: str
    status: str = "pending"
    roads: int | None = None
    km: float | None = None
    area_km2: float | None = None
    seconds: float | None = None
    outputs: list[OutputFile] = field(default_factory=list)
    error: str | None = None
    settings_hash: str | None = None
    finished_utc: str | None = None


@dataclass
class BatchResult:
    """Summary of :func:`predict_many`.

    Attributes:
        out_dir: the output folder.
        index: path of its ``index.json``.
        settings_hash: hash of the settings of this run (see :func:`settings_fingerprint`).
        scenes: one record per scene, in input order.
        ok: scenes run successfully now.
        failed: scenes that failed (their errors are in ``scenes``).
        skipped: scenes finished by an earlier run and left as they were.
        seconds: wall time of the whole batch.
        backend: ``"local"`` or ``"ray"``.
        cluster: with Ray, the cluster's counters line (stripes, workers, nodes, km²/h,
            worker restarts); None otherwise.
        merged: the merged network file (``merge``), or None.
        merge_error: why the merge failed (the scenes' outputs are complete), or None.
    """

    out_dir: str
    index: str
    settings_hash: str
    scenes: list[SceneRecord]
    ok: int
    failed: int
    skipped: int
    seconds: float
    backend: str = "local"
    cluster: str | None = None
    merged: str | None = None
    merge_error: str | None = None

    @property
    def all_ok(self) -> bool:
        """True when no scene failed."""
        return self.failed == 0


@dataclass(frozen=True)
class _Plan:
    """Where one scene's outputs go."""

    record: SceneRecord
    vector: Path
    probability: Path | None
    preview: Path | None

    @property
    def files(self) -> list[Path]:
        """Every file the scene writes (roads first; the Shapefile/GeoJSON junctions file)."""
        files = [self.vector]
        if self.vector.suffix.lower() != ".gpkg":
            files.append(self.vector.with_name(f"{self.vector.stem}_junctions{self.vector.suffix}"))
        return files + [p for p in (self.preview, self.probability) if p is not None]


def is_scene_collection(text: str) -> bool:
    """True when an input names several scenes: ``@list``, a ``.txt`` list, a folder, or a
    glob pattern (``*``, ``?``, ``[``) that is not itself an existing file."""
    if is_remote(text):
        return False
    if text.startswith("@"):
        return True
    path = Path(text).expanduser()
    # os.path's tests never raise (a name too long for the file system is simply absent)
    if os.path.isdir(path) or (path.suffix.lower() == ".txt" and os.path.isfile(path)):
        return True
    return not os.path.exists(path) and bool(_GLOB_CHARS & set(text))


def expand_scenes(inputs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[str]:
    """The scenes named by ``inputs``, in order, each once.

    Each input is one of: a scene file (also a GDAL VRT mosaic, which is one scene); a GDAL
    ``/vsi…/`` path or URL (taken as given); a folder (its files ending in
    :data:`SCENE_SUFFIXES`, sorted by name, not recursive); a glob pattern such as
    ``"tiles/*.tif"`` (files matching it, sorted); or a list file, ``@list`` or any ``.txt``
    file: one scene a line, blank lines and lines starting with ``#`` ignored, each line
    expanded as above (relative paths from the current folder, as ``ls > list.txt`` writes
    them). A missing scene file is kept: its run fails and is reported.

    Returns:
        Absolute local paths (as strings) and GDAL paths/URLs.

    Raises:
        roadx.errors.InputError: no input, an empty folder, a pattern matching no file, an
            unreadable or empty list file.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    scenes: list[str] = []
    for item in inputs:
        scenes += _expand(os.fspath(item), in_list=False)
    unique = list(dict.fromkeys(scenes))
    if len(unique) < len(scenes):
        log.info("%d scene(s) named more than once run once", len(scenes) - len(unique))
    if not unique:
        raise InputError("no scenes given; name scene files, folders, patterns or @list.txt")
    return unique


def _expand(text: str, *, in_list: bool) -> list[str]:
    """One input of :func:`expand_scenes` (``in_list``: a line of a list file, which may
    not name another list)."""
    if is_remote(text):
        return [text]
    if text.startswith("@") and not in_list:
        return _read_list(Path(text[1:]).expanduser())
    path = Path(text).expanduser()
    if os.path.isdir(path):
        files = sorted(p for p in path.iterdir()
                       if p.suffix.lower() in SCENE_SUFFIXES and p.is_file())
        if not files:
            raise InputError(f"{path}: no scene in this folder (files ending in "
                             f"{', '.join(SCENE_SUFFIXES)})")
        return [str(p.absolute()) for p in files]
    if path.suffix.lower() == ".txt" and os.path.isfile(path) and not in_list:
        return _read_list(path)
    if not os.path.exists(path) and _GLOB_CHARS & set(text):
        matches = sorted(Path(p) for p in glob.glob(str(path)) if os.path.isfile(p))
        if not matches:
            raise InputError(f"{text}: no file matches this pattern")
        return [str(p.absolute()) for p in matches]
    return [str(path.absolute())]


def _read_list(path: Path) -> list[str]:
    """The scenes of a list file (see :func:`expand_scenes`)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        reason = describe_os_error(err) if isinstance(err, OSError) else "not UTF-8 text"
        raise InputError(f"{path}: cannot read the list of scenes ({reason})") from None
    scenes: list[str] = []
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            scenes += _expand(line, in_list=True)
    if not scenes:
        raise InputError(f"{path}: the list of scenes is empty (one path a line, # comments)")
    return scenes


def scene_stem(scene: str) -> str:
    """The name a scene's outputs are named after: its file name without the extension
    (``/vsizip/a.zip/b.tif`` → ``b``; a URL's query is ignored)."""
    name = scene.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    stem = Path(name).stem if is_remote(scene) else Path(scene).stem
    return stem or "scene"


def settings_fingerprint(options: ExtractOptions, *, fmt: str, probability: bool,
                         preview: bool, weights_sha256: str) -> tuple[str, dict[str, Any]]:
    """The settings that shape a batch's outputs, and their sha256 (hex).

    Included: the weights' sha256, model, window, overlap, bands, declared nodata (when
    given), GSD, resampling, TTA, blending, precision, every vectorization parameter, the
    vector format and whether a probability raster and a preview are written. Left out, as
    they do not change the outputs: device, batch size, compile, threads, ``force``,
    ``overwrite``.

    Returns:
        ``(hash, settings)``: the hex digest and the JSON-able settings it was made from.
    """
    predict = dataclasses.asdict(options.predict)
    for name in ("device", "batch_size", "compile", "max_images_per_forward"):
        predict.pop(name, None)
    settings = {
        "weights_sha256": weights_sha256,
        "model": options.model,
        "tile_px": options.tile_px,
        "overlap_px": options.overlap_px,
        "bands": list(options.bands) if options.bands is not None else None,
        "gsd_m": options.gsd_m,
        "resample": options.resample,
        "predict": predict,
        "vectorize": dataclasses.asdict(options.vectorize),
        "format": fmt,
        "probability": probability,
        "preview": preview,
    }
    if options.nodata is not None:  # only when given: earlier batches keep their hash
        settings["nodata"] = options.nodata
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest(), settings


def predict_many(
    scenes: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    options: ExtractOptions | None = None,
    fmt: str = "gpkg",
    prob_dir: str | os.PathLike[str] | None = None,
    preview_dir: str | os.PathLike[str] | None = None,
    predictor: Predictor | None = None,
    on_scene: OnScene | None = None,
    on_progress: Progress | None = None,
    backend: str = "local",
    ray: "RayOptions | None" = None,
    merge: str | os.PathLike[str] | None = None,
    **settings: Any,
) -> BatchResult:
    """Extract the roads of many scenes with one loaded model; resumable.

    Writes ``out_dir/<stem>.<fmt>`` per scene (``<stem>``: the scene's file name without
    extension), ``prob_dir/<stem>_prob.tif`` and ``preview_dir/<stem>_preview.png`` when
    those folders are given (they may be ``out_dir``), and ``out_dir/index.json`` (see the
    module docstring), rewritten atomically after each scene. A scene that fails is recorded
    (``status "failed"``, ``error``) and the batch goes on. Scenes finished by an earlier run
    with the same settings whose outputs are unchanged are skipped (``status "skipped"``)
    unless ``options.overwrite``.

    Existing files are replaced only with ``options.overwrite``, or when index.json records
    them as outputs of an earlier run that are still unchanged (a scene redone because its
    settings changed or one of its files was deleted).

    Args:
        scenes: scene files, folders, glob patterns, ``@list.txt`` files, GDAL paths or
            URLs (see :func:`expand_scenes`).
        out_dir: the output folder (created, with its parents, if missing).
        options: settings of every scene (:class:`roadx.pipeline.ExtractOptions`; its
            ``probability_path`` and ``preview_path`` must be None, see ``prob_dir``);
            default: ``predictor``'s options, or the defaults.
        fmt: ``"gpkg"``, ``"shp"`` or ``"geojson"``.
        prob_dir: folder for the probability rasters (created if missing).
        preview_dir: folder for the preview PNGs (created if missing).
        predictor: a loaded :class:`roadx.pipeline.Predictor` to use (default: one is
            loaded, once, when a scene has to run).
        on_scene: see :data:`OnScene` (called in this thread, also with ``backend="ray"``).
        on_progress: ``(windows_done, windows_total, km2_done)`` of the scene running; with
            ``backend="ray"`` several scenes run at once, so it gets ``(scenes_done,
            scenes_total, km2_done)`` of the whole batch instead.
        backend: ``"local"`` (this process, one scene after the other) or ``"ray"`` (Ray
            actors, :mod:`roadx.ray_backend`; the same outputs).
        ray: cluster, workers and stripe settings of ``backend="ray"``
            (:class:`roadx.ray_backend.RayOptions`; default: a local Ray instance).
        merge: also write every finished scene's roads (also those skipped as done
            earlier) into this one vector file, joining lines that meet at the borders of
            adjacent scenes (:func:`merge_outputs`); rewritten at the end of each run.
        **settings: field overrides as in :func:`roadx.predict_roads` (``tta="none"``, ...).

    Returns:
        A :class:`BatchResult`; ``failed`` counts the scenes that failed.

    Raises (before any scene runs; nothing is written then):
        roadx.errors.InputError: no scenes, an empty folder, a pattern without match, an
            unknown format or setting, output names of two scenes that collide (same stem),
            a folder name that looks like a file, ``options`` with another model than
            ``predictor``, ``options.aux`` (an auxiliary raster pairs with one scene).
        roadx.errors.OutputError: an unwritable folder, an index.json that is not roadx's.
        roadx.errors.OutputExistsError: outputs exist that this batch did not write (pass
            ``overwrite``).
        roadx.errors.CheckpointError, roadx.errors.DeviceError: the model cannot be loaded.
        roadx.ray_backend.RayBackendError: ``backend="ray"`` without Ray installed, or a
            cluster that cannot be reached.
    """
    start = time.perf_counter()
    if backend not in BACKENDS:
        raise InputError(f"backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    if backend == "ray" and predictor is not None:
        raise InputError("backend='ray' loads the model on the Ray workers; do not pass a "
                         "predictor")
    if options is None and predictor is not None:
        options = predictor.options
    options = with_settings(options or ExtractOptions(), settings)
    if predictor is not None:
        predictor.check_options(options)
    if options.probability_path is not None or options.preview_path is not None:
        raise InputError("for many scenes give prob_dir/preview_dir (folders), not "
                         "probability_path/preview_path")
    if options.aux is not None:
        raise InputError(
            f"--aux {options.aux} pairs one auxiliary raster with one scene; a batch of scenes "
            "cannot take it. Run roadx predict SCENE --aux AUX -o OUT.gpkg for each scene."
        )
    if fmt not in FORMATS:
        raise InputError(f"format {fmt!r}: expected one of {', '.join(FORMATS)}")
    names = expand_scenes(scenes)
    out = _folder_name(out_dir, "-o", VECTOR_SUFFIXES)
    probs = None if prob_dir is None else _folder_name(prob_dir, "--prob", (".tif", ".tiff"))
    previews = None if preview_dir is None else _folder_name(preview_dir, "--preview",
                                                              (".png",))
    plans = _plans(names, out, fmt, probs, previews)
    merged = None if merge is None else _merge_target(
        merge, plans, options.overwrite, _earlier_merge(out / INDEX_NAME))
    for folder in dict.fromkeys(f for f in (out, probs, previews) if f is not None):
        _make_folder(folder)
    weights_sha256 = (predictor.weights_sha256 if predictor is not None
                      else file_sha256(resolve_weights(options)))
    digest, used = settings_fingerprint(options, fmt=fmt, probability=probs is not None,
                                        preview=previews is not None,
                                        weights_sha256=weights_sha256)
    index_path = out / INDEX_NAME
    earlier = {} if options.overwrite else _read_index(index_path)
    replace = _decide(plans, earlier, digest, out, overwrite=options.overwrite)
    to_run = [p for p in plans if p.record.status == "pending"]
    log.info("%d scene(s): %d to run, %d finished earlier", len(plans), len(to_run),
             len(plans) - len(to_run))

    named = {p.record.scene for p in plans}
    kept = [entry for scene, entry in earlier.items() if scene not in named]

    def save() -> None:
        _write_index(index_path, digest, used, [p.record for p in plans], kept, merged)

    save()
    cluster = None
    if backend == "ray" and to_run:
        from roadx.ray_backend import RayBackend

        with RayBackend(options, ray) as runner:
            _run_concurrently(runner, plans, options, out, replace, digest, save,
                              on_scene=on_scene, on_progress=on_progress,
                              scenes_in_flight=runner.ray_options.scenes_in_flight)
            cluster = runner.progress.line()
    else:
        if to_run and predictor is None:
            predictor = Predictor(options)
        for i, plan in enumerate(plans):
            record = plan.record
            if record.status == "skipped":
                if on_scene is not None:
                    on_scene(i, len(plans), record)
                continue
            assert predictor is not None
            record.status = "running"
            if on_scene is not None:
                on_scene(i, len(plans), record)
            _run_scene(predictor, plan, options, out,
                       overwrite=options.overwrite or record.scene in replace, digest=digest,
                       on_progress=on_progress)
            save()
            if on_scene is not None:
                on_scene(i, len(plans), record)
    records = [p.record for p in plans]
    merge_error = None
    if merged is not None:
        done = [p.vector for p in plans if p.record.status in ("ok", "skipped")]
        try:
            merge_outputs(done, merged, overwrite=True)
        except RoadxError as err:  # the scenes are done; report the merge
            merge_error, merged = _one_line(err), None
            log.warning("merge failed: %s", merge_error)
    return BatchResult(
        out_dir=str(out), index=str(index_path), settings_hash=digest, scenes=records,
        ok=sum(r.status == "ok" for r in records),
        failed=sum(r.status == "failed" for r in records),
        skipped=sum(r.status == "skipped" for r in records),
        seconds=round(time.perf_counter() - start, 2),
        backend=backend, cluster=cluster, merged=None if merged is None else str(merged),
        merge_error=merge_error,
    )


def _run_concurrently(runner: Any, plans: list[_Plan], options: ExtractOptions, out: Path,
                      replace: set[str], digest: str, save: Callable[[], None], *,
                      on_scene: OnScene | None, on_progress: Progress | None,
                      scenes_in_flight: int) -> None:
    """Run the pending scenes with ``runner.extract`` (the Ray backend), up to
    ``scenes_in_flight`` at once in driver threads; index.json is saved and ``on_scene``
    called in this thread as each scene finishes (in any order)."""
    from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

    n = len(plans)
    area = [0.0]  # km² of the scenes finished in this run
    finished = [sum(p.record.status == "skipped" for p in plans)]
    running: dict[Future[None], int] = {}
    pool = ThreadPoolExecutor(max_workers=scenes_in_flight, thread_name_prefix="roadx-scene")

    def start(i: int) -> None:
        plan = plans[i]
        plan.record.status = "running"
        if on_scene is not None:
            on_scene(i, n, plan.record)
        running[pool.submit(_run_scene, runner, plan, options, out,
                            overwrite=options.overwrite or plan.record.scene in replace,
                            digest=digest, on_progress=None)] = i

    try:
        queue = []
        for i, plan in enumerate(plans):
            if plan.record.status == "skipped":
                if on_scene is not None:
                    on_scene(i, n, plan.record)
            else:
                queue.append(i)
        queue.reverse()
        while queue or running:
            while queue and len(running) < scenes_in_flight:
                start(queue.pop())
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                i = running.pop(future)
                future.result()  # _run_scene records failures; raises only Ctrl-C & co.
                save()
                finished[0] += 1
                area[0] += plans[i].record.area_km2 or 0.0
                if on_progress is not None:
                    on_progress(finished[0], n, area[0])
                if on_scene is not None:
                    on_scene(i, n, plans[i].record)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def merge_outputs(files: Sequence[str | os.PathLike[str]], target: str | os.PathLike[str], *,
                  overwrite: bool = False, join_m: float | None = None) -> Path:
    """Merge the road files of several scenes into one network file.

    Lines that meet at the common border of adjacent scenes (cut ends within ``join_m``)
    become one line (:func:`roadx.vectorize.merge.merge_networks`); each line records its
    scene(s) in the column ``scene`` (the file stem). The result is in the CRS of the first
    file; files in other CRSs are reprojected into it.

    Args:
        files: road files written by roadx (``.gpkg``, ``.shp`` or ``.geojson``).
        target: the merged file (``.gpkg``, ``.shp`` or ``.geojson``), written atomically.
        overwrite: replace an existing ``target``.
        join_m: join distance in metres (default
            :data:`roadx.vectorize.merge.DEFAULT_JOIN_M`).

    Returns:
        The path written.

    Raises:
        roadx.errors.InputError: an unreadable file; files with and without CRS.
        roadx.errors.OutputError, roadx.errors.OutputExistsError: as
            :func:`roadx.io.write_roads`.
    """
    from roadx.io import read_roads, write_roads
    from roadx.vectorize import RoadNetwork
    from roadx.vectorize.merge import DEFAULT_JOIN_M, merge_networks

    networks, names = [], []
    for path in files:
        edges, nodes = read_roads(path)
        networks.append(RoadNetwork(edges=edges, nodes=nodes))
        names.append(Path(path).stem)
    merged = merge_networks(networks, join_m=DEFAULT_JOIN_M if join_m is None else join_m,
                            names=names)
    from roadx import __version__

    metadata = {"roadx_version": __version__, "merged_from": json.dumps(names),
                "created_utc": datetime.datetime.now(datetime.UTC).isoformat(
                    timespec="seconds")}
    write_roads(merged, target, overwrite=overwrite, metadata=metadata)
    log.info("merged %d scene(s) into %s: %d roads", len(names), target, len(merged.edges))
    return Path(target)


def _merge_target(merge: str | os.PathLike[str], plans: list[_Plan], overwrite: bool,
                  earlier_merge: Path | None) -> Path:
    """The merged file's path, checked before any scene runs.

    It may exist only with ``overwrite`` or when it is the merge of an earlier run of this
    batch (it is rewritten at the end of every run).

    Raises:
        roadx.errors.OutputError: a bad extension, or the name of a scene output.
    """
    from roadx.fs import check_output_path

    target = Path(merge).expanduser().absolute()
    check_output_path(target, overwrite=True, suffixes=VECTOR_SUFFIXES)
    if any(target == p.vector or target in p.files for p in plans):
        raise OutputError(f"--merge {merge} is also the output of a scene; choose another "
                          "name (e.g. roads_merged.gpkg)")
    if target.exists() and not overwrite and target != earlier_merge:
        raise OutputExistsError(f"{target} exists and was not merged by an earlier run of "
                                "this batch; pass --overwrite to replace it")
    return target


def _folder_name(path: str | os.PathLike[str], what: str, file_suffixes: Sequence[str]) -> Path:
    """An output folder of a batch as an absolute path.

    Raises:
        roadx.errors.InputError: it does not exist and its name ends like a file of that
            kind (``roads.gpkg``).
        roadx.errors.OutputError: it is a file.
    """
    folder = Path(path).expanduser().absolute()
    if folder.is_dir():
        return folder
    if folder.suffix.lower() in file_suffixes:
        raise InputError(
            f"{what} {path}: with many scenes this names a folder (one file per scene), not a "
            f"{folder.suffix} file; give a folder, e.g. {what} {folder.with_suffix('')}/"
        )
    if folder.exists():
        raise OutputError(f"{what} {path} is a file; with many scenes it names a folder")
    return folder


def _make_folder(folder: Path) -> None:
    """Create an output folder (and its parents) if missing; check that it is writable.

    Raises:
        roadx.errors.OutputError: it cannot be created or written.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create the folder {folder}: {describe_os_error(err)}") \
            from None
    check_writable_folder(folder)


def _plans(names: list[str], out: Path, fmt: str, probs: Path | None,
           previews: Path | None) -> list[_Plan]:
    """Each scene's outputs; refuses two scenes that would write the same file.

    Raises:
        roadx.errors.InputError: two scenes with the same output name (same stem, or a
            ``<stem>_junctions`` that meets another scene's stem), naming both.
    """
    plans: list[_Plan] = []
    owner: dict[str, str] = {}
    for scene in names:
        stem = scene_stem(scene)
        plan = _Plan(
            record=SceneRecord(scene=scene, stem=stem),
            vector=out / f"{stem}.{fmt}",
            probability=None if probs is None else probs / f"{stem}_prob.tif",
            preview=None if previews is None else previews / f"{stem}_preview.png",
        )
        for path in plan.files:
            key = os.path.normcase(str(path)).casefold()  # also on case-insensitive disks
            if key in owner:
                raise InputError(
                    f"scenes {owner[key]} and {scene} would both write {path} (outputs are "
                    f"named after the scene's file name, here {stem!r}); rename one, or run "
                    "them into different folders"
                )
            owner[key] = scene
        plans.append(plan)
    return plans


def _read_index(path: Path) -> dict[str, dict[str, Any]]:
    """The scene entries of an existing index.json, by scene ({} when there is none).

    Raises:
        roadx.errors.OutputError: the file is not a roadx batch index.
    """
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("kind") != INDEX_KIND or not isinstance(data.get("scenes"), list):
            raise ValueError("not written by roadx predict")
        return {str(entry["scene"]): entry for entry in data["scenes"]}
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as err:
        reason = describe_os_error(err) if isinstance(err, OSError) else str(err)
        raise OutputError(
            f"{path} is not a roadx batch index ({reason}); remove it, choose another output "
            "folder, or pass --overwrite"
        ) from None


def _earlier_merge(path: Path) -> Path | None:
    """The merged file an earlier run of the batch recorded in its index.json, if any."""
    try:
        merged = json.loads(path.read_text(encoding="utf-8")).get("merged")
    except (OSError, ValueError, AttributeError):
        return None
    return Path(merged) if isinstance(merged, str) else None


def _fingerprint(path: Path, out: Path) -> OutputFile:
    """Size and mtime of an output (its path relative to the output folder)."""
    stat = path.stat()
    return OutputFile(path=os.path.relpath(path, out), bytes=stat.st_size,
                      mtime_ns=stat.st_mtime_ns)


def _unchanged(entry: dict[str, Any], out: Path) -> dict[Path, bool]:
    """For each output an index entry records: whether it still exists unchanged."""
    state: dict[Path, bool] = {}
    for item in entry.get("outputs") or []:
        try:
            path = (out / item["path"]).resolve()
            stat = path.stat()
            state[path] = stat.st_size == item["bytes"] and stat.st_mtime_ns == item["mtime_ns"]
        except (OSError, KeyError, TypeError):
            continue
    return state


def _decide(plans: list[_Plan], earlier: dict[str, dict[str, Any]], digest: str, out: Path,
            *, overwrite: bool) -> set[str]:
    """Mark the scenes finished earlier as skipped; return the scenes that may replace
    existing files (their own unchanged outputs of an earlier run).

    Raises:
        roadx.errors.OutputExistsError: (without ``overwrite``) files in the way of scenes to
            run that no earlier run of this batch wrote (or that changed since).
    """
    replace: set[str] = set()
    in_the_way: list[Path] = []
    for plan in plans:
        entry = earlier.get(plan.record.scene, {})
        state = _unchanged(entry, out)
        wanted = {p.resolve() for p in plan.files}
        if (entry.get("status") in ("ok", "skipped") and entry.get("settings_hash") == digest
                and set(state) == wanted and all(state.values())):
            _restore(plan.record, entry)
            continue
        existing = [p for p in plan.files if p.exists()]
        if overwrite or not existing:
            continue
        foreign = [p for p in existing if not state.get(p.resolve(), False)]
        if foreign:
            in_the_way += foreign
        else:
            replace.add(plan.record.scene)
    if in_the_way:
        more = f" and {len(in_the_way) - 1} more" if len(in_the_way) > 1 else ""
        raise OutputExistsError(
            f"{in_the_way[0]}{more} exist(s) and were not written by an earlier run of this "
            f"batch (or changed since, see {out / INDEX_NAME}); pass --overwrite to replace "
            "them, or choose another output folder"
        )
    return replace


def _restore(record: SceneRecord, entry: dict[str, Any]) -> None:
    """Fill a skipped scene's record from its index entry."""
    record.status = "skipped"
    record.roads, record.km = entry.get("roads"), entry.get("km")
    record.area_km2 = entry.get("area_km2")
    record.seconds = entry.get("seconds")
    record.outputs = [OutputFile(**o) for o in entry["outputs"]]
    record.settings_hash = entry.get("settings_hash")
    record.finished_utc = entry.get("finished_utc")


def _run_scene(predictor: Predictor, plan: _Plan, options: ExtractOptions, out: Path, *,
               overwrite: bool, digest: str, on_progress: Progress | None) -> None:
    """Run one scene and fill its record; a failure is recorded, not raised (Ctrl-C and
    SystemExit are raised)."""
    record = plan.record
    scene_options = dataclasses.replace(options, probability_path=plan.probability,
                                        preview_path=plan.preview, overwrite=overwrite)
    start = time.perf_counter()
    record.outputs, record.roads, record.km, record.error = [], None, None, None
    record.area_km2 = None
    try:
        result = predictor.extract(record.scene, plan.vector, options=scene_options,
                                   on_progress=on_progress)
    except Exception as err:  # one bad scene must not stop the batch
        record.status, record.error = "failed", _one_line(err)
        log.info("%s failed: %s", record.scene, record.error)
        log.debug("traceback of %s", record.scene, exc_info=True)
    else:
        files = [Path(p) for p in result.outputs]
        if result.probability:
            files.append(Path(result.probability))
        record.status, record.roads, record.km = "ok", result.roads, result.total_km
        record.area_km2 = result.area_km2
        record.outputs = [_fingerprint(p, out) for p in files]
    record.seconds = round(time.perf_counter() - start, 2)
    record.settings_hash = digest
    record.finished_utc = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _one_line(err: BaseException) -> str:
    """An error as the one line the CLI would print."""
    if isinstance(err, RoadxError):
        text = str(err)
    elif isinstance(err, OSError):
        text = describe_os_error(err)
    elif isinstance(err, MemoryError):
        text = "out of memory; use a smaller --tile or --batch-size, or --tta none"
    else:
        text = f"{type(err).__name__}: {err}"
    return " ".join(text.split())


def _write_index(path: Path, digest: str, settings: dict[str, Any],
                 records: list[SceneRecord], kept: list[dict[str, Any]],
                 merged: Path | None = None) -> None:
    """Write index.json atomically (temporary file beside it, then :func:`os.replace`).

    ``kept``: entries of scenes an earlier run recorded that this run does not name;
    ``merged``: the merged network file of this batch (``--merge``), if any.
    """
    from roadx import __version__

    data = {
        "kind": INDEX_KIND,
        "version": INDEX_VERSION,
        "roadx_version": __version__,
        "updated_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "settings_hash": digest,
        "settings": settings,
        "merged": None if merged is None else str(merged),
        "summary": {status: sum(r.status == status for r in records)
                    for status in ("ok", "failed", "skipped", "pending")},
        "scenes": [dataclasses.asdict(r) for r in records] + kept,
    }
    tmp = partial_path(path)
    try:
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        discard(tmp)
        raise
