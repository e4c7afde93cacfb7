"""Where the time of a real training step goes: data, EMA, and the operators of forward, backward and optimiser.

    python benchmarks/train_profile.py CONFIG.yaml [--steps 3] [--set KEY=VALUE ...]

Builds the ``derain train`` trainer for CONFIG (validation off, run folder in a temporary directory), takes two
warm-up steps, times the batch sampling and the EMA update alone, then profiles ``--steps`` training steps with
``torch.profiler`` and prints the median step time, the share of the convolutions (forward and backward) and
the operators that took the most time. Run it while nothing else runs.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from torch.profiler import ProfilerActivity, profile

from derain.train import Trainer, load_config
from timing import median_ms


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        config = load_config(args.config, [*args.overrides, "data.val=null", f"out_dir={folder}"])
        trainer = Trainer(config)
        try:
            for _ in range(2):
                trainer.train_step()
            stage = trainer._stage_at(trainer.step)
            sample_ms = median_ms(lambda: trainer.batches.sample(stage.batch, stage.patch), 8)
            ema_ms = median_ms(lambda: trainer.ema.update(trainer.model), 8) if trainer.ema else 0.0
            step_times = []
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(args.steps):
                    start = time.perf_counter()
                    trainer.train_step()
                    step_times.append((time.perf_counter() - start) * 1000)
        finally:
            trainer.close()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    conv_fwd = sum(e.self_cpu_time_total for e in events if e.key in ("aten::mkldnn_convolution",
                                                                    "aten::_convolution", "aten::conv2d"))
    conv_bwd = sum(e.self_cpu_time_total for e in events if e.key == "aten::convolution_backward")
    print(f"{config.name}: batch {stage.batch} x {stage.patch}x{stage.patch}, {torch.get_num_threads()} threads, "
          f"precision {'bf16' if trainer.dtype else 'fp32'}, fused AdamW {config.optim.fused}")
    print(f"training step (profiled): median {statistics.median(step_times):.0f} ms over {args.steps}; "
          f"batch sampling {sample_ms:.1f} ms; EMA update {ema_ms:.1f} ms")
    print(f"convolutions: {100 * conv_fwd / total:.0f}% forward, {100 * conv_bwd / total:.0f}% backward "
          f"of the profiled CPU time")
    print(events.table(sort_by="self_cpu_time_total", row_limit=12))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
