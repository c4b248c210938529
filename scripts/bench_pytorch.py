#!/usr/bin/env python3
"""The same measurements as `alexnet bench`, in PyTorch, for side-by-side runs.

    python3 scripts/bench_pytorch.py --model paper --mode train --batch 64 --threads 2

Prints one JSON object with the fields of `alexnet bench --json`: model, mode, batch, threads,
ms_per_iter, img_per_s, gflops (2 FLOPs per multiply-add of conv and fc layers; training counts
3x the forward pass), iter_ms. Models: paper (groups 2, LRN after ReLU), paper-1gpu, caffenet,
torchvision (torchvision.models.alexnet without needing torchvision), zfnet, cifar: the same
layer lists as src/model/config.rs. Needs `pip install torch`; CI does not run it.
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn


def paper_family(groups=2, pool_before_norm=False, widths=(96, 256, 384, 384, 256), classes=1000):
    c1, c2, c3, c4, c5 = widths
    lrn = lambda: nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)
    pool = lambda: nn.MaxPool2d(3, 2)
    norm_pool = (lambda: [pool(), lrn()]) if pool_before_norm else (lambda: [lrn(), pool()])
    return nn.Sequential(
        nn.Conv2d(3, c1, 11, 4), nn.ReLU(), *norm_pool(),
        nn.Conv2d(c1, c2, 5, padding=2, groups=groups), nn.ReLU(), *norm_pool(),
        nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(),
        nn.Conv2d(c3, c4, 3, padding=1, groups=groups), nn.ReLU(),
        nn.Conv2d(c4, c5, 3, padding=1, groups=groups), nn.ReLU(), pool(),
        nn.Flatten(), nn.Dropout(0.5), nn.Linear(c5 * 36, 4096), nn.ReLU(),
        nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, classes),
    ), 227


def torchvision_alexnet():
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.AdaptiveAvgPool2d((6, 6)), nn.Flatten(),
        nn.Dropout(0.5), nn.Linear(9216, 4096), nn.ReLU(),
        nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 1000),
    ), 224


def zfnet():
    lrn = lambda: nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)
    return nn.Sequential(
        nn.Conv2d(3, 96, 7, 2, 1), nn.ReLU(), nn.MaxPool2d(3, 2, 1), lrn(),
        nn.Conv2d(96, 256, 5, 2), nn.ReLU(), nn.MaxPool2d(3, 2, 1), lrn(),
        nn.Conv2d(256, 512, 3, padding=1), nn.ReLU(),
        nn.Conv2d(512, 1024, 3, padding=1), nn.ReLU(),
        nn.Conv2d(1024, 512, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Flatten(), nn.Dropout(0.5), nn.Linear(512 * 36, 4096), nn.ReLU(),
        nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 1000),
    ), 224


def cifar():
    lrn = lambda: nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)
    return nn.Sequential(
        nn.Conv2d(3, 64, 5, padding=2), nn.ReLU(), lrn(), nn.MaxPool2d(3, 2, 1),
        nn.Conv2d(64, 128, 5, padding=2, groups=2), nn.ReLU(), lrn(), nn.MaxPool2d(3, 2, 1),
        nn.Conv2d(128, 192, 3, padding=1), nn.ReLU(),
        nn.Conv2d(192, 192, 3, padding=1, groups=2), nn.ReLU(),
        nn.Conv2d(192, 128, 3, padding=1, groups=2), nn.ReLU(), nn.MaxPool2d(3, 2, 1),
        # Dropout at p = 0, as our `cifar` model has it by default.
        nn.Flatten(), nn.Dropout(0.0), nn.Linear(2048, 512), nn.ReLU(),
        nn.Dropout(0.0), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10),
    ), 32


MODELS = {
    "paper": lambda: paper_family(),
    "paper-1gpu": lambda: paper_family(groups=1),
    "caffenet": lambda: paper_family(pool_before_norm=True),
    "torchvision": torchvision_alexnet,
    "zfnet": zfnet,
    "cifar": cifar,
}


def count_macs(model, size):
    macs = 0
    x = torch.zeros(1, 3, size, size)
    for m in model:
        y = m(x)
        if isinstance(m, nn.Conv2d):
            macs += y.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, nn.Linear):
            macs += m.in_features * m.out_features
        x = y
    return macs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="paper", choices=sorted(MODELS))
    ap.add_argument("--mode", default="infer", choices=["infer", "train"])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--channels-last", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model, size = MODELS[a.model]()
    macs = count_macs(model, size)
    x = torch.rand(a.batch, 3, size, size) * 2 - 1
    if a.channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.to(memory_format=torch.channels_last)
    classes = model[-1].out_features
    y = torch.arange(a.batch) % classes
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    times = []
    for it in range(a.warmup + a.iters):
        t0 = time.perf_counter()
        if a.mode == "infer":
            model.eval()
            with torch.inference_mode():
                model(x)
        else:
            model.train()
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        if it >= a.warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    ms = statistics.median(times)
    passes = 3 if a.mode == "train" else 1
    print(json.dumps({
        "model": a.model, "mode": a.mode, "batch": a.batch, "threads": a.threads,
        "ms_per_iter": ms, "img_per_s": a.batch / (ms / 1e3),
        "gflops": 2 * macs * a.batch * passes / (ms / 1e3) / 1e9, "iter_ms": times,
        "framework": "pytorch " + torch.__version__,
    }))


if __name__ == "__main__":
    main()
