"""`derain models` and the registry's parameter counts (issue 38 item 13)."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from derain.cli import main
from derain.models import build, count_parameters, get_spec, list_specs
from derain.models.capabilities import capabilities_of


@pytest.mark.parametrize("name", [spec.name for spec in list_specs()])
def test_each_registered_parameter_count_is_the_built_networks(name):
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        net = build(name)
    assert get_spec(name).parameters == count_parameters(net)
    # The size multiple the registry states is the one the network computes from that configuration.
    declared = capabilities_of(net.eval()).size_multiple  # as inference runs it
    assert declared is None or declared == get_spec(name).size_multiple


def test_models_lists_short_lines_marks_the_default_and_counts_the_bundled_weights(capsys):
    from derain.weights.load import load_model
    from derain.weights import default_checkpoint

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert all(len(line) <= 100 for line in lines), max(lines, key=len)
    rows = {line.split()[0]: line for line in lines if line and line.split()[0] in {s.name for s in list_specs()}}
    assert set(rows) == {spec.name for spec in list_specs()}
    assert f"{get_spec('restormer').parameters:,}" in rows["restormer"]
    if default_checkpoint() is None:
        pytest.skip("no default model bundled in this checkout")
    bundled, name = load_model(None, default_checkpoint())
    assert "default" in rows[name] and f"{count_parameters(bundled):,}" in rows[name]
    marked = [n for n, line in rows.items() if "default, bundled" in line]
    assert marked == [name]


def test_models_never_imports_torch():
    code = ("import sys; from derain.cli import main; main(['models']); "
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "NO-TORCH"


def test_models_name_describes_one_model(capsys):
    assert main(["models", "restormer"]) == 0
    out = capsys.readouterr().out
    assert "num_blocks=[4, 6, 6, 8]" in out and "deraining.pth" in out
    assert all(len(line) <= 100 for line in out.splitlines())
    assert main(["models", "nosuchnet"]) == 1
    assert "unknown model 'nosuchnet'" in capsys.readouterr().err


def test_a_network_class_built_bare_is_its_registry_default():
    from derain.models.fastderain import FastDerain

    with torch.device("meta"):
        bare, registered = FastDerain(), build("fastderain")
    assert {k: tuple(v.shape) for k, v in bare.state_dict().items()} == {
        k: tuple(v.shape) for k, v in registered.state_dict().items()}
