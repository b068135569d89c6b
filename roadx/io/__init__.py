"""Raster and vector I/O: the only roadx package that touches rasterio, pyogrio and PIL.

* :func:`open_scene` -> :class:`Scene`: windowed, boundless reads of a scene on its
  processing grid (band order, global uint16 stretch, validity mask, GSD, resampling).
* :class:`ProbabilityWriter` / :func:`open_probability`: the uint8 probability GeoTIFF.
* :func:`write_roads` / :func:`read_roads`: GeoPackage / Shapefile / GeoJSON road layers.
* :func:`check_output_path`, :func:`vector_output_paths`: validate outputs before the work
  starts.

Names are resolved lazily, so ``import roadx.io`` does not import rasterio or geopandas.
"""

from importlib import import_module
from typing import Any

_LAZY = {
    "Scene": "roadx.io.raster",
    "open_scene": "roadx.io.raster",
    "ProbabilityWriter": "roadx.io.probability",
    "ProbabilityRaster": "roadx.io.probability",
    "open_probability": "roadx.io.probability",
    "write_roads": "roadx.io.vector",
    "read_roads": "roadx.io.vector",
    "check_output_path": "roadx.fs",
    "vector_output_paths": "roadx.fs",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'roadx.io' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
