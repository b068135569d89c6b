"""Model cards: the metadata that travels with every set of weights.

A :class:`ModelCard` says how to feed a network and how to read its output: the colour of each
input channel, the uint8 -> network scaling, the ground sample distance the weights were trained
at, the window size used at inference and whether the output is logits or probabilities. It is
stored as JSON in every roadx checkpoint (metadata key ``"roadx.card"``), in the spirit of timm's
``PretrainedCfg`` and TorchGeo's ``Weights.meta`` (``shared/specs/style.md`` §3.7).

This module is torch-free.
"""

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from roadx.errors import InputError

__all__ = ["ModelCard"]

_OUTPUTS = ("logits", "probabilities")


@dataclass(frozen=True, slots=True)
class ModelCard:
    """How to feed a road model and how to read its output.

    The network input is ``x_net = x_uint8 * input_scale + input_offset`` with the channels in
    ``bands`` order; the default (``3.2 / 255``, ``-1.6``) is D-LinkNet's ``x / 255 * 3.2 - 1.6``
    on BGR images (``shared/specs/d3fnet.md`` §5.1).

    Attributes:
        name: Registry architecture name, e.g. ``"d3fnet34"``.
        bands: Colour of each input channel, in network order, e.g. ``("B", "G", "R")``.
        input_scale: Multiplier applied to uint8 values (per unit of DN).
        input_offset: Offset added after scaling.
        gsd_m: Ground sample distance the weights expect, metres per pixel.
        tile_px: Window size in pixels used at inference (divisible by 32).
        output: ``"logits"`` (apply a sigmoid) or ``"probabilities"``.
        license: Licence of the weights/code, e.g. ``"MIT"``.
        paper: Citation of the method.
        description: Free text: what the weights are.
        training: Provenance of the weights (data, tiles, epochs, validation metrics...);
            JSON-serialisable values only.

    Raises:
        InputError: On construction, for an unknown ``output``, a ``gsd_m`` that is not a
            finite positive number, a ``tile_px`` not a positive multiple of 32, an empty
            ``bands``, a zero ``input_scale``, or a non-finite ``input_scale``/``input_offset``.
    """

    name: str
    bands: tuple[str, ...] = ("B", "G", "R")
    input_scale: float = 3.2 / 255
    input_offset: float = -1.6
    gsd_m: float = 0.5
    tile_px: int = 1024
    output: Literal["logits", "probabilities"] = "logits"
    license: str = "MIT"
    paper: str = ""
    description: str = ""
    training: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name:
            raise InputError(
                "model card has an empty name; expected a registry name such as 'd3fnet34'."
            )
        if self.output not in _OUTPUTS:
            raise InputError(
                f"model card {self.name!r} has output={self.output!r}; expected one of {_OUTPUTS}."
            )
        if not self.bands:
            raise InputError(
                f"model card {self.name!r} has no bands; expected e.g. ('B', 'G', 'R')."
            )
        if not (isinstance(self.gsd_m, int | float) and 0 < self.gsd_m < math.inf):
            raise InputError(
                f"model card {self.name!r} has gsd_m={self.gsd_m}; expected a finite value "
                "> 0 m."
            )
        if not isinstance(self.tile_px, int) or self.tile_px <= 0 or self.tile_px % 32:
            raise InputError(
                f"model card {self.name!r} has tile_px={self.tile_px}; expected a positive "
                "multiple of 32 (the networks downsample by 32)."
            )
        for name in ("input_scale", "input_offset"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value)):
                raise InputError(
                    f"model card {self.name!r} has {name}={value}; expected a finite number."
                )
        if self.input_scale == 0:
            raise InputError(
                f"model card {self.name!r} has input_scale=0; expected a non-zero factor."
            )
        # Normalise list input (e.g. from JSON) to the declared tuple type.
        object.__setattr__(self, "bands", tuple(str(b) for b in self.bands))

    def to_dict(self) -> dict[str, Any]:
        """Return the card as a JSON-serialisable dict (``bands`` as a list).

        Returns:
            A dict with one key per field.
        """
        d = asdict(self)
        d["bands"] = list(self.bands)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelCard":
        """Build a card from :meth:`to_dict` output (e.g. decoded checkpoint JSON).

        Unknown keys are rejected so that a typo never silently falls back to a default.

        Args:
            d: Mapping of field name to value; ``name`` is required.

        Returns:
            The card.

        Raises:
            InputError: If ``d`` is not a dict, lacks ``name``, has unknown keys or bad values.
        """
        if not isinstance(d, dict):
            raise InputError(f"model card must be a JSON object, got {type(d).__name__}.")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(
                f"model card has unknown fields {unknown}; expected only {sorted(known)}."
            )
        if "name" not in d:
            raise InputError(
                "model card has no 'name'; expected a registry name such as 'd3fnet34'."
            )
        kwargs = dict(d)
        if "bands" in kwargs:
            kwargs["bands"] = tuple(kwargs["bands"])
        if "training" in kwargs and not isinstance(kwargs["training"], dict):
            raise InputError("model card field 'training' must be a JSON object.")
        try:
            return cls(**kwargs)
        except TypeError as err:
            raise InputError(f"model card is malformed: {err}") from None
