"""QGIS styles for roadx outputs: roads, junctions and the probability raster.

QGIS draws a new vector layer in a random colour and a single-band raster in grey. roadx
stores a default style with every output so the result reads at a glance when it is opened:

* **roads**: rule-based — lines bridged across a gap (``bridged``) dashed magenta, confident
  roads (``prob_mean >= 0.7``) solid orange, uncertain ones thinner yellow;
* **junctions**: by ``kind`` — junctions red, dead ends grey, ends cut by the scene edge or
  nodata (``cut``) hollow, degree-2 nodes (bridge ends, rings) not drawn;
* **probability**: a pseudocolour ramp over the uint8 encoding (0–254 = p · 254), transparent
  below p = 0.2, 255 = nodata.

GeoPackages get the styles in the ``layer_styles`` table (the table QGIS itself writes with
"Save as default"; QGIS loads the row marked ``useAsDefault`` for a layer); Shapefile,
GeoJSON and GeoTIFF outputs get a ``.qml`` file beside them, which QGIS loads automatically.

References:
    QGIS QML format (``qgis.dtd``), QGIS source ``QgsOgrProviderUtils`` (``layer_styles``).
"""

import os
from pathlib import Path
from xml.sax.saxutils import quoteattr

QGIS_VERSION = "3.22.0"
CONFIDENT_PROB = 0.7
STYLE_NAME = "roadx"


def _line_symbol(name: str, rgba: str, width_mm: float, style: str = "solid") -> str:
    return f"""
      <symbol type="line" name="{name}" alpha="1" clip_to_extent="1" force_rhr="0">
        <layer class="SimpleLine" enabled="1" locked="0" pass="0">
          <Option type="Map">
            <Option name="capstyle" type="QString" value="round"/>
            <Option name="joinstyle" type="QString" value="round"/>
            <Option name="line_color" type="QString" value="{rgba}"/>
            <Option name="line_style" type="QString" value="{style}"/>
            <Option name="line_width" type="QString" value="{width_mm}"/>
            <Option name="line_width_unit" type="QString" value="MM"/>
          </Option>
        </layer>
      </symbol>"""


def _marker_symbol(name: str, fill: str, outline: str, size_mm: float) -> str:
    return f"""
      <symbol type="marker" name="{name}" alpha="1" clip_to_extent="1" force_rhr="0">
        <layer class="SimpleMarker" enabled="1" locked="0" pass="0">
          <Option type="Map">
            <Option name="color" type="QString" value="{fill}"/>
            <Option name="name" type="QString" value="circle"/>
            <Option name="outline_color" type="QString" value="{outline}"/>
            <Option name="outline_width" type="QString" value="0.3"/>
            <Option name="outline_width_unit" type="QString" value="MM"/>
            <Option name="size" type="QString" value="{size_mm}"/>
            <Option name="size_unit" type="QString" value="MM"/>
          </Option>
        </layer>
      </symbol>"""


def _rules(rules: list[tuple[str, str, str]]) -> str:
    """``(label, filter expression, symbol name)`` → ``<rule>`` elements."""
    return "\n".join(
        f'      <rule key="rule{k}" label={quoteattr(label)} filter={quoteattr(expr)} '
        f'symbol="{symbol}"/>'
        for k, (label, expr, symbol) in enumerate(rules)
    )


def _vector_qml(rules: list[tuple[str, str, str]], symbols: str, geometry_type: int) -> str:
    """A rule-based renderer; ``geometry_type`` 0 = point, 1 = line (QGIS enumeration)."""
    return f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="{QGIS_VERSION}" styleCategories="Symbology">
  <renderer-v2 type="RuleRenderer" symbollevels="0" enableorderby="0" forceraster="0">
    <rules key="root">
{_rules(rules)}
    </rules>
    <symbols>{symbols}
    </symbols>
  </renderer-v2>
  <blendMode>0</blendMode>
  <featureBlendMode>0</featureBlendMode>
  <layerGeometryType>{geometry_type}</layerGeometryType>
</qgis>
"""


def roads_qml() -> str:
    """QML of the roads layer: bridged dashed, confident solid, uncertain thin (see module)."""
    p = CONFIDENT_PROB
    rules = [
        ("inferred across a gap (bridged)", '"bridged"', "0"),
        (f"road (mean probability >= {p})", f'NOT "bridged" AND "prob_mean" >= {p}', "1"),
        (f"uncertain road (mean probability < {p})", "ELSE", "2"),
    ]
    symbols = (
        _line_symbol("0", "230,0,200,255", 0.8, "dash")
        + _line_symbol("1", "255,127,0,255", 0.9)
        + _line_symbol("2", "255,220,60,255", 0.5)
    )
    return _vector_qml(rules, symbols, geometry_type=1)


def junctions_qml() -> str:
    """QML of the junctions layer: junctions red, dead ends grey, cut ends hollow."""
    rules = [  # degree-2 nodes (rings, bridge ends) are not drawn
        ("junction (3 or more roads)", "\"kind\" = 'junction'", "0"),
        ("end cut by the scene edge or nodata", "\"kind\" = 'end' AND \"cut\"", "1"),
        ("dead end", "\"kind\" = 'end' AND NOT \"cut\"", "2"),
    ]
    symbols = (
        _marker_symbol("0", "220,30,30,255", "255,255,255,255", 2.2)
        + _marker_symbol("1", "0,0,0,0", "90,90,90,255", 1.6)
        + _marker_symbol("2", "120,120,120,255", "255,255,255,255", 1.6)
    )
    return _vector_qml(rules, symbols, geometry_type=0)


def probability_qml() -> str:
    """QML of the uint8 probability GeoTIFF: a ramp from p = 0.2 (transparent below)."""
    stops = [(0.2, "255,255,178"), (0.4, "254,204,92"), (0.6, "253,141,60"),
             (0.8, "240,59,32"), (1.0, "189,0,38")]
    items = "\n".join(
        f'            <item alpha="255" value="{round(p * 254)}" label="p = {p:.1f}" '
        f'color="#{"".join(f"{int(c):02x}" for c in rgb.split(","))}"/>'
        for p, rgb in stops
    )
    lowest = round(stops[0][0] * 254)
    return f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="{QGIS_VERSION}" styleCategories="Symbology">
  <pipe>
    <rasterrenderer type="singlebandpseudocolor" band="1" opacity="0.8" alphaBand="-1"
        classificationMin="{lowest}" classificationMax="254" nodataColor="">
      <rastershader>
        <colorrampshader colorRampType="INTERPOLATED" classificationMode="1" clip="1"
            minimumValue="{lowest}" maximumValue="254">
{items}
        </colorrampshader>
      </rastershader>
    </rasterrenderer>
    <rasterTransparency>
      <singleValuePixelList>
        <pixelListEntry min="0" max="{lowest - 1}" percentTransparent="100"/>
      </singleValuePixelList>
    </rasterTransparency>
  </pipe>
  <blendMode>0</blendMode>
</qgis>
"""


def qml_sidecar(path: str | os.PathLike[str]) -> Path:
    """The ``.qml`` file QGIS loads automatically for a file-based layer: ``<stem>.qml``."""
    return Path(path).with_suffix(".qml")


def write_qml(path: str | os.PathLike[str], qml: str) -> None:
    """Write a QML style file (UTF-8)."""
    Path(path).write_text(qml, encoding="utf-8")


def write_gpkg_styles(
    path: str | os.PathLike[str], styles: dict[str, str], *, geometry_column: str = "geom"
) -> None:
    """Store default QGIS styles for layers of a GeoPackage in its ``layer_styles`` table.

    Args:
        path: an existing GeoPackage (written by OGR, geometry column ``geometry_column``).
        styles: layer name → QML.
        geometry_column: the layers' geometry column (OGR's GPKG default ``geom``).

    Raises:
        OSError: the file cannot be written.
    """
    import pandas as pd
    import pyogrio

    rows = [
        {
            "f_table_catalog": "", "f_table_schema": "", "f_table_name": layer,
            "f_geometry_column": geometry_column, "styleName": STYLE_NAME, "styleQML": qml,
            "styleSLD": "", "useAsDefault": True,
            "description": "roadx default style", "owner": "", "ui": "",
            "update_time": pd.Timestamp.now(tz="UTC").floor("ms"),
        }
        for layer, qml in styles.items()
    ]
    # the columns and key QGIS creates ("Save as default"); QGIS orders by update_time
    pyogrio.write_dataframe(pd.DataFrame(rows), path, layer="layer_styles", driver="GPKG",
                            layer_options={"FID": "id"})
