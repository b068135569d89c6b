"""The styled outputs open in real QGIS (Debian's python3-qgis, headless): the GeoPackage's
default styles and the probability raster's .qml are picked up, and the layers render.

QGIS runs under the system Python (/usr/bin/python3), separate from roadx's environment;
.ci/run installs it where apt is available. Without it the test is skipped.
"""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from affine import Affine

SYSTEM_PYTHON = "/usr/bin/python3"

LOAD = """
import json, os, sys
os.environ["QT_QPA_PLATFORM"] = "offscreen"
from qgis.core import (QgsApplication, QgsMapRendererParallelJob, QgsMapSettings,
                       QgsRasterLayer, QgsVectorLayer)
from qgis.PyQt.QtCore import QSize
app = QgsApplication([], False)
app.initQgis()
gpkg, tif, png = sys.argv[1:4]
roads = QgsVectorLayer(gpkg + "|layername=roads", "roads", "ogr")
junctions = QgsVectorLayer(gpkg + "|layername=junctions", "junctions", "ogr")
prob = QgsRasterLayer(tif, "prob")
out = {}
for layer in (roads, junctions):
    out[layer.name()] = {"valid": layer.isValid(), "renderer": layer.renderer().type(),
                         "features": layer.featureCount(),
                         "rules": [r.label() for r in layer.renderer().rootRule().children()]
                         if layer.renderer().type() == "RuleRenderer" else []}
out["prob"] = {"valid": prob.isValid(), "renderer": prob.renderer().type()}
settings = QgsMapSettings()
settings.setLayers([junctions, roads, prob])
settings.setOutputSize(QSize(200, 200))
settings.setDestinationCrs(roads.crs())
settings.setExtent(roads.extent())
job = QgsMapRendererParallelJob(settings)
job.start()
job.waitForFinished()
out["rendered"] = job.renderedImage().save(png)
print(json.dumps(out), flush=True)
os._exit(0)  # QGIS may crash while tearing down its providers; the check is done
"""


def _has_qgis() -> bool:
    try:
        return subprocess.run([SYSTEM_PYTHON, "-c", "import qgis.core"], capture_output=True,
                              timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(not _has_qgis(), reason="QGIS (python3-qgis) is not installed")
def test_qgis_loads_the_default_styles(tmp_path: Path) -> None:
    from roadx.io import ProbabilityWriter, write_roads
    from roadx.tiling import Window
    from roadx.vectorize import vectorize

    prob = np.full((200, 400), 0.02, np.float32)
    prob[96:105, :] = 0.95
    prob[96:105, 180:220] = 0.2  # a faint gap: one bridge
    transform = Affine(0.5, 0, 500_000, 0, -0.5, 4_000_000)
    net = vectorize(prob, transform=transform, crs="EPSG:32633", pixel_size_m=0.5)
    gpkg, tif = tmp_path / "roads.gpkg", tmp_path / "prob.tif"
    write_roads(net, gpkg)
    with ProbabilityWriter(tif, width=400, height=200, crs="EPSG:32633",
                           transform=transform) as writer:
        writer.write(Window(0, 0, 200, 400), prob)
    assert (tmp_path / "prob.qml").exists()
    result = subprocess.run([SYSTEM_PYTHON, "-c", LOAD, str(gpkg), str(tif),
                             str(tmp_path / "map.png")],
                            capture_output=True, text=True, timeout=300, check=True)
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["roads"]["valid"] and loaded["roads"]["renderer"] == "RuleRenderer"
    assert loaded["roads"]["features"] == len(net.edges)
    assert loaded["roads"]["rules"][0].startswith("inferred across a gap")
    assert loaded["junctions"]["renderer"] == "RuleRenderer"
    assert loaded["prob"]["valid"] and loaded["prob"]["renderer"] == "singlebandpseudocolor"
    assert loaded["rendered"] and (tmp_path / "map.png").stat().st_size > 0
