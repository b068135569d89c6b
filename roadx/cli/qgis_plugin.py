"""``roadx qgis-plugin``: install roadx's QGIS Processing plugin into a QGIS profile."""

import json
import os
import shutil
import sys
import uuid
from pathlib import Path
from typing import Annotated

import typer

from roadx import __version__
from roadx.cli.console import err_console
from roadx.errors import OutputError, OutputExistsError

PLUGIN_NAME = "roadx_processing"
"""The plugin's folder name in QGIS's plugins folder (an importable Python name)."""

INSTALL_RECORD = "install.json"
"""Written into the installed copy: the Python that runs roadx (read by roadx/qgis/runner.py)."""

app = typer.Typer(
    name="qgis-plugin",
    help="The QGIS plugin: a Processing provider 'roadx' with Extract roads, Vectorize "
    "probability and Evaluate.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=False,
)


def plugin_source() -> Path:
    """The plugin folder inside the installed roadx package (``roadx/qgis``)."""
    return Path(__file__).resolve().parents[1] / "qgis"


def default_qgis_dir() -> Path:
    """QGIS 3's settings folder (holding ``profiles/``) on this platform."""
    home = Path.home()
    if sys.platform.startswith("win"):
        return Path(os.environ.get("APPDATA", home / "AppData" / "Roaming")) / "QGIS" / "QGIS3"
    if sys.platform == "darwin":
        return home / "Library" / "Application Support" / "QGIS" / "QGIS3"
    data = os.environ.get("XDG_DATA_HOME") or str(home / ".local" / "share")
    return Path(data) / "QGIS" / "QGIS3"


def plugin_target(profile: str, qgis_dir: Path | None) -> Path:
    """Where the plugin goes: ``<qgis_dir>/profiles/<profile>/python/plugins/roadx_processing``."""
    if not profile or Path(profile).name != profile or profile in (".", ".."):
        raise OutputError(f"--profile {profile!r}: give a QGIS profile name, not a path")
    base = (qgis_dir or default_qgis_dir()).expanduser()
    return base / "profiles" / profile / "python" / "plugins" / PLUGIN_NAME


def install_plugin(target: Path, *, overwrite: bool = False, python: str | None = None) -> Path:
    """Copy the plugin to ``target`` and record ``python`` (default: this interpreter) as
    the one that runs roadx. The copy is made beside ``target`` and then moved into place.

    Raises:
        OutputExistsError: ``target`` exists and ``overwrite`` is false.
        OSError: the folder cannot be written.
    """
    if target.exists() and not overwrite:
        raise OutputExistsError(f"{target} exists; pass --overwrite to replace it.")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.roadx-{uuid.uuid4().hex[:8]}.partial")
    old = target.with_name(f".{target.name}.roadx-{uuid.uuid4().hex[:8]}.old")
    try:
        shutil.copytree(plugin_source(), staging,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", INSTALL_RECORD))
        record = {"python": python or sys.executable, "roadx_version": __version__}
        (staging / INSTALL_RECORD).write_text(json.dumps(record, indent=2) + "\n",
                                              encoding="utf-8")
        if target.exists():
            target.rename(old)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return target


@app.command("install")
def install(
    profile: Annotated[
        str, typer.Option(help="QGIS user profile to install into.")
    ] = "default",
    qgis_dir: Annotated[
        Path | None,
        typer.Option(
            help="QGIS 3 settings folder holding profiles/ (default: ~/.local/share/QGIS/QGIS3 "
            "on Linux, ~/Library/Application Support/QGIS/QGIS3 on macOS, "
            "%APPDATA%\\QGIS\\QGIS3 on Windows).",
            show_default=False,
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an installed copy (e.g. after an upgrade).")
    ] = False,
) -> None:
    """Copy the QGIS plugin into a QGIS profile; it runs roadx with this Python.

    Example: roadx qgis-plugin install --profile default
    """
    target = install_plugin(plugin_target(profile, qgis_dir), overwrite=overwrite)
    err_console.print(
        f"installed the roadx QGIS plugin into {target}\n"
        f"It runs roadx with {sys.executable} (change it in Processing → Options → "
        "Providers → roadx, or set ROADX_PYTHON).\n"
        "To enable it: restart QGIS, open Plugins → Manage and Install Plugins… → Installed "
        "and tick 'roadx'. Its algorithms appear in the Processing Toolbox under 'roadx': "
        "Extract roads, Vectorize probability, Evaluate.",
        soft_wrap=True, highlight=False, markup=False,
    )


@app.command("path")
def path() -> None:
    """Print the folder of the plugin shipped inside roadx (to copy or link by hand)."""
    typer.echo(str(plugin_source()))
