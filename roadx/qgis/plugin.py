"""The plugin object QGIS creates: registers the roadx Processing provider."""

from __future__ import annotations

from qgis.core import QgsApplication

from .provider import RoadxProvider


class RoadxPlugin:
    """Adds the "roadx" provider to the Processing Toolbox (nothing else in the GUI)."""

    def __init__(self, iface) -> None:
        self.iface = iface
        self.provider: RoadxProvider | None = None

    def initProcessing(self) -> None:  # noqa: N802 (QGIS's name)
        """Register the provider; QGIS calls this also without a GUI (qgis_process)."""
        if self.provider is None:
            self.provider = RoadxProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802 (QGIS's name)
        """Called when the plugin is enabled in the QGIS desktop."""
        self.initProcessing()

    def unload(self) -> None:
        """Remove the provider when the plugin is disabled or reloaded."""
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
