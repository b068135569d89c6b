"""The Ray backend of ``roadx predict --backend ray``: scenes split into stripes of grid rows,
run on Ray actors that keep the model loaded; outputs identical to the local path.

Ray (``pip install "roadx[ray]"``) is imported only here, and only when a
:class:`RayBackend` starts.

Design
------
* **Actors.** ``workers`` Ray actors each hold one :class:`roadx.pipeline.Predictor` (the
  weights are loaded once per actor). An actor asks Ray for ``gpus_per_worker`` GPUs (default:
  1 when the cluster has GPUs, else 0) and ``cpus_per_worker`` CPUs.
* **Stripes.** A scene's global window grid (:class:`roadx.tiling.TileGrid`) is cut into
  stripes of consecutive grid rows (:meth:`~roadx.tiling.TileGrid.stripes`): as few as keep
  the workers busy (a single scene on 4 workers: 4 stripes; many scenes: one stripe per
  scene unless memory asks for more). A stripe owns
  the probability bands of its grid rows and also runs the windows of the
  ``grid.halo_rows`` grid rows above it (one row of windows for overlaps up to half a
  window), so every band it returns is bit-identical to the band a whole-scene run emits:
  the same windows, batched the same way (batches never span grid rows), blended with the
  same weights and summed in the same order (:func:`roadx.predict.predict_scene` ``rows``).
* **Driver.** Per scene the driver opens the scene's metadata, submits its stripes (at most
  ``stripes_in_flight`` not yet consumed) and feeds the returned bands, in row order, into
  the same :class:`roadx.vectorize.BandVectorizer` and probability writer as the local path
  (:func:`roadx.pipeline.extract` with a band ``source``), which write each output once,
  atomically. The vector network therefore equals the local path's exactly; vectorizing
  per stripe and joining stripe graphs would not (hysteresis, gap bridging and pruning look
  across stripe seams). ``scenes_in_flight`` scenes run at once, so the actors keep working
  while the driver vectorizes and writes a finished scene.
* **Memory.** A worker holds one stripe: the stitcher's ``tile_px × width`` accumulators
  plus the stripe's bands (``stripe rows × width × 4 B``), and its model; stripes are sized
  to stay under ``max_stripe_bytes``. The driver holds at most ``stripes_in_flight``
  stripe results per scene in flight (in Ray's object store) plus the vectorizer's band.
* **Faults.** Actors restart after their process dies (``max_restarts``) and Ray re-runs
  the stripe they were running (``max_task_retries``); a stripe is a pure function of the
  scene, the grid and the options, so a retried stripe returns the same bands, and the
  driver consumes every stripe exactly once. An error raised by the stripe itself (a
  corrupt scene) is not retried: the scene fails with that error and the batch goes on.

All workers must see the scene paths and the weights file under the same names (a shared
file system, or GDAL ``/vsis3/``-style paths); outputs are written by the driver.
"""

import collections
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from roadx.errors import InputError, RoadxError
from roadx.pipeline import ExtractOptions, ExtractResult, Predictor, Progress, extract

log = logging.getLogger(__name__)

DEFAULT_MAX_STRIPE_BYTES = 256 * 2**20
"""Default cap on one stripe's probability bands (float32) returned by a worker."""


class RayBackendError(RoadxError, RuntimeError):
    """Ray is missing, the cluster cannot be reached, or a worker died more often than
    allowed."""


@dataclass(frozen=True)
class RayOptions:
    """How ``--backend ray`` runs (:class:`RayBackend`).

    Attributes:
        address: ``None``: start a local Ray instance for this run (stopped at the end);
            ``"auto"``: join the cluster this machine belongs to (``ray start`` ran here);
            ``"HOST:PORT"``: the head node's GCS address (``ray://HOST:10001`` for Ray
            Client works too).
        workers: number of actors (model copies). None: one per GPU of the cluster when it
            has GPUs, else one per ``cpus_per_worker`` CPUs (at least 1).
        gpus_per_worker: GPUs per actor (fractions share a GPU). None: 1 when the cluster
            has GPUs, else 0.
        cpus_per_worker: CPUs Ray reserves per actor; also the actor's torch threads
            unless ``ExtractOptions.threads`` is set.
        stripe_rows: grid rows per stripe (None: as few stripes as keep every worker busy,
            i.e. ``ceil(workers / scenes running)`` per scene, and at most
            ``max_stripe_bytes`` each; every stripe but the first runs a halo row of windows
            a second time, so more stripes cost more compute).
        max_stripe_bytes: cap on one stripe's bands in bytes (float32 rows × width).
        stripes_in_flight: stripes of one scene submitted and not yet consumed (None: two
            per worker).
        scenes_in_flight: scenes the driver runs at once (vectorizing one while the actors
            work on the next).
        max_retries: restarts of a dead actor, and re-runs of the stripe it was running.
        num_cpus: CPUs of a local Ray instance (None: all); ignored with ``address``.
        object_store_bytes: object store of a local Ray instance (None: Ray's default);
            ignored with ``address``.
        include_dashboard: start Ray's dashboard with a local instance.
    """

    address: str | None = None
    workers: int | None = None
    gpus_per_worker: float | None = None
    cpus_per_worker: float = 1.0
    stripe_rows: int | None = None
    max_stripe_bytes: int = DEFAULT_MAX_STRIPE_BYTES
    stripes_in_flight: int | None = None
    scenes_in_flight: int = 2
    max_retries: int = 3
    num_cpus: int | None = None
    object_store_bytes: int | None = None
    include_dashboard: bool = False

    def __post_init__(self) -> None:
        for name in ("workers", "stripe_rows", "stripes_in_flight"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InputError(f"ray {name} must be >= 1, got {value}")
        if self.scenes_in_flight < 1 or self.max_retries < 0 or self.cpus_per_worker <= 0:
            raise InputError("ray scenes_in_flight must be >= 1, max_retries >= 0 and "
                             "cpus_per_worker > 0")


@dataclass
class StripeResult:
    """What a worker returns for one stripe (pickled through Ray's object store).

    Attributes:
        rows: the grid rows ``(r0, r1)`` the stripe owns.
        bands: ``[(row_off, prob (h, width) float32), ...]`` in row order: the bands of
            grid rows ``r0 .. r1-1``, NaN = nodata.
        windows: windows run, halo included.
        seconds: the worker's wall time for the stripe.
        node: Ray node id of the worker; pid: its process id.
    """

    rows: tuple[int, int]
    bands: list[tuple[int, Any]]
    windows: int
    seconds: float
    node: str
    pid: int


@dataclass
class ClusterProgress:
    """Counters across the cluster (thread-safe updates through :class:`RayBackend`).

    Attributes:
        workers: actors; nodes: Ray nodes alive when the backend started.
        stripes_done / stripes_total: stripes consumed / submitted so far.
        windows_run: windows the workers ran (halo windows included).
        km2_done: scene area whose bands were consumed, in km².
        worker_restarts: worker processes that died and were replaced (their stripes ran
            again).
        nodes_used: Ray node ids that returned stripes.
        started: ``time.perf_counter()`` when the backend started.
    """

    workers: int = 0
    nodes: int = 0
    stripes_done: int = 0
    stripes_total: int = 0
    windows_run: int = 0
    km2_done: float = 0.0
    worker_restarts: int = 0
    nodes_used: set[str] = field(default_factory=set)
    started: float = field(default_factory=time.perf_counter)

    @property
    def km2_per_h(self) -> float:
        """Area throughput since the start, in km²/h."""
        hours = (time.perf_counter() - self.started) / 3600
        return self.km2_done / hours if hours > 0 else 0.0

    def line(self) -> str:
        """``ray: 12/20 stripes, 2 workers on 2 nodes, 3.10 km²/h, 1 worker restart``."""
        text = (f"ray: {self.stripes_done}/{self.stripes_total} stripes, {self.workers} "
                f"workers on {max(len(self.nodes_used), 1)} node(s), "
                f"{self.km2_per_h:.2f} km²/h")
        if self.worker_restarts:
            text += f", {self.worker_restarts} worker restart(s) (stripes re-run)"
        return text


class _RemoteModel:
    """What :func:`roadx.pipeline.extract` needs to know of the model the actors hold
    (weights, card, device, precision), without loading it in the driver."""

    model = None
    _IDENTITY = Predictor._IDENTITY
    _PREDICT_IDENTITY = Predictor._PREDICT_IDENTITY

    def __init__(self, options: ExtractOptions, info: dict[str, Any]) -> None:
        self.options = options
        self.weights = info["weights"]
        self.weights_sha256 = info["weights_sha256"]
        self.card = info["card"]
        self.device = info["device"]
        self.precision = info["precision"]

    def check_options(self, options: ExtractOptions) -> None:
        """Refuse options for another model (as :meth:`Predictor.check_options`)."""
        Predictor.check_options(self, options)  # type: ignore[arg-type]


class _StripeWorker:
    """The body of a Ray actor: one loaded model, stripes of scenes in, bands out."""

    def __init__(self, options: ExtractOptions, threads: int) -> None:
        import contextlib

        from roadx.runtime.device import torch_threads

        self._stack = contextlib.ExitStack()
        self._stack.enter_context(torch_threads(options.threads or threads))
        self.predictor = Predictor(options)
        self._scene: tuple[Any, Any] | None = None  # (spec, open Scene): the last scene

    def describe(self) -> dict[str, Any]:
        """Weights, card, device and precision of the loaded model, node and pid."""
        import ray

        p = self.predictor
        return {"weights": p.weights, "weights_sha256": p.weights_sha256, "card": p.card,
                "device": p.device, "precision": p.precision, "pid": os.getpid(),
                "node": ray.get_runtime_context().get_node_id()}

    def run_stripe(self, spec: Any, grid: Any, rows: tuple[int, int],
                   options: Any) -> StripeResult:
        """Run the windows of one stripe (with its halo) and return its bands."""
        import ray

        from roadx.predict import predict_scene

        start = time.perf_counter()
        scene = self._open(spec)
        windows = [0]

        def count(n: int) -> None:
            windows[0] += n

        bands = [(w.row_off, prob) for w, prob in predict_scene(
            scene.read_window_aux, grid, self.predictor.model, self.predictor.card, options,
            on_progress=count, rows=rows)]
        return StripeResult(rows=rows, bands=bands, windows=windows[0],
                            seconds=time.perf_counter() - start,
                            node=ray.get_runtime_context().get_node_id(), pid=os.getpid())

    def _open(self, spec: Any) -> Any:
        """The open scene of ``spec`` (the last one is kept open for its next stripes)."""
        if self._scene is not None and self._scene[0] == spec:
            return self._scene[1]
        if self._scene is not None:
            self._scene[1].close()
            self._scene = None
        scene = spec.open()
        self._scene = (spec, scene)
        return scene


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RayBackendError(
            "--backend ray needs Ray, which is not installed; pip install \"roadx[ray]\""
        ) from None
    return ray


class RayBackend:
    """Scenes on a Ray cluster with the local path's exact outputs (see the module
    docstring). A context manager: it connects to (or starts) Ray and creates the actors on
    entry, and kills the actors (and stops a Ray instance it started) on exit.

    Args:
        options: the run's settings (weights, model, device, precision as every actor
            loads them; the same options must be passed to :meth:`extract`).
        ray_options: cluster, workers and stripe settings.

    Raises (on entry):
        RayBackendError: Ray is not installed, the cluster cannot be reached, or no actor
            can be placed (e.g. more GPUs per worker than any node has).
        roadx.errors.CheckpointError, roadx.errors.InputError: the actors cannot load the
            weights (raised from the first actor).

    Example:
        >>> with RayBackend(ExtractOptions(tta="none"), RayOptions(workers=2)) as backend:
        ...     backend.extract("a.tif", "a.gpkg")  # doctest: +SKIP
    """

    def __init__(self, options: ExtractOptions, ray_options: RayOptions | None = None) -> None:
        self.options = options
        self.ray_options = ray_options or RayOptions()
        self.progress = ClusterProgress()
        self._lock = threading.Lock()
        self._ray: Any = None
        self._started_ray = False
        self._actors: list[Any] = []
        self._load: list[int] = []  # stripes submitted to each actor and not yet returned
        self._pids: dict[int, int] = {}  # actor index -> last pid seen
        self._running = 0  # scenes whose stripes are being submitted or gathered
        self.model: _RemoteModel | None = None

    # -- lifecycle ----------------------------------------------------------------------

    def __enter__(self) -> "RayBackend":
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> None:
        ray = self._ray = _import_ray()
        opts = self.ray_options
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": opts.include_dashboard,
                                      "log_to_driver": False,
                                      "configure_logging": False}
            if opts.address is None:  # a new instance, even when a cluster runs here
                kwargs.update(address="local", num_cpus=opts.num_cpus,
                              object_store_memory=opts.object_store_bytes)
            else:
                kwargs["address"] = opts.address
            self._started_ray = True  # started, or connected: shut down / disconnect at exit
            try:
                ray.init(**kwargs)
            except (ConnectionError, RuntimeError, ValueError) as err:
                where = opts.address or "a local Ray instance"
                raise RayBackendError(f"cannot start or reach Ray at {where}: "
                                      f"{' '.join(str(err).split())[:300]}") from None
        resources = ray.cluster_resources()
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        gpus = float(resources.get("GPU", 0))
        per_gpu = opts.gpus_per_worker if opts.gpus_per_worker is not None else (
            1.0 if gpus >= 1 else 0.0)
        if opts.workers is not None:
            workers = opts.workers
        elif per_gpu > 0:
            workers = max(1, int(gpus // per_gpu))
        else:
            workers = max(1, int(float(resources.get("CPU", 1)) // opts.cpus_per_worker))
        actor_cls = ray.remote(_StripeWorker).options(
            num_cpus=opts.cpus_per_worker, num_gpus=per_gpu,
            max_restarts=opts.max_retries, max_task_retries=opts.max_retries,
        )
        threads = max(1, int(opts.cpus_per_worker))
        self._actors = [actor_cls.remote(self.options, threads) for _ in range(workers)]
        self._load = [0] * workers
        infos = self._get([a.describe.remote() for a in self._actors], what="starting")
        self._pids = {i: info["pid"] for i, info in enumerate(infos)}
        self.model = _RemoteModel(self.options, infos[0])
        self.progress = ClusterProgress(workers=workers, nodes=len(nodes))
        log.info("ray: %d worker(s) (%g GPU, %g CPU each) on %d node(s); model on %s",
                 workers, per_gpu, opts.cpus_per_worker, len(nodes), infos[0]["device"])

    def close(self) -> None:
        """Kill the actors; shut Ray down if this backend started it."""
        ray = self._ray
        if ray is None:
            return
        for actor in self._actors:
            try:
                ray.kill(actor)
            except Exception:  # already dead, or Ray is gone
                pass
        self._actors = []
        if self._started_ray and ray.is_initialized():
            ray.shutdown()
        self._ray = None

    @property
    def workers(self) -> int:
        """Number of actors."""
        return len(self._actors)

    @property
    def worker_pids(self) -> list[int]:
        """Process id of each actor as last seen (a restarted actor gets a new one)."""
        with self._lock:
            return [self._pids[i] for i in range(len(self._actors))]

    # -- running scenes -----------------------------------------------------------------

    def extract(self, scene_path: str | os.PathLike[str], output: str | os.PathLike[str], *,
                options: ExtractOptions | None = None,
                on_progress: Progress | None = None) -> ExtractResult:
        """:func:`roadx.pipeline.extract` with the bands computed by the actors.

        Outputs equal those of the local path with the same options (bit-identical
        probabilities, identical road layers); thread-safe, so several scenes may run at
        once (:attr:`RayOptions.scenes_in_flight`).

        Raises:
            Every error of :func:`roadx.pipeline.extract`; an error a worker raised for this
            scene (e.g. a corrupt window) as that error; :class:`RayBackendError` when a
            worker died more than ``max_retries`` times.
        """
        if self.model is None:
            raise RayBackendError("the Ray backend is not started; use it as a context "
                                  "manager (with RayBackend(...) as backend:)")
        options = options or self.options
        return extract(scene_path, output, options=options, on_progress=on_progress,
                       predictor=self.model,  # type: ignore[arg-type]
                       source=lambda scene, grid, advance: self._bands(
                           scene, grid, advance, options))

    def stripes_of(self, grid: Any, *, scenes_running: int = 1) -> list[tuple[int, int]]:
        """The stripes (grid-row ranges) a scene with this grid is cut into, while
        ``scenes_running`` scenes (this one included) share the workers."""
        opts = self.ray_options
        if opts.stripe_rows is not None:
            return grid.stripes(opts.stripe_rows)
        band_bytes = grid.stride_px * grid.width * 4  # one grid row's band, float32
        by_memory = max(1, opts.max_stripe_bytes // max(band_bytes, 1))
        wanted = -(-max(self.workers, 1) // max(scenes_running, 1))  # stripes to fill workers
        by_workers = -(-grid.n_rows // wanted)
        return grid.stripes(max(1, min(by_memory, by_workers)))

    def _bands(self, scene: Any, grid: Any, advance: Callable[[int], None],
               options: ExtractOptions) -> Iterator[tuple[Any, Any]]:
        """The :data:`roadx.pipeline.BandSource` of one scene: submit its stripes, yield
        their bands in row order."""
        from roadx.tiling import Window

        with self._lock:
            self._running += 1
            running = self._running
        stripes = self.stripes_of(grid, scenes_running=running)
        limit = self.ray_options.stripes_in_flight or 2 * self.workers
        with self._lock:
            self.progress.stripes_total += len(stripes)
        area_km2 = scene.width * scene.height * scene.pixel_size_m[0] * \
            scene.pixel_size_m[1] / 1e6
        spec = scene.spec
        todo = collections.deque(stripes)
        flight: collections.deque[tuple[tuple[int, int], int, Any]] = collections.deque()
        try:
            while todo or flight:
                while todo and len(flight) < limit:
                    rows = todo.popleft()
                    i = self._pick()
                    ref = self._actors[i].run_stripe.remote(spec, grid, rows, options.predict)
                    flight.append((rows, i, ref))
                rows, i, ref = flight.popleft()
                try:
                    result: StripeResult = self._get([ref], what=f"stripe {rows} of {spec.path}")[0]
                finally:
                    with self._lock:
                        self._load[i] -= 1
                self._record(i, result, grid, area_km2)
                for row_off, prob in result.bands:
                    yield Window(row_off, 0, prob.shape[0], grid.width), prob
                advance((rows[1] - rows[0]) * grid.n_cols)
        finally:
            with self._lock:
                self._running -= 1
            for _, i, ref in flight:  # a failed scene: drop its other stripes
                with self._lock:
                    self._load[i] -= 1
                try:
                    self._ray.cancel(ref)
                except Exception:
                    pass

    def _pick(self) -> int:
        """The actor with the fewest stripes queued (ties: the first)."""
        with self._lock:
            i = min(range(len(self._load)), key=self._load.__getitem__)
            self._load[i] += 1
            return i

    def _record(self, i: int, result: StripeResult, grid: Any, area_km2: float) -> None:
        rows = result.rows
        with self._lock:
            p = self.progress
            p.stripes_done += 1
            p.windows_run += result.windows
            p.km2_done += area_km2 * (rows[1] - rows[0]) / grid.n_rows
            p.nodes_used.add(result.node)
            if self._pids.get(i) not in (None, result.pid):
                p.worker_restarts += 1
            self._pids[i] = result.pid
            line = p.line()
        log.info("stripe rows %d-%d done in %.1f s on node %s (pid %d); %s", rows[0],
                 rows[1], result.seconds, result.node[:8], result.pid, line)

    def _get(self, refs: list[Any], *, what: str) -> list[Any]:
        """``ray.get`` with Ray's errors turned into roadx's: a worker's own error is
        raised as itself; a worker that died too often as :class:`RayBackendError`."""
        ray = self._ray
        try:
            return ray.get(refs)
        except ray.exceptions.RayTaskError as err:
            cause = err.cause if isinstance(err.cause, BaseException) else None
            if cause is not None:
                raise cause from None
            raise RayBackendError(f"{what} failed on a Ray worker: "
                                  f"{' '.join(str(err).split())[:300]}") from None
        except ray.exceptions.RayActorError as err:
            raise RayBackendError(
                f"{what}: a Ray worker died more than {self.ray_options.max_retries} times "
                f"({' '.join(str(err).split())[:200]}); see the Ray logs "
                "(/tmp/ray/session_latest/logs)"
            ) from None
