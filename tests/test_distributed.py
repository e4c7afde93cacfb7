"""Multi-process training: 2 processes with gloo on the CPU, as torchrun would launch them."""
from __future__ import annotations

import copy
import os
import socket
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import yaml

from derain.train.distributed import DistInfo, env_info

TINY_DDP = ["model.options.widths=[8,16]", "model.options.enc_blocks=[1,1]", "model.options.dec_blocks=[1]",
            "data.patch=32", "data.batch=2", "data.train_max_images=4", "data.val=null", "ema_decay=0",
            "optim.lr=1e-2", "schedule.name=constant", "log_every=1", "checkpoint_every=100", "total_steps=4",
            "threads=1"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, config: str, out: str) -> None:
    """One rank: what torchrun would set up, then a normal Trainer (it joins the group from the env)."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from derain.train import Trainer, load_config

    trainer = Trainer(load_config(config, TINY_DDP))
    initial = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    first_inputs, _ = copy.deepcopy(trainer.batches).sample(2, 32)  # what this rank trains on first
    last = trainer.fit()
    torch.save({"initial": initial, "final": trainer.model.state_dict(), "first_inputs": first_inputs,
                "last": str(last), "world": trainer.dist.world_size}, Path(out) / f"rank{rank}.pt")
    trainer.close()


def test_env_info_reads_torchrun_variables(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert env_info() == DistInfo(0, 1, 0) and not env_info().enabled
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    info = env_info()
    assert info == DistInfo(3, 4, 1) and info.enabled and not info.is_main


def test_two_processes_keep_identical_weights(tmp_path, shared):
    config = tmp_path / "ddp.yaml"
    config.write_text(yaml.safe_dump({"name": "ddp", "out_dir": str(tmp_path / "runs"),
                                      "data": {"train": str(shared("data/rain100l-train"))}}))
    context = mp.spawn(_worker, args=(2, _free_port(), str(config), str(tmp_path)), nprocs=2, join=False)
    deadline = time.monotonic() + 300
    while not context.join(timeout=2):
        if time.monotonic() > deadline:  # a rank stuck at a collective must not hang the test suite
            for process in context.processes:
                process.kill()
            pytest.fail("2-process training did not finish within 300 s")
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2
    for key in r0["initial"]:
        assert torch.equal(r0["initial"][key], r1["initial"][key]), key  # the same init on every rank
        assert torch.equal(r0["final"][key], r1["final"][key]), key      # gradients averaged every step
    assert any(not torch.equal(r0["initial"][k], r0["final"][k]) for k in r0["initial"])  # it trained
    assert not torch.equal(r0["first_inputs"], r1["first_inputs"])  # each rank draws its own patches

    # Rank 0 alone logs and writes the checkpoint; it holds the common weights.
    run = tmp_path / "runs" / "ddp"
    log = (run / "train.log").read_text()
    assert log.count("training fastderain") == 1 and "batch 2 x 2 process(es) x 1 accumulated = 4" in log
    state = torch.load(run / "last.state.pt", weights_only=False)
    assert state["step"] == 4 and len(state["ranks"]) == 2
    for key, value in state["model"].items():
        assert torch.equal(value, r0["final"][key]), key

    # A single process can continue such a run (not exactly: its data order was split over two ranks).
    from derain.train import train_from_config

    train_from_config(str(config), TINY_DDP + ["total_steps=5"], resume=str(run))
    assert "saved by 2 process(es), resuming with 1" in (run / "train.log").read_text()
    assert torch.load(run / "last.state.pt", weights_only=False)["step"] == 5
