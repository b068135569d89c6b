"""Find training samples in dataset folders and split them into training and validation.

Three layouts are recognised (``detect_format``):

* ``deepglobe`` — one flat folder of ``<id>_sat.jpg`` + ``<id>_mask.png`` (0.5 m).
* ``folders`` — ``images/<stem>.*`` + ``masks/<stem>.png`` (any raster Pillow or GDAL reads;
  road where mask band 1 > 127). The Massachusetts Roads folders use it (1 m).
* ``gis`` — GeoTIFF scenes with road centreline vectors, matched by file stem
  (``a.tif`` + ``a.geojson``/``a.gpkg``/``a.shp``) or given by ``--labels`` files that cover
  many scenes.

The validation split is made by **tile**, never by crop: quadrant crops named
``<tile>_<r>_<c>`` (as in the Lorudarku Massachusetts folder) belong to their tile, and a tile
is wholly in one set (SOURCES.md, "Split hygiene").

An auxiliary raster per sample (NIR, DSM, SAR for a multimodal model) is matched by file stem
with ``aux_suffix``: the auxiliary raster of ``<folder>/<stem>.<ext>`` is
``<folder>/<stem><aux_suffix>.<any raster extension>`` (e.g. ``images/a.tif`` +
``images/a_nir.tif``); files named so are not samples themselves.
"""

import dataclasses
import glob
import hashlib
import logging
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from roadx.errors import DatasetError

logger = logging.getLogger(__name__)

SampleKind = Literal["pair", "scene"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".jp2")
SCENE_SUFFIXES = (".tif", ".tiff", ".vrt", ".jp2", ".img")
VECTOR_SUFFIXES = (".geojson", ".json", ".gpkg", ".shp", ".fgb")
#: Default GSD of non-georeferenced images per layout (metres per pixel).
DEFAULT_SOURCE_GSD_M = {"deepglobe": 0.5, "folders": 1.0}

_QUADRANT = re.compile(r"^(?P<tile>.+_\d+)_\d+_\d+$")


@dataclass(frozen=True)
class Sample:
    """One labelled image of a dataset.

    Attributes:
        image: image or scene file.
        labels: the mask (``pair``) or the vector files (``scene``).
        kind: ``"pair"`` (image + mask raster) or ``"scene"`` (GeoTIFF + vectors).
        tile_id: id of the source tile; crops of one tile share it.
        source: the dataset folder the sample comes from.
        source_gsd_m: GSD of a non-georeferenced image in m/px (None: read from the file).
        aux: the sample's auxiliary raster (see the module notes), or None.
    """

    image: Path
    labels: tuple[Path, ...]
    kind: SampleKind
    tile_id: str
    source: Path
    source_gsd_m: float | None = None
    aux: Path | None = None


def tile_id_of(stem: str) -> str:
    """Tile id of a file stem: ``<tile>_<r>_<c>`` quadrant crops map to ``<tile>``.

    Example:
        >>> tile_id_of("10078675_15_0_1"), tile_id_of("10978945_15"), tile_id_of("104_sat")
        ('10078675_15', '10978945_15', '104')
    """
    stem = stem.removesuffix("_sat").removesuffix("_mask")
    match = _QUADRANT.match(stem)
    return match.group("tile") if match else stem


def detect_format(root: Path) -> str:
    """Guess the layout of a dataset folder.

    Raises:
        DatasetError: the folder does not exist or matches no layout.
    """
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found; expected a folder. Check --data.")
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return "folders"
    names = [p.name for p in root.iterdir()]
    if any(n.endswith("_sat.jpg") for n in names):
        return "deepglobe"
    if any(n.lower().endswith(SCENE_SUFFIXES) for n in names):
        return "gis"
    raise DatasetError(
        f"{root}: unknown dataset layout; expected images/ + masks/ folders, <id>_sat.jpg + "
        "<id>_mask.png files, or GeoTIFF scenes with road vectors. Pass --format to choose."
    )


def _folder_samples(
    root: Path, source_gsd_m: float | None, aux_suffix: str | None = None
) -> list[Sample]:
    masks = {p.stem: p for p in (root / "masks").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    samples = []
    for image in sorted((root / "images").iterdir()):
        if image.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if aux_suffix and image.stem.endswith(aux_suffix):
            continue  # an auxiliary raster, see _attach_aux
        mask = masks.get(image.stem)
        if mask is None:
            logger.warning("%s: no mask masks/%s.png; skipped", image, image.stem)
            continue
        samples.append(Sample(image, (mask,), "pair", tile_id_of(image.stem), root, source_gsd_m))
    return samples


def _deepglobe_samples(root: Path, source_gsd_m: float | None) -> list[Sample]:
    samples = []
    for image in sorted(root.glob("*_sat.jpg")):
        stem = image.name.removesuffix("_sat.jpg")
        mask = root / f"{stem}_mask.png"
        if not mask.is_file():
            logger.warning("%s: no mask %s; skipped", image, mask.name)
            continue
        samples.append(Sample(image, (mask,), "pair", stem, root, source_gsd_m))
    return samples


def _gis_samples(root: Path, labels: Sequence[Path]) -> list[Sample]:
    vectors = defaultdict(list)
    for p in root.iterdir():
        if p.suffix.lower() in VECTOR_SUFFIXES:
            vectors[p.stem].append(p)
    samples = []
    for scene in sorted(p for p in root.iterdir() if p.suffix.lower() in SCENE_SUFFIXES):
        own = tuple(sorted(vectors.get(scene.stem, [])))
        files = own or tuple(labels)
        if not files:
            logger.info("%s: no road vectors with the same stem and no --labels; not used", scene)
            continue
        samples.append(Sample(scene, files, "scene", scene.stem, root, None))
    return samples


def discover_samples(
    roots: Iterable[str | Path],
    *,
    fmt: str = "auto",
    labels: Sequence[str | Path] = (),
    source_gsd_m: float | None = None,
    aux_suffix: str | None = None,
) -> list[Sample]:
    """List the labelled samples of one or more dataset folders (layouts may be mixed).

    Args:
        roots: dataset folders.
        fmt: ``"auto"``, ``"deepglobe"``, ``"folders"`` or ``"gis"`` (applies to every folder).
        labels: vector files for GIS scenes that have no same-stem vector file.
        source_gsd_m: GSD of non-georeferenced images (None: 0.5 m DeepGlobe, 1 m folders).
        aux_suffix: match each sample's auxiliary raster by stem + this suffix (module
            notes); samples without one keep ``aux=None`` (the model sees that band absent).

    Returns:
        Samples sorted by folder, then file name. Images without a mask are logged and left out.

    Raises:
        DatasetError: a folder is missing or of unknown layout, or nothing was found at all.
    """
    samples: list[Sample] = []
    label_paths = [Path(p) for p in labels]
    for root in map(Path, roots):
        kind = detect_format(root) if fmt == "auto" else fmt
        if not root.is_dir():
            raise DatasetError(f"{root}: dataset folder not found; check --data.")
        gsd = source_gsd_m if source_gsd_m is not None else DEFAULT_SOURCE_GSD_M.get(kind)
        if kind == "folders":
            found = _folder_samples(root, gsd, aux_suffix)
        elif kind == "deepglobe":
            found = _deepglobe_samples(root, gsd)
        elif kind == "gis":
            found = _gis_samples(root, label_paths)
        else:
            raise DatasetError(
                f"unknown dataset format {kind!r}; expected auto, deepglobe, folders or gis."
            )
        if aux_suffix:
            found = _attach_aux(found, aux_suffix)
        logger.info("%s: %d samples (%s layout)", root, len(found), kind)
        samples.extend(found)
    if not samples:
        raise DatasetError(
            "no labelled samples found in " + ", ".join(str(r) for r in roots) + "; expected "
            "image/mask pairs or GeoTIFF scenes with road vectors."
        )
    return samples


def _attach_aux(samples: Sequence[Sample], suffix: str) -> list[Sample]:
    """Drop samples that are auxiliary rasters themselves; give the others their aux file."""
    kept = []
    for sample in samples:
        if sample.image.stem.endswith(suffix):
            continue
        folder, stem = sample.image.parent, sample.image.stem
        matches = sorted(
            p for p in folder.glob(f"{glob.escape(stem + suffix)}.*")
            if p.suffix.lower() in IMAGE_SUFFIXES + SCENE_SUFFIXES
        )
        if not matches:
            logger.info("%s: no auxiliary raster %s%s.*; that band is absent", sample.image,
                        stem, suffix)
        kept.append(dataclasses.replace(sample, aux=matches[0] if matches else None))
    return kept


def _rank(seed: int, source: Path, tile_id: str) -> str:
    return hashlib.sha1(f"{seed}:{source.name}:{tile_id}".encode()).hexdigest()


def read_val_list(path: str | Path) -> set[str]:
    """Read held-out ids (tile ids or file stems), one a line; ``#`` starts a comment.

    Raises:
        DatasetError: the file cannot be read.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise DatasetError(f"{path}: cannot read the validation list ({err}).") from err
    return {line.split("#")[0].strip() for line in text.splitlines()} - {""}


def _check_val_ids(samples: Sequence[Sample], unmatched: set[str]) -> None:
    """Refuse held-out entries ``<folder>/<tile id>`` whose tile exists under another folder
    name; log the entries that match nothing (e.g. tiles of a source not in this run)."""
    if not unmatched:
        return
    folders_of: dict[str, set[str]] = defaultdict(set)
    for s in samples:
        folders_of[s.tile_id].add(s.source.name)
    moved = {e: sorted(folders_of[e.rsplit("/", 1)[1]]) for e in sorted(unmatched)
             if "/" in e and e.rsplit("/", 1)[1] in folders_of}
    if moved:
        entry, folders = next(iter(moved.items()))
        raise DatasetError(
            f"held-out list entry {entry!r} matches no data folder of that name, but its tile "
            f"is in folder(s) {folders}: it would be trained on. The part before '/' must be "
            f"the data folder's name; rename the folder or the entry ({len(moved)} such "
            "entries)."
        )
    logger.warning("held-out list: %d entries match no sample of this run: %s", len(unmatched),
                   ", ".join(sorted(unmatched)[:5]) + (" ..." if len(unmatched) > 5 else ""))


def split_samples(
    samples: Sequence[Sample],
    *,
    val_fraction: float = 0.1,
    val_ids: set[str] | None = None,
    seed: int = 0,
) -> tuple[list[Sample], list[Sample]]:
    """Split samples into training and validation sets by whole tiles.

    With ``val_ids``, a sample is held out when its tile id, file stem, file name or
    ``<folder name>/<tile id>`` is listed.
    Otherwise each source folder holds out ``ceil(val_fraction × its tile count)`` tiles
    (none when the fraction is 0), chosen by a seeded hash so the choice is stable and spread
    over the folder. Crops of one tile always land in the same set.

    Args:
        samples: the samples of every source.
        val_fraction: share of tiles of each source to hold out.
        val_ids: explicit held-out tile ids / stems / names (overrides ``val_fraction``).
        seed: changes which tiles the hash picks.

    Returns:
        (train, val) lists, in input order.

    Raises:
        DatasetError: every sample would be held out (nothing to train on), or a
            ``<folder>/<tile id>`` entry names a tile that exists only under another folder
            name (it would otherwise silently train on a tile meant to be held out).
    """
    if val_ids is not None:
        held = set()
        matched: set[str] = set()
        for s in samples:
            hit = {s.tile_id, s.image.stem, s.image.name, f"{s.source.name}/{s.tile_id}"} & val_ids
            if hit:
                held.add((s.source, s.tile_id))
                matched |= hit
        _check_val_ids(samples, val_ids - matched)
    else:
        tiles_by_source: dict[Path, set[str]] = defaultdict(set)
        for s in samples:
            tiles_by_source[s.source].add(s.tile_id)
        held = set()
        for source, tiles in tiles_by_source.items():
            n_val = math.ceil(val_fraction * len(tiles)) if val_fraction > 0 else 0
            n_val = min(n_val, len(tiles) - 1) if len(tiles) > 1 else 0
            ranked = sorted(tiles, key=lambda t: _rank(seed, source, t))
            held.update((source, t) for t in ranked[:n_val])
    train = [s for s in samples if (s.source, s.tile_id) not in held]
    val = [s for s in samples if (s.source, s.tile_id) in held]
    if not train:
        raise DatasetError("every sample is in the validation set; expected some to train on.")
    return train, val
