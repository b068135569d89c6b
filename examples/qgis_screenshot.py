"""Render the README's QGIS picture: the synthetic example scene and the roads the roadx QGIS
plugin extracts from it, drawn with roadx's styles by QGIS itself (headless).

Run with the Python that has QGIS (Debian: python3-qgis, /usr/bin/python3), after
``python examples/make_example_scene.py``; roadx runs in a subprocess as in QGIS (``roadx`` on
PATH, or ROADX_PYTHON)::

    /usr/bin/python3 examples/qgis_screenshot.py            # -> examples/qgis-example.png

Only the synthetic scene is used: never render real data into the repository.
"""

import argparse
import importlib.util
import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

HERE = Path(__file__).resolve().parent
PLUGIN = HERE.parent / "roadx" / "qgis"


def load_plugin():
    """Import roadx/qgis as the package ``roadx_processing`` (as QGIS does once installed)."""
    spec = importlib.util.spec_from_file_location(
        "roadx_processing", PLUGIN / "__init__.py", submodule_search_locations=[str(PLUGIN)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["roadx_processing"] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scene", type=Path, default=HERE / "data" / "synthetic_scene.tif")
    parser.add_argument("--out", type=Path, default=HERE / "qgis-example.png")
    parser.add_argument("--size", type=int, default=560, help="picture size in pixels")
    args = parser.parse_args()
    if not args.scene.is_file():
        sys.exit(f"error: {args.scene} not found; run python examples/make_example_scene.py")

    from qgis.core import (QgsApplication, QgsMapRendererCustomPainterJob, QgsMapSettings,
                           QgsRasterLayer, QgsVectorLayer)
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QColor, QImage, QPainter

    app = QgsApplication([], False)
    app.initQgis()
    sys.path.append("/usr/share/qgis/python/plugins")  # QGIS's Processing plugin (Debian)
    import processing
    from processing.core.Processing import Processing

    Processing.initialize()
    plugin = load_plugin().classFactory(None)  # keep a reference: it owns the provider
    plugin.initProcessing()

    work = args.scene.parent / "qgis"
    work.mkdir(exist_ok=True)
    result = processing.run("roadx:extractroads", {
        "INPUT": str(args.scene), "OUTPUT": str(work / "roads.gpkg"), "OVERWRITE": True})
    scene = QgsRasterLayer(str(args.scene), "scene")
    roads = QgsVectorLayer(result["OUTPUT"], "roads", "ogr")
    junctions = QgsVectorLayer(result["JUNCTIONS"], "junctions", "ogr")
    for layer in (roads, junctions):
        layer.loadDefaultStyle()  # the styles roadx wrote into the GeoPackage
    print(f"{roads.featureCount()} roads, {junctions.featureCount()} junctions")

    settings = QgsMapSettings()
    settings.setLayers([junctions, roads, scene])
    settings.setDestinationCrs(scene.crs())
    settings.setExtent(scene.extent())
    settings.setOutputSize(QSize(args.size, args.size))
    settings.setBackgroundColor(QColor("white"))
    image = QImage(QSize(args.size, args.size), QImage.Format_RGB32)
    image.fill(QColor("white"))
    painter = QPainter(image)
    job = QgsMapRendererCustomPainterJob(settings, painter)
    job.start()
    job.waitForFinished()
    painter.end()
    image.save(str(args.out))
    try:  # 256 colours: the README picture stays under 200 KB
        from PIL import Image

        with Image.open(args.out) as picture:
            small = picture.convert("RGB").quantize(
                colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
        small.save(args.out, optimize=True)
    except ImportError:
        pass
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KiB)")
    os._exit(0)  # QGIS may crash while tearing down its providers


if __name__ == "__main__":
    main()
