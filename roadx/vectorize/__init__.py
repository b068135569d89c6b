"""Road probability raster → georeferenced road line network (torch- and rasterio-free).

Pipeline (pipeline-anchors.md §5, after CRESI): hysteresis threshold and mask clean-up
(:mod:`~roadx.vectorize.mask`) → Zhang–Suen skeleton kept as sparse pixels
(:mod:`~roadx.vectorize.skeleton`) → pixel-graph tracing per row band
(:mod:`~roadx.vectorize.trace`), after gap bridging and T-junction snapping on the skeleton
(:mod:`~roadx.vectorize.repair`) → seam stitching, spur pruning and degree-2 contraction
(:mod:`~roadx.vectorize.graph`), junction merging and duplicate collapsing
(:mod:`~roadx.vectorize.repair`) → Douglas–Peucker and georeferencing into GeoDataFrames
(:mod:`~roadx.vectorize.geometry`). :class:`BandVectorizer` streams row bands with a halo
(:mod:`~roadx.vectorize.bands`); :func:`vectorize` runs the same code on one array.

Public API: :class:`VectorizeParams`, :class:`RoadNetwork`, :func:`vectorize`,
:class:`BandVectorizer`.
"""

from roadx.vectorize.bands import BandVectorizer, vectorize
from roadx.vectorize.geometry import EDGE_COLUMNS, NODE_COLUMNS, RoadNetwork
from roadx.vectorize.params import VectorizeParams

__all__ = [
    "EDGE_COLUMNS",
    "NODE_COLUMNS",
    "BandVectorizer",
    "RoadNetwork",
    "VectorizeParams",
    "vectorize",
]
