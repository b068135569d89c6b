"""roadx's QGIS plugin: a Processing provider "roadx" with Extract roads, Vectorize
probability and Evaluate.

The algorithms run the roadx command line in a subprocess (see :mod:`.runner` for which
roadx), so this package is pure PyQGIS + standard library and imports nothing from roadx:
QGIS's Python is not roadx's Python. ``roadx qgis-plugin install`` copies this folder into a
QGIS profile as ``roadx_processing``. Nothing here imports QGIS until QGIS calls
:func:`classFactory`.
"""


def classFactory(iface):  # noqa: N802 (the name QGIS looks for)
    """QGIS's entry point: the plugin object for the QGIS interface ``iface``."""
    from .plugin import RoadxPlugin

    return RoadxPlugin(iface)
