"""Running the roadx command line from QGIS: finding it, reading its progress, cancelling it.

Standard library only: QGIS runs this under its own Python, which has no torch (and usually
no roadx). roadx itself runs in a child process under the Python it was installed into.

Which roadx runs, first match wins:

1. the path set in the provider settings (Processing → Options → Providers → roadx): a
   ``roadx`` executable, or a Python interpreter with roadx installed (run as ``-m roadx``);
2. the environment variable ``ROADX_PYTHON`` (a Python with roadx installed);
3. the Python that ran ``roadx qgis-plugin install`` (recorded in ``install.json`` beside
   this file);
4. ``roadx`` on ``PATH``.
"""

from __future__ import annotations

import json
import math
import os
import queue
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

INSTALL_RECORD = "install.json"
"""Written by ``roadx qgis-plugin install`` into the installed copy: ``{"python": ...}``."""

PROGRESS_EVERY_S = 1.0
"""Seconds between roadx's plain progress lines (``ROADX_PROGRESS_EVERY_S`` of the child)."""

# roadx.cli.console.progress_line: "predict: 5/12 windows (42 %), 0.12 windows/s, ..."
_PROGRESS = re.compile(r"^(?P<stage>[\w-]+): (?P<done>\d+)/(?P<total>\d+) (?P<unit>\S+)")
_ERROR = re.compile(r"^error:\s*(?P<message>.+)$")
_BOX = "│╭╮╰╯─┃━┏┓┗┛"  # typer/rich usage-error panels

# Variables QGIS (OSGeo4W, the macOS bundle, Flatpak) sets for its own Python, GDAL and PROJ;
# inherited, they make roadx's Python import QGIS's packages or read a PROJ database of
# another version. roadx's rasterio/pyproj find their own data without them.
_DROPPED_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PROJ_LIB", "PROJ_DATA",
                "GDAL_DATA", "GDAL_DRIVER_PATH", "FORCE_COLOR")


class RoadxNotFoundError(RuntimeError):
    """No roadx to run: nothing configured, no ``ROADX_PYTHON``, no ``roadx`` on PATH."""


class RoadxFailedError(RuntimeError):
    """roadx ended with a non-zero exit code; ``str(err)`` is its one-line message."""

    def __init__(self, message: str, returncode: int) -> None:
        super().__init__(message)
        self.returncode = returncode


class RoadxCanceledError(RuntimeError):
    """The run was cancelled and roadx was stopped (its partial outputs are removed)."""


def command_for(path: str) -> list[str]:
    """The command line prefix that runs roadx from ``path``: a Python gets ``-m roadx``."""
    name = Path(path).name.lower()
    if name.startswith(("python", "pypy")):
        return [path, "-m", "roadx"]
    return [path]


def recorded_python(plugin_dir: Path | None = None) -> str | None:
    """The Python recorded by ``roadx qgis-plugin install``, when it still exists."""
    record = (plugin_dir or Path(__file__).resolve().parent) / INSTALL_RECORD
    try:
        python = json.loads(record.read_text(encoding="utf-8")).get("python")
    except (OSError, ValueError, AttributeError):
        return None
    return python if isinstance(python, str) and Path(python).is_file() else None


def find_roadx(
    configured: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    plugin_dir: Path | None = None,
) -> list[str]:
    """The command prefix that runs roadx (see the module docstring for the order).

    Raises:
        RoadxNotFoundError: a configured path or ``ROADX_PYTHON`` that does not exist, or no
            roadx found at all.
    """
    environ = os.environ if environ is None else environ
    configured = (configured or "").strip()
    if configured:
        found = shutil.which(configured) or (configured if Path(configured).is_file() else None)
        if not found:
            raise RoadxNotFoundError(
                f"roadx executable {configured!r} (Processing → Options → Providers → roadx) "
                "does not exist"
            )
        return command_for(found)
    python = environ.get("ROADX_PYTHON", "").strip()
    if python:
        found = shutil.which(python) or (python if Path(python).is_file() else None)
        if not found:
            raise RoadxNotFoundError(f"ROADX_PYTHON={python!r} does not exist")
        return [found, "-m", "roadx"]
    python = recorded_python(plugin_dir)
    if python:
        return [python, "-m", "roadx"]
    found = shutil.which("roadx", path=environ.get("PATH"))
    if found:
        return [found]
    raise RoadxNotFoundError(
        "roadx not found: set its executable (or a Python with roadx installed) in "
        "Processing → Options → Providers → roadx, set ROADX_PYTHON, or reinstall the plugin "
        "with `roadx qgis-plugin install --overwrite`"
    )


def child_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of the roadx process: QGIS's own Python/GDAL/PROJ variables removed,
    unbuffered UTF-8 output and a plain progress line every :data:`PROGRESS_EVERY_S`."""
    env = {k: v for k, v in (os.environ if environ is None else environ).items()
           if k not in _DROPPED_ENV}
    env.update(PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8", COLUMNS="120",
               ROADX_PROGRESS_EVERY_S=str(PROGRESS_EVERY_S))
    return env


def parse_progress(line: str) -> tuple[str, int, int] | None:
    """``(stage, done, total)`` of one of roadx's plain progress lines, else ``None``."""
    match = _PROGRESS.match(line.strip())
    if not match:
        return None
    return match["stage"], int(match["done"]), int(match["total"])


def failure_message(lines: Sequence[str], returncode: int) -> str:
    """roadx's one-line ``error: …`` message, or the last lines of its output."""
    for line in reversed(lines):
        match = _ERROR.match(line.strip())
        if match:
            return match["message"]
    text = [line.strip(_BOX + " \t") for line in lines]
    text = [t for t in text if t and not t.lower().startswith(("usage:", "try '"))]
    tail = " ".join(text[-3:]) or "no message"
    return f"roadx failed (exit code {returncode}): {tail}"


def remove_partials(folders: Sequence[str | Path], pid: int) -> None:
    """Remove the temporary outputs (``.<name>.roadx-<host>-<pid>-<random>.partial``, roadx's
    naming) that the killed roadx process ``pid`` left in ``folders``."""
    owned = re.compile(rf"^\.(?:.*\.)?roadx-[0-9a-f]{{6}}-{pid}-[a-z0-9_]+\.partial$")
    for folder in folders:
        try:
            entries = list(Path(folder).iterdir())
        except OSError:
            continue
        for entry in entries:
            if owned.match(entry.name):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    try:
                        entry.unlink()
                    except OSError:
                        pass


def _pump(stream, sink: Callable[[str], None]) -> None:
    for line in iter(stream.readline, ""):
        sink(line.rstrip("\r\n"))
    stream.close()


def run_roadx(
    args: Sequence[str],
    *,
    command: Sequence[str],
    on_line: Callable[[str], None] = lambda line: None,
    on_progress: Callable[[float], None] = lambda percent: None,
    on_start: Callable[[int], None] = lambda pid: None,
    on_exit: Callable[[int], None] = lambda returncode: None,
    is_canceled: Callable[[], bool] = lambda: False,
    cleanup_dirs: Sequence[str | Path] = (),
    poll_s: float = 0.1,
    terminate_wait_s: float = 20.0,
) -> str:
    """Run ``command + args`` and return its stdout (the ``--json`` result, if asked for).

    Every stderr line is passed to ``on_line``; progress lines also move ``on_progress``
    (0–100). Callbacks run in the calling thread. When ``is_canceled()`` turns true, roadx
    gets SIGTERM (it removes its partial outputs and exits with 130), and a kill after
    ``terminate_wait_s``; after a kill, its temporary files in ``cleanup_dirs`` (the output
    folders) are removed here. A run that had finished when the cancel came (exit code 0)
    counts as done.

    Raises:
        RoadxCanceledError: after a cancel.
        RoadxFailedError: on a non-zero exit code, with roadx's error message.
        OSError: when the command cannot be started.
    """
    lines: queue.Queue[str | None] = queue.Queue()
    stdout: list[str] = []
    proc = subprocess.Popen(
        [*command, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace",
        env=child_environment(),
    )
    on_start(proc.pid)
    readers = [
        threading.Thread(target=_pump, args=(proc.stderr, lines.put), daemon=True),
        threading.Thread(target=_pump, args=(proc.stdout, stdout.append), daemon=True),
    ]
    for reader in readers:
        reader.start()
    stderr: list[str] = []
    canceled_at: float | None = None

    def handle(line: str) -> None:
        stderr.append(line)
        on_line(line)
        progress = parse_progress(line)
        if progress and progress[2] > 0:
            on_progress(min(99.0, 100.0 * progress[1] / progress[2]))

    try:
        while proc.poll() is None:
            if canceled_at is None and is_canceled():
                canceled_at = time.monotonic()
                proc.terminate()
            elif canceled_at is not None and time.monotonic() - canceled_at > terminate_wait_s:
                proc.kill()
                canceled_at = math.inf  # killed: no second kill
            try:
                line = lines.get(timeout=poll_s)
            except queue.Empty:
                continue
            if line is not None:
                handle(line)
    except BaseException:
        proc.kill()  # QGIS itself is going away: take roadx with it
        raise
    finally:
        proc.wait()
        for reader in readers:
            reader.join(timeout=5)
    while not lines.empty():
        line = lines.get_nowait()
        if line is not None:
            handle(line)
    on_exit(proc.returncode)
    if canceled_at is not None and proc.returncode == 0:
        on_line("roadx had finished when the run was canceled; its outputs are kept")
    if canceled_at is not None and proc.returncode != 0:
        if canceled_at == math.inf:
            remove_partials(cleanup_dirs, proc.pid)
        raise RoadxCanceledError("canceled: roadx was stopped and its partial outputs removed")
    if proc.returncode != 0:
        raise RoadxFailedError(failure_message(stderr, proc.returncode), proc.returncode)
    on_progress(100.0)
    return "\n".join(stdout)
