"""roadx: georeferenced road networks from large satellite and aerial GeoTIFF scenes.

The Python API (README, "Python API"): :func:`predict_roads` returns a :class:`RoadNetwork`
(GeoDataFrames ``roads`` and ``junctions``, ``to_file``); :func:`extract` writes the files as
``roadx predict`` does; :func:`predict_many` runs many scenes with one loaded model
(:class:`Predictor`) into a folder, resumably, locally or on a Ray cluster
(``backend="ray"``, :class:`RayOptions`; ``pip install "roadx[ray]"``), and
:func:`merge_outputs` joins their networks; :func:`vectorize_raster` turns a probability
raster into roads; the settings are :class:`ExtractOptions`, :class:`PredictOptions` and
:class:`VectorizeParams`.

``import roadx`` is cheap: torch, rasterio and geopandas load only when a function that
needs them is first used (the public names below are resolved lazily).

Example:
    >>> import roadx
    >>> roadx.__version__
    '0.1.0'
"""

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "predict_roads": "roadx.pipeline",
    "RoadNetwork": "roadx.pipeline",
    "ExtractOptions": "roadx.pipeline",
    "PredictOptions": "roadx.predict",
    "VectorizeParams": "roadx.vectorize",
    "extract": "roadx.pipeline",
    "ExtractResult": "roadx.pipeline",
    "vectorize_raster": "roadx.pipeline",
    "Predictor": "roadx.pipeline",
    "predict_many": "roadx.batch",
    "BatchResult": "roadx.batch",
    "merge_outputs": "roadx.batch",
    "RayOptions": "roadx.ray_backend",
    "create_model": "roadx.models",
    "list_models": "roadx.models",
    "load_checkpoint": "roadx.models",
    "TileGrid": "roadx.tiling",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'roadx' has no attribute {name!r}")
