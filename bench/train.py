"""Benchmark: training images per second of each model at 64, 128 and 224 px (a script, not a test).

    .venv/bin/python bench/train.py [--device cpu|cuda] [--sizes 64 128 224] [--out runs/bench/train.json]

One training step is exactly what lib.train.fit does per batch at its default precision
(channels-last model, bf16 autocast on CUDA, the model's loss, backward, Adam), on batches of 32
with random L and ab: the speed of a convolution does not depend on the pixel values, and the data
pipeline has its own benchmark
(bench/pipeline.py). Each model and size runs in a fresh process, so its peak RSS is its own; one
warm-up step, then steps for at least --seconds (and at least 3), and the median step time.
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

from lib import checkpoints, models, results, train


def measure(model_name: str, size: int, batch: int, device: str, seconds: float) -> dict:
    device = checkpoints.pick_device(device)
    torch.manual_seed(0)
    model = models.build_model(model_name).to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    l = torch.rand(batch, 1, size, size, device=device)
    ab = (torch.rand(batch, 2, size, size, device=device) - 0.5) * 0.5
    dtype = train.AUTOCAST[train.Settings().precision_on(device)]  # the default: "auto"

    def step():
        loss = model.head.loss(train.forward(model, l, dtype), ab, l)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()  # waits for the GPU

    step()
    times, t_end = [], time.perf_counter() + seconds
    while len(times) < 3 or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    per_step = statistics.median(times)
    return {
        "model": model_name, "size": size, "batch": batch, "steps": len(times),
        "seconds_per_step": per_step, "images_per_s": batch / per_step,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 224])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seconds", type=float, default=10.0, help="time each configuration at least this long")
    p.add_argument("--out", default="runs/bench/train.json")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:  # one configuration, in this fresh process
        print(json.dumps(measure(a.child[0], int(a.child[1]), a.batch, a.device, a.seconds)))
        return 0
    started = results.now()
    rows = []
    for name in models.MODELS:
        for size in a.sizes:
            cmd = [sys.executable, __file__, "--child", name, str(size), "--device", a.device,
                   "--batch", str(a.batch), "--seconds", str(a.seconds)]  # fmt: skip
            rows.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout))
            r = rows[-1]
            print(f"{name:13s} {size:4d} px: {r['images_per_s']:8.1f} images/s ({r['seconds_per_step']:.3f} "
                  f"s per batch of {a.batch}), peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)  # fmt: skip
    device = str(checkpoints.pick_device(a.device))
    results.save(a.out, benchmark="train", rows=rows, provenance=results.provenance(device, started))
    print(f"written: {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
