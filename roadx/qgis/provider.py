"""The "roadx" Processing provider: its algorithms and its one setting (which roadx to run)."""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .algorithms import EvaluateAlgorithm, ExtractRoadsAlgorithm, VectorizeProbabilityAlgorithm

SETTING_EXECUTABLE = "ROADX_EXECUTABLE"
"""Provider setting: a roadx executable or a Python with roadx installed (may be empty)."""

_HERE = Path(__file__).resolve().parent


def _processing_config():
    """QGIS's ``ProcessingConfig`` (the Processing plugin), or ``None`` where it is absent."""
    try:
        from processing.core.ProcessingConfig import ProcessingConfig, Setting
    except ImportError:
        return None, None
    return ProcessingConfig, Setting


def configured_executable() -> str:
    """The roadx executable set in Processing → Options → Providers → roadx ("" if unset)."""
    config, _ = _processing_config()
    if config is None:
        return ""
    try:
        value = config.getSetting(SETTING_EXECUTABLE)
    except Exception:  # the setting is not registered (provider not loaded)
        return ""
    return str(value or "")


class RoadxProvider(QgsProcessingProvider):
    """Road extraction with roadx: Extract roads, Vectorize probability, Evaluate."""

    def id(self) -> str:
        return "roadx"

    def name(self) -> str:
        return "roadx"

    def longName(self) -> str:  # noqa: N802 (QGIS's name)
        return "roadx road extraction"

    def icon(self) -> QIcon:
        return QIcon(str(_HERE / "icon.svg"))

    def svgIconPath(self) -> str:  # noqa: N802 (QGIS's name)
        return str(_HERE / "icon.svg")

    def load(self) -> bool:
        """Register the provider setting (shown under Processing → Options → Providers)."""
        config, setting = _processing_config()
        if config is not None:
            config.settingIcons[self.name()] = self.icon()
            config.addSetting(setting(
                self.name(), SETTING_EXECUTABLE,
                "roadx executable, or a Python with roadx installed (empty: ROADX_PYTHON, the "
                "Python that installed the plugin, or roadx on PATH)",
                "", valuetype=setting.FILE,
            ))
            config.readSettings()
        self.refreshAlgorithms()
        return True

    def unload(self) -> None:
        """Remove the provider setting again."""
        config, _ = _processing_config()
        if config is not None:
            config.removeSetting(SETTING_EXECUTABLE)

    def loadAlgorithms(self) -> None:  # noqa: N802 (QGIS's name)
        for algorithm in (ExtractRoadsAlgorithm(), VectorizeProbabilityAlgorithm(),
                          EvaluateAlgorithm()):
            self.addAlgorithm(algorithm)

    # roadx writes these formats itself; QGIS offers them in the output widgets, and gives
    # temporary outputs these extensions.
    def supportedOutputVectorLayerExtensions(self) -> list[str]:  # noqa: N802
        return ["gpkg", "shp", "geojson"]

    def supportedOutputRasterLayerExtensions(self) -> list[str]:  # noqa: N802
        return ["tif"]

    def defaultVectorFileExtension(self, hasGeometry: bool = True) -> str:  # noqa: N802, N803
        return "gpkg"

    def defaultRasterFileExtension(self) -> str:  # noqa: N802
        return "tif"

    def supportsNonFileBasedOutput(self) -> bool:  # noqa: N802
        return False
