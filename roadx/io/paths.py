"""Output paths: validation before any work starts, and atomic replacement when it is done.

Every roadx writer follows the same two rules (``../shared/specs/style.md`` §3.4):

1. :func:`check_output_path` runs *before* the expensive work, so a typo in the output
   name fails in a second instead of after an hour of inference.
2. Files are written under a temporary name in the destination folder and moved into place
   with :func:`os.replace` only on success (:func:`partial_path` for single files,
   :func:`atomic_outputs` for groups such as a Shapefile and its sidecars). An interrupted
   run therefore never leaves a half-written GeoPackage or GeoTIFF that QGIS would open.
"""

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from roadx.errors import OutputError, OutputExistsError

logger = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"


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

    Raises:
        roadx.errors.OutputError: the extension is not one of ``suffixes``, the parent
            folder does not exist, or the path is a folder.
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
    if out.is_dir():
        raise OutputError(f"{out} is a folder; expected a file path ending in {out.suffix}.")
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out} exists; pass --overwrite to replace it.")
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

    The name is unique (``.<name>.<random>.partial``, created empty with :func:`tempfile.mkstemp`
    and given the normal permissions of new files), so two runs writing the same output never
    share a temporary file: each finishes or fails on its own, and the last
    :func:`os.replace` wins.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=PARTIAL_SUFFIX, dir=path.parent)
    os.close(fd)
    mask = os.umask(0)  # read the umask: mkstemp leaves 0600, outputs get the usual mode
    os.umask(mask)
    os.chmod(tmp, 0o666 & ~mask)
    return Path(tmp)


def discard(path: Path) -> None:
    """Remove a temporary file if it exists (used when a writer fails)."""
    try:
        path.unlink()
    except FileNotFoundError:
        pass


@contextmanager
def atomic_outputs(folder: Path) -> Iterator[Path]:
    """Write a group of files atomically into ``folder``.

    Yields a fresh temporary folder *inside* ``folder`` (so the final moves are same-disk
    renames). Write the files there under their final names. When the block ends without
    an exception, every file is moved with :func:`os.replace` onto ``folder/<name>``;
    otherwise nothing in ``folder`` changes. The temporary folder is removed either way.

    Each file's replacement is atomic; a group of files (Shapefile sidecars) is replaced
    one file after the other, after all of them were written successfully.

    Args:
        folder: the destination folder (must exist).

    Yields:
        The temporary folder to write into.
    """
    tmp = Path(tempfile.mkdtemp(prefix=".roadx-", suffix=PARTIAL_SUFFIX, dir=folder))
    try:
        yield tmp
        for item in sorted(tmp.iterdir()):
            os.replace(item, folder / item.name)
            logger.debug("wrote %s", folder / item.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
