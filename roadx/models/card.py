"""Model cards: the metadata that travels with every set of weights.

A :class:`ModelCard` says how to feed a network and how to read its output: one
:class:`BandSpec` per input channel (name, role and the DN -> network scaling), the input-size
multiple the network needs, the stride of its native prediction, the ground sample distance the
weights were trained at, the window size used at inference and whether the output is logits or
probabilities. It is stored as JSON in every roadx checkpoint (metadata key ``"roadx.card"``), in
the spirit of timm's ``PretrainedCfg`` and TorchGeo's ``Weights.meta``.

Card versions: version 2 (this module) writes ``"card_version": 2`` and one object per band.
Version 1 cards (every checkpoint written before card v2, the shipped ``weights/d3fnet34``
too) have ``bands`` as colour letters and one scalar ``input_scale``/``input_offset``;
:meth:`ModelCard.from_dict` migrates them on read (every band gets the scalar scaling, the
input multiple is 32) so that old files give exactly the same network input.

This module is torch-free.
"""

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from roadx.errors import InputError

__all__ = [
    "BAND_ROLES",
    "CARD_VERSION",
    "DLINKNET_SCALE",
    "IMAGENET_MEAN_STD",
    "BandSpec",
    "ModelCard",
    "imagenet_rgb_bands",
    "uniform_bands",
]

_OUTPUTS = ("logits", "probabilities")
#: Band roles: ``rgb`` colour channels, ``nir`` near infrared, ``pan`` panchromatic, ``aux`` any
#: other co-registered raster (DSM, SAR, ...).
BAND_ROLES: tuple[str, ...] = ("rgb", "nir", "aux", "pan")
BandRole = Literal["rgb", "nir", "aux", "pan"]
#: The card format written by this roadx.
CARD_VERSION = 2
#: D-LinkNet's ``x / 255 * 3.2 - 1.6`` as (scale, offset) per uint8 DN (d3fnet.md §5.1).
DLINKNET_SCALE = (3.2 / 255, -1.6)
#: ImageNet channel statistics (torchvision) for R, G, B on [0, 1] values: (means, stds).
IMAGENET_MEAN_STD = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
_ROLE_OF_NAME = {"R": "rgb", "G": "rgb", "B": "rgb", "NIR": "nir", "N": "nir", "PAN": "pan",
                 "P": "pan"}


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True, slots=True)
class BandSpec:
    """One network input channel: what it is and how its DNs are scaled.

    The network input of the channel is ``x_net = dn * scale + offset`` where ``dn`` is the
    band's value as read by roadx (uint8 after roadx's per-band stretch, see ``dtype``). A
    mean/std normalisation ``(dn / dn_max - mean) / std`` is the same affine map; build it with
    :meth:`from_mean_std`.

    Attributes:
        name: Band name, e.g. ``"R"``, ``"G"``, ``"B"``, ``"NIR"``, ``"DSM"``.
        role: ``"rgb"``, ``"nir"``, ``"aux"`` or ``"pan"`` (see :data:`BAND_ROLES`).
        scale: Multiplier per DN (float, finite, non-zero).
        offset: Added after scaling (float, finite).
        dtype: The DN type ``scale``/``offset`` apply to (``"uint8"``: roadx stretches 16-bit
            imagery to uint8 before the network).
        optional: The model works without this band: where it is missing (no such band in a
            training sample, no data at a pixel) its input channel is NaN, which the model
            treats as "absent" (``d3fnet34-mm``'s NIR/auxiliary band). Default False.

    Raises:
        InputError: On construction: empty name, unknown role, zero or non-finite scale,
            non-finite offset.
    """

    name: str
    role: BandRole = "rgb"
    scale: float = DLINKNET_SCALE[0]
    offset: float = DLINKNET_SCALE[1]
    dtype: str = "uint8"
    optional: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InputError(f"band spec has name {self.name!r}; expected e.g. 'R' or 'NIR'.")
        if self.role not in BAND_ROLES:
            raise InputError(
                f"band {self.name!r} has role {self.role!r}; expected one of {BAND_ROLES}."
            )
        for attr in ("scale", "offset"):
            value = getattr(self, attr)
            if not _finite(value):
                raise InputError(
                    f"band {self.name!r} has {attr}={value}; expected a finite number."
                )
        if self.scale == 0:
            raise InputError(f"band {self.name!r} has scale=0; expected a non-zero factor.")

    @classmethod
    def from_mean_std(
        cls, name: str, role: BandRole, mean: float, std: float, *, dn_max: float = 255.0
    ) -> "BandSpec":
        """Band whose input is ``(dn / dn_max - mean) / std`` (e.g. ImageNet statistics).

        Raises:
            InputError: ``std`` or ``dn_max`` not a finite positive number.
        """
        if not (_finite(std) and std > 0 and _finite(dn_max) and dn_max > 0):
            raise InputError(f"band {name!r}: std={std}, dn_max={dn_max}; expected both > 0.")
        return cls(name, role, 1.0 / (dn_max * std), -mean / std)

    def to_dict(self) -> dict[str, Any]:
        """The band as a JSON object ``{"name", "role", "scale", "offset", "dtype",
        "optional"}``."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "BandSpec":
        """Inverse of :meth:`to_dict`.

        Raises:
            InputError: Not an object, unknown keys, no ``name``, or bad values.
        """
        if not isinstance(d, Mapping):
            raise InputError(f"band spec must be a JSON object, got {type(d).__name__}.")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown or "name" not in d:
            raise InputError(
                f"band spec {dict(d)} has unknown fields {unknown} or no 'name'; expected keys "
                f"{sorted(known)}."
            )
        return cls(**dict(d))


def uniform_bands(
    names: Iterable[str], scale: float = DLINKNET_SCALE[0], offset: float = DLINKNET_SCALE[1]
) -> tuple[BandSpec, ...]:
    """Band specs sharing one scaling; the role follows the name (R/G/B rgb, NIR nir, PAN pan,
    anything else aux). ``uniform_bands("BGR")`` is D-LinkNet's input."""
    return tuple(
        BandSpec(n, _ROLE_OF_NAME.get(n.upper(), "aux"), scale, offset)  # type: ignore[arg-type]
        for n in names
    )


def imagenet_rgb_bands() -> tuple[BandSpec, ...]:
    """R, G, B with torchvision's ImageNet mean/std (DDRNet's and DANet's normalisation)."""
    means, stds = IMAGENET_MEAN_STD
    return tuple(
        BandSpec.from_mean_std(n, "rgb", m, s) for n, m, s in zip("RGB", means, stds, strict=True)
    )


@dataclass(frozen=True, slots=True)
class ModelCard:
    """How to feed a road model and how to read its output (card format version 2).

    Channel ``c`` of the network input is ``dn_c * bands[c].scale + bands[c].offset``; the
    default bands are D-LinkNet's ``x / 255 * 3.2 - 1.6`` on B, G, R (d3fnet.md §5.1).

    Attributes:
        name: Registry architecture name, e.g. ``"d3fnet34"``.
        bands: One :class:`BandSpec` per input channel, in network order.
        gsd_m: Ground sample distance the weights expect, metres per pixel.
        tile_px: Window size in pixels used at inference (a multiple of ``input_multiple_px``).
        input_multiple_px: Input height and width must be multiples of this (32 for the
            LinkNets, 64 for DDRNet).
        output_stride: Stride of the network's native prediction in input pixels (1: the
            LinkNet decoders predict at full resolution; 8: DDRNet predicts at 1/8 and upsamples
            bilinearly). The model always returns full-size logits; this is information.
        output: ``"logits"`` (apply a sigmoid) or ``"probabilities"``.
        license: Licence of the weights/code, e.g. ``"MIT"``.
        paper: Citation of the method.
        description: Free text: what the weights are.
        training: Provenance of the weights (data, tiles, epochs, validation metrics...);
            JSON-serialisable values only.

    Raises:
        InputError: On construction, for an unknown ``output``, a ``gsd_m`` that is not a
            finite positive number, an ``input_multiple_px``/``output_stride`` that is not a
            positive int, a ``tile_px`` not a positive multiple of ``input_multiple_px``, empty
            ``bands``, bands that are not :class:`BandSpec` or repeat a name.
    """

    name: str
    bands: tuple[BandSpec, ...] = uniform_bands("BGR")
    gsd_m: float = 0.5
    tile_px: int = 1024
    input_multiple_px: int = 32
    output_stride: int = 1
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
        bands = tuple(self.bands)
        if not bands:
            raise InputError(
                f"model card {self.name!r} has no bands; expected e.g. uniform_bands('BGR')."
            )
        if not all(isinstance(b, BandSpec) for b in bands):
            raise InputError(
                f"model card {self.name!r} has bands {self.bands!r}; expected one or more "
                "BandSpec, e.g. uniform_bands('BGR')."
            )
        names = [b.name for b in bands]
        if len(set(names)) != len(names):
            raise InputError(f"model card {self.name!r} repeats a band name: {names}.")
        object.__setattr__(self, "bands", bands)
        if not (_finite(self.gsd_m) and self.gsd_m > 0):
            raise InputError(
                f"model card {self.name!r} has gsd_m={self.gsd_m}; expected a finite value "
                "> 0 m."
            )
        for attr in ("input_multiple_px", "output_stride"):
            value = getattr(self, attr)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise InputError(
                    f"model card {self.name!r} has {attr}={value!r}; expected a positive integer."
                )
        multiple = self.input_multiple_px
        if not isinstance(self.tile_px, int) or self.tile_px <= 0 or self.tile_px % multiple:
            raise InputError(
                f"model card {self.name!r} has tile_px={self.tile_px}; expected a positive "
                f"multiple of {multiple} (the network's input multiple)."
            )

    @property
    def band_names(self) -> tuple[str, ...]:
        """Band names in network order, e.g. ``("B", "G", "R")``."""
        return tuple(b.name for b in self.bands)

    @property
    def in_chans(self) -> int:
        """Number of network input channels (``len(bands)``)."""
        return len(self.bands)

    @property
    def aux_channels(self) -> tuple[int, ...]:
        """Network-order indexes of the channels a separate auxiliary raster may supply (roles
        ``nir`` and ``aux``), e.g. ``(3,)`` for B, G, R, NIR; ``()`` for an RGB model."""
        return tuple(i for i, b in enumerate(self.bands) if b.role in ("nir", "aux"))

    @property
    def input_scales(self) -> tuple[float, ...]:
        """Per-channel DN multipliers, network order."""
        return tuple(float(b.scale) for b in self.bands)

    @property
    def input_offsets(self) -> tuple[float, ...]:
        """Per-channel offsets added after scaling, network order."""
        return tuple(float(b.offset) for b in self.bands)

    def describe_scaling(self) -> str:
        """One line, e.g. ``"x/255*3.2-1.6"`` (shared) or ``"R x*0.0171-2.12, G ..."``."""
        scales, offsets = set(self.input_scales), set(self.input_offsets)
        if len(scales) == 1 and len(offsets) == 1:
            return f"x/255*{next(iter(scales)) * 255:.4g}{next(iter(offsets)):+.4g}"
        return ", ".join(f"{b.name} x*{b.scale:.4g}{b.offset:+.4g}" for b in self.bands)


    def to_dict(self) -> dict[str, Any]:
        """Return the card as a JSON-serialisable dict (version 2, one object per band)."""
        d: dict[str, Any] = {"card_version": CARD_VERSION}
        for f in fields(self):
            d[f.name] = getattr(self, f.name)
        d["bands"] = [b.to_dict() for b in self.bands]
        d["training"] = dict(self.training)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelCard":
        """Build a card from :meth:`to_dict` output, migrating version-1 cards.

        A version-1 card (no ``card_version``; ``bands`` as names; scalar ``input_scale`` and
        ``input_offset``, defaults 3.2/255 and -1.6) becomes a version-2 card whose every band
        has that scaling and a role from its name, with ``input_multiple_px`` 32. Unknown keys
        are rejected so that a typo never silently falls back to a default.

        Args:
            d: Mapping of field name to value; ``name`` is required.

        Returns:
            The card.

        Raises:
            InputError: If ``d`` is not a dict, lacks ``name``, has unknown keys, a version
                newer than :data:`CARD_VERSION`, or bad values.
        """
        if not isinstance(d, dict):
            raise InputError(f"model card must be a JSON object, got {type(d).__name__}.")
        kwargs = dict(d)
        version = kwargs.pop("card_version", 1)
        if version not in (1, CARD_VERSION):
            raise InputError(
                f"model card version {version!r} is not supported (this roadx reads 1 and "
                f"{CARD_VERSION}); upgrade roadx."
            )
        legacy = {"input_scale", "input_offset"} if version == 1 else set()
        known = {f.name for f in fields(cls)} | legacy
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise InputError(
                f"model card has unknown fields {unknown}; expected only {sorted(known)}."
            )
        if "name" not in kwargs:
            raise InputError(
                "model card has no 'name'; expected a registry name such as 'd3fnet34'."
            )
        if "training" in kwargs and not isinstance(kwargs["training"], dict):
            raise InputError("model card field 'training' must be a JSON object.")
        bands = kwargs.get("bands")
        if version == 1:
            scale = kwargs.pop("input_scale", DLINKNET_SCALE[0])
            offset = kwargs.pop("input_offset", DLINKNET_SCALE[1])
            for key, value in (("input_scale", scale), ("input_offset", offset)):
                if not _finite(value):
                    raise InputError(
                        f"model card {kwargs['name']!r} has {key}={value}; expected a finite "
                        "number."
                    )
            names = ["B", "G", "R"] if bands is None else bands
            if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
                raise InputError(f"model card bands {names!r}; expected a list of band names.")
            kwargs["bands"] = uniform_bands(names, scale, offset)
        elif bands is not None:
            if not isinstance(bands, list | tuple):
                raise InputError(f"model card bands {bands!r}; expected a list of band objects.")
            kwargs["bands"] = tuple(BandSpec.from_dict(b) for b in bands)
        try:
            return cls(**kwargs)
        except TypeError as err:
            raise InputError(f"model card is malformed: {err}") from None
