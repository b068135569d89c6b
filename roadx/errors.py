"""The roadx exception hierarchy.

Every error raised on purpose subclasses :class:`RoadxError`. The CLI turns a ``RoadxError``
into ``error: <message>`` on stderr and exit code 1, without a traceback (set ``ROADX_DEBUG=1``
to see it). A message says what was found, what was expected and what to do next.
"""

import errno

_OS_REASONS = {
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.ENAMETOOLONG: "file name too long",
    errno.ENOENT: "no such file or folder",
    errno.EISDIR: "is a folder, expected a file",
    errno.ENOTDIR: "a part of the path is not a folder",
    errno.EEXIST: "already exists",
}


def describe_os_error(err: OSError) -> str:
    """One line for an operating-system error: ``"<file>: <reason> (<errno name>)"`` (the
    file part only when the error names one, e.g. not for GDAL's own I/O errors)."""
    reason = _OS_REASONS.get(err.errno or -1, err.strerror or str(err))
    name = errno.errorcode.get(err.errno or -1)
    text = reason if err.filename is None else f"{err.filename}: {reason}"
    return text + (f" ({name})" if name else "")


class RoadxError(Exception):
    """Root of all errors roadx raises on purpose."""


class InputError(RoadxError, ValueError):
    """An input file is missing, unreadable or not what the command needs."""


class SceneError(InputError):
    """A scene raster cannot be processed: no CRS/geotransform, no valid pixels, bad bands."""


class CheckpointError(RoadxError, ValueError):
    """A weights file is corrupt, of an unknown layout, or does not match the model."""


class OutputError(RoadxError, ValueError):
    """An output path cannot be written: unsupported extension, missing folder."""


class OutputExistsError(OutputError, FileExistsError):
    """The output exists and ``overwrite`` was not given."""


class DeviceError(RoadxError, RuntimeError):
    """The requested compute device is not available."""


class DatasetError(RoadxError, ValueError):
    """A training dataset has no usable samples or an unknown layout."""


class EvaluationError(RoadxError, ValueError):
    """Prediction and ground truth cannot be compared (no overlap, empty ground truth)."""
