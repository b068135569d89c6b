"""Test-time augmentation (TTA) over the dihedral group D4 of the square.

A view is one of the 8 symmetries of a square window: a rotation by 0 or 90 degrees
counter-clockwise, followed by an optional vertical flip (rows reversed) and an optional
horizontal flip (columns reversed). The model sees each view; each view's *probability*
map is mapped back with the inverse symmetry and the maps are averaged. Roads have no
preferred orientation, so the average is a better estimate than any single view.

Modes (``PredictOptions.tta``):

* ``"none"``: the identity only (1 view).
* ``"flip"``: identity, vertical, horizontal and both flips (4 views).
* ``"d4"``: all 8 views, identity and rot90 each with none/V/H/VH flips (D-LinkNet's TTA).

The average is a pairwise (tree) sum of a power-of-two number of views divided by that
power of two, so for a model that commutes with the symmetries every view gives the same
value and the average reproduces it *bit-exactly* (the identity-model test relies on this).

References:
    Zhou, Zhang & Wu, "D-LinkNet: LinkNet with pretrained encoder and dilated convolution
    for high resolution satellite imagery road extraction", CVPR Workshops 2018
    (``test.py``: 8-view TTA); ``../shared/specs/d3fnet.md`` §5.3;
    ``../shared/specs/pipeline-anchors.md`` §4.3.
"""

from dataclasses import dataclass
from typing import Literal

import torch

from roadx.errors import InputError

TtaMode = Literal["none", "flip", "d4"]
"""Name of a TTA mode: ``"none"`` (1 view), ``"flip"`` (4 views) or ``"d4"`` (8 views)."""

_ROWS, _COLS = -2, -1  # the (H, W) dimensions of a (B, C, H, W) tensor


@dataclass(frozen=True, slots=True)
class Dihedral:
    """One symmetry of the square acting on the last two dimensions of a tensor.

    The forward transform rotates by ``90 * rot90`` degrees counter-clockwise (as
    ``numpy.rot90``), then reverses the rows if ``flip_v`` and the columns if ``flip_h``.

    Attributes:
        rot90: number of quarter turns, 0 or 1.
        flip_v: reverse the rows (flip upside down) after rotating.
        flip_h: reverse the columns (mirror left-right) after rotating.
    """

    rot90: int = 0
    flip_v: bool = False
    flip_h: bool = False

    def _flip_dims(self) -> list[int]:
        return [d for d, on in ((_ROWS, self.flip_v), (_COLS, self.flip_h)) if on]

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Transform ``x``.

        Args:
            x: ``(..., H, W)`` tensor of any dtype.

        Returns:
            The transformed tensor, ``(..., W, H)`` when rotated, else ``(..., H, W)``.
        """
        if self.rot90:
            x = torch.rot90(x, self.rot90, dims=(_ROWS, _COLS))
        dims = self._flip_dims()
        return torch.flip(x, dims) if dims else x

    def invert(self, y: torch.Tensor) -> torch.Tensor:
        """Undo :meth:`apply`: ``invert(apply(x)) == x`` exactly.

        Args:
            y: ``(..., H', W')`` tensor in the transformed frame.

        Returns:
            The tensor in the original frame (flips undone, then the rotation reversed).
        """
        dims = self._flip_dims()
        if dims:
            y = torch.flip(y, dims)
        if self.rot90:
            y = torch.rot90(y, -self.rot90, dims=(_ROWS, _COLS))
        return y


_FLIPS = (Dihedral(), Dihedral(flip_v=True), Dihedral(flip_h=True), Dihedral(0, True, True))
_VIEWS: dict[str, tuple[Dihedral, ...]] = {
    "none": (Dihedral(),),
    "flip": _FLIPS,
    "d4": tuple(Dihedral(r, f.flip_v, f.flip_h) for r in (0, 1) for f in _FLIPS),
}


def tta_views(mode: TtaMode) -> tuple[Dihedral, ...]:
    """Return the views of a TTA mode, identity first.

    Args:
        mode: ``"none"``, ``"flip"`` or ``"d4"``.

    Returns:
        1, 4 or 8 distinct :class:`Dihedral` transforms.

    Raises:
        roadx.errors.InputError: for an unknown mode (the message lists the valid ones).
    """
    try:
        return _VIEWS[mode]
    except KeyError:
        valid = ", ".join(repr(m) for m in _VIEWS)
        raise InputError(f"unknown TTA mode {mode!r}; expected one of {valid}") from None


def augment(x: torch.Tensor, mode: TtaMode) -> torch.Tensor:
    """Stack every view of a batch, view-major.

    Args:
        x: ``(B, C, H, W)`` batch; ``H == W`` when ``mode == "d4"``.
        mode: TTA mode.

    Returns:
        ``(V * B, C, H, W)`` with rows ``v * B : (v + 1) * B`` holding view ``v`` of the batch.

    Raises:
        roadx.errors.InputError: for an unknown mode, or non-square windows with ``"d4"``.
    """
    views = tta_views(mode)
    if len(views) == 1:
        return x
    if any(v.rot90 for v in views) and x.shape[_ROWS] != x.shape[_COLS]:
        raise InputError(
            f"TTA mode {mode!r} rotates windows and needs square ones, got "
            f"{x.shape[_ROWS]}x{x.shape[_COLS]} px; use tta='flip' or square tiles"
        )
    return torch.cat([v.apply(x) for v in views], dim=0)


def merge(y: torch.Tensor, mode: TtaMode) -> torch.Tensor:
    """Map each view's probabilities back to the original frame and average them.

    Average probabilities, not logits (``pipeline-anchors.md`` §4.3). The sum is taken
    pairwise, so identical views average to exactly their common value.

    Args:
        y: ``(V * B, C, H, W)`` float32 probabilities in ``[0, 1]``, view-major as produced
            by :func:`augment` (sigmoid already applied).
        mode: the TTA mode used for :func:`augment`.

    Returns:
        ``(B, C, H, W)`` float32 mean probability.

    Raises:
        roadx.errors.InputError: for an unknown mode or a first dimension that is not a
            multiple of the number of views.
    """
    views = tta_views(mode)
    n = len(views)
    if y.shape[0] % n:
        raise InputError(f"TTA mode {mode!r} needs a multiple of {n} maps, got {y.shape[0]}")
    b = y.shape[0] // n
    parts = [v.invert(y[i * b : (i + 1) * b]) for i, v in enumerate(views)]
    while len(parts) > 1:  # pairwise tree sum: exact for identical views when n is 2**k
        pairs = [parts[i] + parts[i + 1] for i in range(0, len(parts) - 1, 2)]
        parts = pairs + parts[len(pairs) * 2 :]
    return parts[0] / n if n > 1 else parts[0]
