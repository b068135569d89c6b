"""``roadx models`` and ``roadx convert-weights``: success via CliRunner, errors exit 1."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from roadx.cli import app, main
from roadx.models import (
    create_model,
    list_models,
    get_card,
    load_checkpoint,
    read_checkpoint_metadata,
    save_checkpoint,
)
from roadx.models.convert import to_reference_key

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()



@pytest.fixture(scope="module")
def reference_th(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    """A DataParallel-style state dict in the original D-LinkNet34 naming, plus its source model."""
    torch.manual_seed(0)
    model = create_model("dlinknet34").eval()
    state = {f"module.{to_reference_key(k)}": v for k, v in model.state_dict().items()}
    path = tmp_path_factory.mktemp("th") / "log01_dink34.th"
    torch.save(state, path)
    return path, model


def run_roadx(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "roadx", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_models_json_lists_cards_and_parameter_counts() -> None:
    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == list_models()
    by_name = {r["name"]: r for r in rows}
    assert by_name["d3fnet34"]["parameters"] == 39_501_313
    assert by_name["dlinknet34"]["parameters"] == 31_096_129
    assert by_name["ddrnet23s"]["parameters"] == 5_732_002
    assert by_name["ddrnet23s"]["parameters_deploy"] == 5_694_817
    assert by_name["ddrnet23s"]["aux_loss_weights"] == [0.4]
    assert by_name["ddrnet23s"]["input_multiple_px"] == 64
    assert by_name["ddrnet23s"]["gflops_1024"] == pytest.approx(36.24, abs=0.01)
    assert by_name["d3fnet34"]["gsd_m"] == 1.0 and by_name["dlinknet34"]["gsd_m"] == 0.5
    assert by_name["d3fnet34"]["band_names"] == ["B", "G", "R"] and rows[0]["output"] == "logits"
    assert by_name["ddrnet23s"]["bands"][0]["role"] == "rgb"
    assert by_name["d3fnet34"]["forward_ms_1024"] is None  # only with --time
    assert result.stderr == ""


def test_models_table_goes_to_stderr() -> None:
    result = runner.invoke(app, ["models"], env={"COLUMNS": "200"})  # cells unwrapped
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "39,501,313" in result.stderr and "31,096,129" in result.stderr
    assert "5,694,817" in result.stderr  # ddrnet23s without its training-only head
    assert "x/255*3.2-1.6" in result.stderr and "2508.15537" in result.stderr
    assert "2101.06085" in result.stderr and "1809.02983" in result.stderr


def test_convert_weights_writes_a_loadable_checkpoint(reference_th, tmp_path) -> None:
    src, source_model = reference_th
    dst = tmp_path / "dlinknet34_deepglobe.safetensors"
    result = runner.invoke(app, ["convert-weights", str(src), "-o", str(dst)])
    assert result.exit_code == 0, result.output
    assert "dlinknet34" in result.stderr and "0.5 m/px" in result.stderr
    model, card = load_checkpoint(dst)
    assert card.training["converted_from"] == "log01_dink34.th"
    for key, value in source_model.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def assert_clean_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("error:")
    assert "Traceback" not in proc.stderr
    flat = " ".join(proc.stderr.split())  # rich may wrap long lines
    for fragment in fragments:
        assert fragment in flat, proc.stderr
    assert proc.stdout == ""


def test_convert_weights_error_paths_exit_1(reference_th, tmp_path) -> None:
    out = str(tmp_path / "a.safetensors")
    assert_clean_error(
        run_roadx("convert-weights", str(tmp_path / "no.th"), "-o", out),
        "no.th not found",
    )
    wrong = tmp_path / "linknet.th"
    torch.save({"module.encoder1.0.conv1.weight": torch.zeros(64, 64, 3, 3)}, wrong)
    assert_clean_error(
        run_roadx("convert-weights", str(wrong), "-o", out),
        "linknet.th does not have the D-LinkNet34", "missing keys (",
    )
    assert not (tmp_path / "a.safetensors").exists()


def run_main(monkeypatch, capsys, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``roadx.cli.main`` in-process (torch already loaded), as the console script does."""
    monkeypatch.setattr(sys, "argv", ["roadx", *args])
    with pytest.raises(SystemExit) as info:
        main()
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, info.value.code, out, err)


def test_convert_weights_more_error_paths_exit_1(reference_th, tmp_path, monkeypatch, capsys):
    src, _ = reference_th
    out = str(tmp_path / "a.safetensors")
    text = tmp_path / "notes.th"
    text.write_text("not weights")
    assert_clean_error(
        run_main(monkeypatch, capsys, "convert-weights", str(text), "-o", out),
        "notes.th is not a PyTorch checkpoint",
    )
    exists = tmp_path / "exists.safetensors"
    exists.write_bytes(b"keep")
    assert_clean_error(
        run_main(monkeypatch, capsys, "convert-weights", str(src), "-o", str(exists)),
        "exists.safetensors already exists", "--overwrite",
    )
    assert exists.read_bytes() == b"keep"
    assert_clean_error(
        run_main(monkeypatch, capsys, "convert-weights", str(src), "-o", str(tmp_path / "w.pt")),
        "must end in .safetensors",
    )


def test_cli_import_does_not_load_torch() -> None:
    code = "import roadx.cli, sys; assert 'torch' not in sys.modules, 'torch imported'"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_models_json_reports_the_shipped_default_weights(tmp_path, monkeypatch) -> None:
    import torch

    from roadx.models import create_model, get_card, save_checkpoint

    torch.manual_seed(0)
    save_checkpoint(tmp_path / "dlinknet34.safetensors", create_model("dlinknet34"),
                    card=get_card("dlinknet34"), model_kwargs={})
    monkeypatch.setenv("ROADX_WEIGHTS_DIR", str(tmp_path))
    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["d3fnet34"]["default_weights"] is None
    shipped = rows["dlinknet34"]["default_weights"]
    assert shipped["path"] == str(tmp_path / "dlinknet34.safetensors")
    assert shipped["card"]["name"] == "dlinknet34" and shipped["card"]["gsd_m"] == 0.5


def test_convert_weights_restores_a_roadx_checkpoint_as_int8(tmp_path, monkeypatch, capsys):
    src = tmp_path / "tuned.safetensors"
    save_checkpoint(src, create_model("d3fnet34", width=8), card=get_card("d3fnet34"),
                    model_kwargs={"width": 8})
    dst = tmp_path / "tuned-int8.safetensors"
    ok = run_main(monkeypatch, capsys, "convert-weights", str(src), "-o", str(dst),
                  "--storage", "int8")
    assert ok.returncode == 0, ok.stderr
    assert "MB" in ok.stderr and dst.stat().st_size < 0.4 * src.stat().st_size  # float32 → int8
    assert read_checkpoint_metadata(dst)["roadx.storage"] == "int8-per-channel"
    model, card = load_checkpoint(dst)
    assert card.training["storage"].startswith("int8") and model.encoder.conv1.out_channels == 8
    again = run_main(monkeypatch, capsys, "convert-weights", str(src), "-o", str(dst),
                     "--storage", "int8")
    assert again.returncode == 1 and "--overwrite" in again.stderr
    missing = run_main(monkeypatch, capsys, "convert-weights", str(src), "-o",
                       str(tmp_path / "x.safetensors"))
    assert missing.returncode == 1 and "--storage" in missing.stderr
