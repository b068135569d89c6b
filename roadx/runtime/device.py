"""Compute device selection and CPU threads for inference and training."""

import contextlib
from collections.abc import Iterator

import torch

from roadx.errors import DeviceError, InputError


def resolve_device(name: str) -> torch.device:
    """Turn a device name into a :class:`torch.device`.

    Args:
        name: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or
            ``"cuda:N"``.

    Returns:
        The device to run the model on.

    Raises:
        roadx.errors.DeviceError: if CUDA was requested but is not available.
        roadx.errors.InputError: for any other name.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceError(
                "CUDA was requested but torch.cuda.is_available() is False; use --device cpu"
            )
        return torch.device(name)
    raise InputError(f"unknown device {name!r}; expected 'auto', 'cpu' or 'cuda'")


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Use ``threads`` torch intra-op CPU threads inside the block, then restore the old count.

    Args:
        threads: threads to use (>= 1), or None to keep torch's default (one per core).
    """
    if threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
