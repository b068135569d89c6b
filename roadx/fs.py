"""Output paths: validation before any work starts, and atomic replacement when it is done.

Every roadx writer follows the same two rules (``../shared/specs/style.md`` §3.4):

1. :func:`check_output_path` runs *before* the expensive work, so a typo in the output
   name fails in a second instead of after an hour of inference.
2. Files are written under a temporary name in the destination folder and moved into place
   with :func:`os.replace` only on success (:func:`partial_path` for single files,
   :func:`atomic_outputs` for groups such as a Shapefile and its sidecars). An interrupted
   run therefore never leaves a half-written GeoPackage or GeoTIFF that QGIS would open.

Temporary names carry their owner: ``.<name>.roadx-<host>-<pid>-<random>.partial`` (``<host>``:
6 hex digits of the host name's hash). A run killed with SIGKILL cannot remove its own; the
next run that checks an output in the same folder removes it (:func:`remove_stale_partials`),
but only names of this form, only from this host, and only when process ``<pid>`` is gone.
"""

import hashlib
import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from roadx.errors import OutputError, OutputExistsError, describe_os_error

logger = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"
SIDE_FILE_BYTES = len("-journal")
"""Bytes GDAL adds to an output's name for a file beside it while writing (SQLite's
``<name>.gpkg-journal``); output names must leave room for them."""
_DEFAULT_NAME_MAX = 255
_OWNED = re.compile(r"^\.(?:.*\.)?roadx-(?P<host>[0-9a-f]{6})-(?P<pid>\d+)-[a-z0-9_]+\.partial$")


def _host_tag() -> str:
    """6 hex digits naming this host in temporary names (PIDs are per host)."""
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]


def _owner_tag() -> str:
    """``roadx-<host>-<pid>-``: the part of a temporary name that says who writes it."""
    return f"roadx-{_host_tag()}-{os.getpid()}-"


def name_max(folder: Path) -> int:
    """Longest file name (bytes) the file system of ``folder`` allows (255 if unknown)."""
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return _DEFAULT_NAME_MAX


def _fit_name(name: str, room: int) -> str:
    """``name`` cut (by characters) to at most ``room`` bytes of UTF-8."""
    while len(name.encode()) > room:
        name = name[:-1]
    return name


def _temp_prefix(target: Path) -> str:
    """Prefix of a temporary name beside ``target``: ``.<name>.roadx-<host>-<pid>-``, the
    name part shortened so that the whole name fits the file system's limit."""
    tag = _owner_tag()
    room = name_max(target.parent) - len(tag) - len(PARTIAL_SUFFIX) - 2 - 8  # dots, random
    return f".{_fit_name(target.name, max(room, 0))}.{tag}"


def _process_alive(pid: int) -> bool:
    """True when process ``pid`` exists on this host (also when it belongs to another user)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True  # unknown: keep the file
    return True


def remove_stale_partials(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove temporary files and folders that killed roadx runs left in ``folder``.

    Only entries named like roadx's own temporary names (``.*roadx-<host>-<pid>-*.partial``)
    whose ``<host>`` is this host and whose process ``<pid>`` no longer exists are removed;
    anything else, including partials of live runs, is left alone. Failures to remove are
    ignored (another run may be cleaning up at the same time).

    Returns:
        The entries removed.
    """
    removed: list[Path] = []
    host = _host_tag()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _OWNED.match(entry.name)
        if match is None or match["host"] != host or _process_alive(int(match["pid"])):
            continue
        path = Path(entry.path)
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError:
            continue
        logger.info("removed %s, left by an earlier roadx run (process %s) that was killed",
                    path, match["pid"])
        removed.append(path)
    return removed


def check_writable_folder(folder: Path, *, target: Path | None = None) -> None:
    """Make sure files can be created in ``folder`` (by creating and removing one).

    Permission bits alone do not tell (root, ACLs, read-only mounts), so a real temporary
    file is created.

    Args:
        folder: an existing folder.
        target: the output that will be written there (named in the message).

    Raises:
        roadx.errors.OutputError: the folder cannot be written (permission denied, read-only
            file system, no space or inodes left...).
    """
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{_owner_tag()}", suffix=PARTIAL_SUFFIX, dir=folder)
    except OSError as err:
        err.filename = None
        who = f"{target}: " if target is not None else ""
        raise OutputError(
            f"{who}cannot write into the folder {folder}: {describe_os_error(err)}; choose "
            "another output folder or make this one writable."
        ) from None
    os.close(fd)
    os.unlink(probe)


def _check_name_length(out: Path) -> None:
    """Refuse output names that leave no room for GDAL's side files (see SIDE_FILE_BYTES)."""
    limit = name_max(out.parent) - SIDE_FILE_BYTES
    size = len(out.name.encode())
    if size > limit:
        raise OutputError(
            f"{out}: the file name is {size} bytes; output names can be at most {limit} bytes "
            f"here (the file system allows {limit + SIDE_FILE_BYTES}, and GDAL adds up to "
            f"{SIDE_FILE_BYTES} for a file beside the output while writing). Shorten it."
        )


def format_bytes(n: float) -> str:
    """``n`` bytes as text with a binary unit, e.g. ``"1.5 GiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def check_free_space(path: Path, need_bytes: int, *, what: str) -> None:
    """Refuse to start when the disk of ``path``'s folder has less than ``need_bytes`` free.

    Args:
        path: an output file (its folder must exist).
        need_bytes: estimated size of what will be written there.
        what: the outputs, for the message, e.g. ``"the probability raster"``.

    Raises:
        roadx.errors.OutputError: too little free space (the message gives both numbers).
    """
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        return
    if free < need_bytes:
        raise OutputError(
            f"{path}: {what} needs about {format_bytes(need_bytes)}, but only "
            f"{format_bytes(free)} is free on {path.parent}; free some space or choose "
            "another folder (--force skips this estimate)."
        )


def check_output_path(
    path: str | os.PathLike[str], *, overwrite: bool, suffixes: Sequence[str]
) -> Path:
    """Validate an output path before anything is written to it.

    Args:
        path: the file to be written.
        overwrite: allow replacing an existing file.
        suffixes: accepted file extensions with the dot, e.g. ``(".gpkg", ".shp")``;
            compared case-insensitively.

    Returns:
        The path as an absolute :class:`~pathlib.Path`.

    Also removes stale temporary files of killed runs from the folder
    (:func:`remove_stale_partials`).

    Raises:
        roadx.errors.OutputError: the extension is not one of ``suffixes``, the parent
            folder does not exist or cannot be written, the path is a folder, or the name is
            too long for the file system.
        roadx.errors.OutputExistsError: the file exists and ``overwrite`` is false.
    """
    out = Path(path).expanduser().absolute()
    allowed = [s.lower() for s in suffixes]
    if out.suffix.lower() not in allowed:
        raise OutputError(
            f"{out}: unsupported output extension {out.suffix or '(none)'!r}; "
            f"expected one of {', '.join(allowed)}. Rename the output."
        )
    if not out.parent.is_dir():
        raise OutputError(
            f"{out}: the folder {out.parent} does not exist; create it first or choose "
            "another output path."
        )
    _check_name_length(out)
    if out.is_dir():
        raise OutputError(f"{out} is a folder; expected a file path ending in {out.suffix}.")
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out} exists; pass --overwrite to replace it.")
    remove_stale_partials(out.parent)
    check_writable_folder(out.parent, target=out)
    return out


def vector_output_paths(
    path: str | os.PathLike[str], *, overwrite: bool, suffixes: Sequence[str]
) -> list[Path]:
    """Validate every file a road-network output consists of, before any work starts.

    A GeoPackage is one file (layers ``roads`` and ``junctions``); a Shapefile or GeoJSON
    output is the roads file plus ``<stem>_junctions<suffix>`` beside it. Each is checked
    with :func:`check_output_path`, so an existing companion without ``overwrite`` fails
    now rather than after the inference.

    Args:
        path: the roads output, e.g. ``roads.shp``.
        overwrite: allow replacing existing files.
        suffixes: accepted extensions, e.g. ``(".gpkg", ".shp", ".geojson")``.

    Returns:
        The absolute paths, roads first.

    Raises:
        roadx.errors.OutputError: see :func:`check_output_path`.
        roadx.errors.OutputExistsError: a file of the set exists and ``overwrite`` is false.
    """
    out = check_output_path(path, overwrite=overwrite, suffixes=suffixes)
    if out.suffix.lower() == ".gpkg":
        return [out]
    companion = out.with_name(f"{out.stem}_junctions{out.suffix}")
    return [out, check_output_path(companion, overwrite=overwrite, suffixes=(out.suffix,))]


def partial_path(path: Path) -> Path:
    """Create the temporary file a single-file writer writes to, beside ``path``.

    The name is unique (``.<name>.roadx-<host>-<pid>-<random>.partial``, the name part
    shortened to fit the file system; created empty with :func:`tempfile.mkstemp` and given
    the normal permissions of new files), so two runs writing the same output never share a
    temporary file: each finishes or fails on its own, and the last :func:`os.replace` wins.
    """
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=PARTIAL_SUFFIX, dir=path.parent)
    try:
        os.close(fd)
        mask = os.umask(0)  # read the umask: mkstemp leaves 0600, outputs get the usual mode
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
    except BaseException:  # Ctrl-C/SIGTERM included: the caller never saw the name
        discard(Path(tmp))
        raise
    return Path(tmp)


def discard(path: Path) -> None:
    """Remove a temporary file if it exists (used when a writer fails)."""
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def place(tmp: Path, target: Path, *, overwrite: bool) -> None:
    """Move a finished temporary file onto its final name, in one step.

    With ``overwrite``: :func:`os.replace` (of concurrent runs, the last one wins). Without:
    a hard link, which the file system refuses when ``target`` exists (also when another run
    put it there after this run's up-front check), then the temporary name is removed; where
    hard links are not supported, the check and the rename are two steps.

    Raises:
        roadx.errors.OutputExistsError: ``target`` exists and ``overwrite`` is false (the
            temporary file is left to the caller to discard).
    """
    if overwrite:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise _appeared(target) from None
    except OSError:  # no hard links on this file system (some network or FAT mounts)
        if target.exists():
            raise _appeared(target) from None
        os.replace(tmp, target)
        return
    os.unlink(tmp)


def _appeared(target: Path) -> OutputExistsError:
    return OutputExistsError(
        f"{target} appeared while this run was writing it (another run with the same output?); "
        "this run put none of its outputs in place. Pass --overwrite to replace it."
    )


@contextmanager
def atomic_outputs(folder: Path, *, overwrite: bool = True) -> Iterator[Path]:
    """Write a group of files atomically into ``folder``.

    Yields a fresh temporary folder *inside* ``folder`` (so the final moves are same-disk
    renames). Write the files there under their final names. When the block ends without
    an exception, every file is moved onto ``folder/<name>`` with :func:`place`; otherwise
    nothing in ``folder`` changes. The temporary folder is removed either way.

    Each file's move is atomic; a group of files (Shapefile sidecars) is moved one file after
    the other, after all of them were written successfully.

    Args:
        folder: the destination folder (must exist).
        overwrite: replace existing files; without it a file that appeared meanwhile (another
            run) stops the moves, and the files this group already put in place are removed.

    Yields:
        The temporary folder to write into.

    Raises:
        roadx.errors.OutputExistsError: see ``overwrite``.
    """
    tmp = Path(tempfile.mkdtemp(prefix=f".{_owner_tag()}", suffix=PARTIAL_SUFFIX, dir=folder))
    try:
        yield tmp
        placed: list[Path] = []
        for item in sorted(tmp.iterdir()):
            try:
                place(item, folder / item.name, overwrite=overwrite)
            except OutputExistsError:
                for path in placed:  # linked moments ago by this run, so ours to remove
                    discard(path)
                raise
            placed.append(folder / item.name)
            logger.debug("wrote %s", folder / item.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
