"""End to end through the command line: run, eval, bench, models, and the one-line errors."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from derain.files.checkpoints import save_checkpoint
from derain.cli import main
from derain.models import build

TINY = dict(dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 1, 2, 2], ffn_expansion_factor=2.0)


@pytest.fixture
def tiny_checkpoint(tmp_path) -> Path:
    """A small self-describing Restormer checkpoint with random (but non-trivial) weights."""
    torch.manual_seed(0)
    model = build("restormer", **TINY)
    with torch.no_grad():
        model.output.weight.mul_(0.01)  # keep the output close to the input: a plausible "derainer"
    path = tmp_path / "tiny.pt"
    save_checkpoint(path, model, "restormer", TINY)
    return path


@pytest.fixture
def rainy_dir(shared, tmp_path) -> Path:
    """Three real Rain100L rainy images in a folder of their own."""
    src = shared("data/rain100l/rainy")
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("rain-001.png", "rain-002.png", "rain-010.png"):
        shutil.copy(src / name, folder / name)
    return folder


def run_cli(*args: str, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_run_folder_keeps_names_and_sizes_then_skips(rainy_dir, tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, _ = run_cli("run", rainy_dir, "-o", out, "--weights", tiny_checkpoint, "-q", capsys=capsys)
    assert code == 0, stdout
    names = sorted(p.name for p in out.iterdir())
    assert names == ["rain-001.png", "rain-002.png", "rain-010.png"]
    for name in names:
        src, dst = Image.open(rainy_dir / name), Image.open(out / name)
        assert src.size == dst.size
        assert not np.array_equal(np.asarray(src), np.asarray(dst))
    stamp = (out / "rain-001.png").stat().st_mtime_ns
    code, stdout, _ = run_cli("run", rainy_dir, "-o", out, "--weights", tiny_checkpoint, "-q", capsys=capsys)
    assert code == 0 and "skipped 3" in stdout
    assert (out / "rain-001.png").stat().st_mtime_ns == stamp
    code, stdout, _ = run_cli("run", rainy_dir / "rain-001.png", "-o", out, "--weights", tiny_checkpoint,
                              "--overwrite", "-q", capsys=capsys)
    assert code == 0 and "wrote 1" in stdout


def test_one_input_to_a_named_output_file(rainy_dir, tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "results" / "clean.jpg"
    code, stdout, err = run_cli("run", rainy_dir / "rain-001.png", "-o", out, "--weights", tiny_checkpoint, "-q",
                                capsys=capsys)
    assert code == 0, err
    assert out.is_file() and sorted(p.name for p in out.parent.iterdir()) == ["clean.jpg"]
    with Image.open(out) as written, Image.open(rainy_dir / "rain-001.png") as src:
        assert written.format == "JPEG" and written.size == src.size
    stamp = out.stat().st_mtime_ns
    code, stdout, _ = run_cli("run", rainy_dir / "rain-001.png", "-o", out, "--weights", tiny_checkpoint, "-q",
                              capsys=capsys)
    assert code == 0 and "skipped 1" in stdout and out.stat().st_mtime_ns == stamp  # kept without --overwrite


@pytest.mark.parametrize("extra, message", [((), "3 inputs"), (("--format", "png"), "disagrees")])
def test_named_output_file_that_cannot_hold_the_result(extra, message, rainy_dir, tiny_checkpoint, tmp_path, capsys):
    source = rainy_dir / "rain-001.png" if extra else rainy_dir
    out = tmp_path / "clean.jpg"
    code, _, err = run_cli("run", source, "-o", out, "--weights", tiny_checkpoint, *extra, "-q", capsys=capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0 and len(lines) == 1 and message in lines[0], err
    assert not out.exists()


@pytest.mark.parametrize("option, value", [("--tile", "-5"), ("--tile-overlap", "-1"), ("--tile-threshold", "0")])
def test_negative_tiling_options_are_refused(option, value, rainy_dir, tiny_checkpoint, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["run", str(rainy_dir), "-o", str(tmp_path / "out"), "--weights", str(tiny_checkpoint), option, value])
    assert stop.value.code == 2 and option in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_short_form_takes_options_first_and_version(rainy_dir, tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "clean.png"
    code, _, err = run_cli("-q", "-o", out, rainy_dir / "rain-001.png", "--weights", tiny_checkpoint, capsys=capsys)
    assert code == 0 and out.is_file(), err
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    import derain
    assert stop.value.code == 0 and capsys.readouterr().out.strip() == f"derain {derain.__version__}"


def test_short_form_and_tiling_agree_with_the_api(rainy_dir, tiny_checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(rainy_dir / "rain-002.png", "--weights", tiny_checkpoint, "-q", capsys=capsys)
    assert code == 0, err
    written = np.asarray(Image.open(tmp_path / "derained" / "rain-002.png"))
    import derain
    from derain.files.imageio import read_image
    model, name = derain.load_model(None, tiny_checkpoint)
    api = derain.derain(read_image(rainy_dir / "rain-002.png").pixels, model, name)
    assert np.abs(np.rint(api * 255) - written).max() <= 1


# A bare --ensemble is the upright "flips" (quarter turns would show an upright-trained model horizontal rain).
@pytest.mark.parametrize("flag, ensemble", [(("--ensemble", "hflip"), "hflip"), (("--ensemble",), "flips")])
def test_named_ensemble_from_the_cli_is_the_api_one(rainy_dir, tiny_checkpoint, tmp_path, capsys, flag, ensemble):
    out = tmp_path / "out"
    code, _, err = run_cli("run", rainy_dir / "rain-001.png", "-o", out, "--weights", tiny_checkpoint,
                           *flag, "-q", capsys=capsys)
    assert code == 0, err
    written = np.asarray(Image.open(out / "rain-001.png")).astype(np.float64)
    import derain
    from derain.files.imageio import read_image
    model, name = derain.load_model(None, tiny_checkpoint)
    pixels = read_image(rainy_dir / "rain-001.png").pixels
    expected = np.rint(derain.derain(pixels, model, name, ensemble=ensemble) * 255)
    plain = np.rint(derain.derain(pixels, model, name) * 255)
    assert np.abs(expected - written).max() <= 1
    # The tiny network is near the identity, so the ensemble moves few pixels, but the file holds its result:
    # the option reached the network.
    assert np.mean(expected == written) > np.mean(plain == written)
    from derain.inference.ensembles import ENSEMBLES
    for other in ENSEMBLES:  # and it was this ensemble, not another one
        if other not in (ensemble, "none"):
            result = np.rint(derain.derain(pixels, model, name, ensemble=other) * 255)
            assert np.mean(expected == written) > np.mean(result == written), other


def test_shards_split_a_folder(rainy_dir, tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    for shard in ("0/2", "1/2"):
        code, _, err = run_cli("run", rainy_dir, "-o", out, "--weights", tiny_checkpoint, "--shard", shard,
                               "-q", capsys=capsys)
        assert code == 0, err
    assert len(list(out.iterdir())) == 3


@pytest.mark.parametrize("args,message", [
    (["run", "nope/missing.png", "--weights", "W"], "missing.png"),
    (["run", "IN", "--weights", "nope.pth"], "nope.pth"),
    (["run", "IN", "--model", "restormer"], "--weights"),  # no Restormer weights are bundled
    (["run", "IN", "--weights", "W", "--device", "cuda"], "GPU"),
    (["run", "IN", "--weights", "W", "--shard", "3/2"], "--shard"),
    (["run", "IN", "--weights", "BARE", "--model", "restormer"], "does not fit"),
    (["eval", "--pred", "IN", "--gt", "IN", "--protocol", "psnr-magic"], "protocol"),
    (["bench", "no-such-model", "IN"], "unknown model"),
    (["eval", "--pred", "FILE", "--gt", "IN"], "is not a folder"),
    (["run", "IN", "--weights", "W", "--tile", "20"], "multiple of 8"),  # checked once, before any image
    (["run", "IN", "--weights", "W", "--tile", "64", "--tile-overlap", "64"], "smaller than the tile"),
])
def test_bad_input_is_one_clear_line(args, message, rainy_dir, tiny_checkpoint, capsys):
    if message == "GPU" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    # BARE: the tiny network's bare state_dict, which cannot fit the full deraining Restormer.
    bare = tiny_checkpoint.with_name("bare.pth")
    torch.save(build("restormer", **TINY).state_dict(), bare)
    names = {"IN": str(rainy_dir), "W": str(tiny_checkpoint), "BARE": str(bare), "FILE": str(rainy_dir / "rain-001.png")}
    args = [names.get(a, a) for a in args]
    code, out, err = run_cli(*args, capsys=capsys)
    assert code != 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("derain: error:"), err
    assert message in lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize("port", ["99999", "-1", "http"])
def test_serve_refuses_a_port_out_of_range(port, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["serve", "--port", port])
    assert stop.value.code == 2 and "--port" in capsys.readouterr().err


def test_unwritable_output_folder(rainy_dir, tiny_checkpoint, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, _, err = run_cli("run", rainy_dir, "-o", blocker / "sub", "--weights", tiny_checkpoint, "-q", capsys=capsys)
    assert code != 0 and err.startswith("derain: error:") and len(err.strip().splitlines()) == 1


def test_eval_rain100l_inputs_reproduce_the_matlab_reference(shared, tmp_path, capsys):
    data = shared("data/rain100l")
    reference = shared("reference/rain100l_input_matlab_y.tsv")
    rows = [line.split() for line in reference.read_text().splitlines() if not line.startswith("#")]
    out = tmp_path / "scores.json"
    code, stdout, err = run_cli("eval", "--pred", data / "rainy", "--gt", data, "--out", out, capsys=capsys)
    assert code == 0, err
    assert "matlab-y" in stdout
    summary = json.loads(out.read_text())
    (only_set,) = summary["sets"].values()
    assert only_set["images"] == 100
    assert abs(only_set["psnr"] - np.mean([float(r[2]) for r in rows])) < 1e-4
    assert abs(only_set["ssim"] - np.mean([float(r[3]) for r in rows])) < 1e-5
    csv_rows = out.with_suffix(".csv").read_text().splitlines()
    assert len(csv_rows) == 101


@pytest.mark.parametrize("command", ["compare", "eval", "bench"])
def test_written_files_are_replaced_only_when_asked(command, shared, rainy_dir, tiny_checkpoint, tmp_path, capsys):
    """A sheet, a report or a saved result that exists is refused, left as it was, then replaced on --overwrite."""
    data = shared("data/rain100l")
    args, existing = {
        "compare": (["compare", rainy_dir / "rain-001.png", "-r", f"same={rainy_dir}", "-o", tmp_path / "s.png"],
                    tmp_path / "s.png"),
        "eval": (["eval", "--pred", data / "rainy", "--gt", data, "--out", tmp_path / "scores.json"],
                 tmp_path / "scores.csv"),
        "bench": (["bench", tiny_checkpoint, data, "--limit", "1", "--save", tmp_path / "saved", "-q"],
                  tmp_path / "saved" / "rain100l" / "rain-001.png"),
    }[command]
    existing.parent.mkdir(parents=True, exist_ok=True)
    existing.write_bytes(b"the user's own file")
    code, _, err = run_cli(*args, capsys=capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0 and len(lines) == 1 and "--overwrite" in lines[0], err
    assert existing.read_bytes() == b"the user's own file"
    code, _, err = run_cli(*args, "--overwrite", capsys=capsys)
    assert code == 0, err
    assert existing.read_bytes() != b"the user's own file"


def test_eval_names_unmatched_files(shared, tmp_path, capsys):
    data = shared("data/rain100l")
    pred = tmp_path / "pred"
    pred.mkdir()
    shutil.copy(data / "rainy" / "rain-001.png", pred / "rain-001.png")
    shutil.copy(data / "rainy" / "rain-002.png", pred / "holiday.png")
    code, _, err = run_cli("eval", "--pred", pred, "--gt", data / "clean", capsys=capsys)
    assert code != 0 and "holiday.png" in err


def test_eval_no_reference_niqe(shared, tmp_path, capsys):
    src = shared("data/real-rain/1.jpg")
    shutil.copy(src, tmp_path / "1.jpg")
    code, stdout, _ = run_cli("eval", "--no-reference", tmp_path, capsys=capsys)
    assert code == 0 and "NIQE" in stdout and "2.2798" in stdout


def test_bench_prints_a_paper_table(shared, tiny_checkpoint, capsys):
    data = shared("data/rain100l")
    code, stdout, err = run_cli("bench", tiny_checkpoint, data, "--limit", "2", "-q", capsys=capsys)
    assert code == 0, err
    assert "rain100l" in stdout and "params" in stdout and "matlab-y" in stdout


def test_models_lists_restormer_with_its_parameter_count(capsys):
    code, stdout, _ = run_cli("models", capsys=capsys)
    assert code == 0
    assert "restormer" in stdout and "26,126,644" in stdout


def test_console_script_is_installed():
    result = subprocess.run([sys.executable, "-m", "derain.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "derain" in result.stdout


def test_bundled_default_model_needs_no_flags(shared, tmp_path, monkeypatch, capsys):
    """`derain photo.png` with nothing else: the bundled model removes most of the rain of a Rain100L image."""
    from derain.files.imageio import read_uint8_rgb
    from derain.metrics import psnr_ssim
    from derain.weights import DEFAULT, default_checkpoint, default_model_name

    if default_checkpoint() is None:
        pytest.skip("no default model bundled in this checkout")
    assert default_checkpoint().stat().st_size <= 10 * 1024 * 1024
    assert default_model_name() == DEFAULT
    rainy = shared("data/rain100l/rainy/rain-001.png")
    clean = read_uint8_rgb(shared("data/rain100l/clean/norain-001.png"))
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(rainy, "-q", capsys=capsys)
    assert code == 0, err
    result = read_uint8_rgb(tmp_path / "derained" / "rain-001.png")
    before = psnr_ssim(read_uint8_rgb(rainy), clean, "matlab-y")[0]
    after = psnr_ssim(result, clean, "matlab-y")[0]
    assert after > before + 5.0, (before, after)
