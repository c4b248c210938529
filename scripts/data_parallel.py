#!/usr/bin/env python3
"""Data-parallel training, measured and projected (issue 11; results in BENCHMARKS.md).

1. Measures, on this machine, the paper net trained on a small Imagenette folder by one
   process on T threads and by T processes on one thread each (mpirun): data-parallel with the
   gradient all-reduce overlapped with the backward pass or after it, in f32 or bf16, and as T
   towers: images/s and the part of the loop spent waiting in collectives (for the towers, in
   their exchanges of activations), from each run's metrics.jsonl.
2. Projects the scaling to 8/32/128 nodes from a measured step (`alexnet bench --profile`: the
   step's time and each layer's backward time), the gradients' sizes and a stated bandwidth,
   with a ring all-reduce (2(N-1)/N times the bytes per process, 2(N-1) messages per bucket):
   without overlap every bucket waits for the backward pass's end; with it each bucket starts
   when its layer's gradients are done, one after another on the exchange thread.

Needs a binary built with `--features mpi` and mpirun. Standard library only.
Usage: python3 scripts/data_parallel.py [--data ../shared/data/imagenette/train] [--skip-runs]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target/release/alexnet"
MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none"]
# Gradient bucket size of src/cluster/exchange.rs (values).
BUCKET_VALUES = 4 << 20
LATENCY_S = 10e-6  # per message, a stated figure for a cluster network


def cpu_name():
    name, family, model = "?", "?", "?"
    for line in open("/proc/cpuinfo"):
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "model name":
            name = value
        elif key == "cpu family":
            family = value
        elif key == "model":
            model = value
        if key == "flags":
            flags = set(value.split())
            break
    isa = "AVX-512" if "avx512f" in flags else "AVX2"
    return f"{name} (family {family} model {model}, {isa}, {os.cpu_count()} cores)"


def subset(src, per_class, dst):
    """Links `per_class` images of each of the first 10 classes of `src` into `dst`."""
    for cls in sorted(p for p in Path(src).iterdir() if p.is_dir())[:10]:
        (dst / cls.name).mkdir(parents=True)
        for f in sorted(cls.iterdir())[:per_class]:
            (dst / cls.name / f.name).symlink_to(f.resolve())


def run(label, procs, threads, flags, data, out, cache, epochs, batch):
    args = [str(BIN), "train", "--data", str(data), "--model", "paper", "--epochs", str(epochs),
            "--batch", str(batch), "--val-split", "0.1", "--threads", str(threads), "--quiet",
            "--cache-dir", str(cache), "--out", str(out)] + flags
    cmd = (MPIRUN + ["-np", str(procs)] if procs > 1 else []) + args
    env = dict(os.environ, OMPI_MCA_btl_vader_single_copy_mechanism="none")
    print(f"{label}: {' '.join(cmd)}", file=sys.stderr)
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    lines = [json.loads(l) for l in open(out / "metrics.jsonl")]
    return label, lines


def bench_profile(batch, threads):
    cmd = [str(BIN), "bench", "--model", "paper", "--mode", "train", "--batch", str(batch),
           "--iters", "3", "--threads", str(threads), "--profile", "--json"]
    print(" ".join(cmd), file=sys.stderr)
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


# Parameters of the paper net by layer (weight + bias), in the backward pass's order.
PAPER_PARAMS = [("fc8", 4_097_000), ("fc7", 16_781_312), ("fc6", 37_752_832), ("conv5", 442_624),
                ("conv4", 663_936), ("conv3", 885_120), ("conv2", 307_456), ("conv1", 34_944)]


def buckets(bytes_per_value):
    """(layer after whose backward the bucket is sent, bytes), as GradExchange fills them."""
    out, filling = [], 0
    for name, n in PAPER_PARAMS:
        filling += n
        if filling >= BUCKET_VALUES:
            out.append((name, filling * bytes_per_value))
            filling = 0
    if filling:
        out.append((PAPER_PARAMS[-1][0], filling * bytes_per_value))
    return out


def exposed_comm(profile, nodes, gbit, bytes_per_value, overlap):
    """Seconds a step waits for the all-reduce after its backward pass ends."""
    bw = gbit * 1e9 / 8
    layers = profile["layers"]
    # Time from the backward pass's start until each layer's gradients are done.
    done, t = {}, 0.0
    for layer in reversed(layers):
        t += layer["backward_ms"] / 1e3
        done.setdefault(layer["name"], t)
    backward_end = t
    finish = 0.0
    for name, size in buckets(bytes_per_value):
        cost = 2 * (nodes - 1) / nodes * size / bw + 2 * (nodes - 1) * LATENCY_S
        start = done[name] if overlap else backward_end
        finish = max(finish, start) + cost
    return max(0.0, finish - backward_end)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/imagenette/train"))
    ap.add_argument("--per-class", type=int, default=52)
    ap.add_argument("--batch", type=int, default=64, help="global batch of the measured runs")
    ap.add_argument("--node-batch", type=int, default=64, help="images per node a step, projection")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-runs", action="store_true", help="only the projection")
    a = ap.parse_args()
    print(f"CPU: {cpu_name()}\n")
    t = a.threads
    if not a.skip_runs:
        tmp = Path(tempfile.mkdtemp(prefix="alexnet-dp-"))
        try:
            data = tmp / "data"
            subset(a.data, a.per_class, data)
            configs = [
                (f"1 x {t} threads", 1, t, []),
                (f"{t} x 1, f32, overlapped", t, 1, []),
                (f"{t} x 1, f32, after backward", t, 1, ["--no-grad-overlap"]),
                (f"{t} x 1, bf16, overlapped", t, 1, ["--grad-dtype", "bf16"]),
                (f"{t} x 1, {t} towers", t, 1, ["--towers", str(t)]),
            ]
            rows = [run(label, p, th, f, data, tmp / f"run{i}", tmp / "cache", a.epochs, a.batch)
                    for i, (label, p, th, f) in enumerate(configs)]
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print(f"Paper net, global batch {a.batch}, {a.per_class * 10} Imagenette images (10% held out), "
              f"{a.epochs} epochs\n")
        print("| processes x threads | img/s by epoch | waiting in collectives by epoch | train loss by epoch |")
        print("|---|---|---|---|")
        for label, lines in rows:
            ips = " / ".join(f"{l['images_per_s']:.1f}" for l in lines)
            comm = " / ".join(f"{100 * l['comm_fraction']:.0f}%" for l in lines if "comm_fraction" in l) or "-"
            loss = " / ".join(f"{l['train_loss']:.4f}" for l in lines)
            print(f"| {label} | {ips} | {comm} | {loss} |")
        print()
    prof = bench_profile(a.node_batch, t)
    step = prof["ms_per_iter"] / 1e3
    backward = sum(l["backward_ms"] for l in prof["layers"]) / 1e3
    print(f"Projection: one node computes a step of {a.node_batch} images in {step:.2f} s "
          f"(backward {backward:.2f} s; `alexnet bench --model paper --mode train --batch {a.node_batch} "
          f"--threads {t} --profile`), ring all-reduce, {LATENCY_S * 1e6:.0f} us a message. "
          "Efficiency = step / (step + exposed communication).\n")
    print("| bandwidth | gradients | exchange | 8 nodes | 32 nodes | 128 nodes | below 90% from |")
    print("|---|---|---|---|---|---|---|")
    for gbit in (10, 100):
        for dtype, bpv in (("f32", 4), ("bf16", 2)):
            for overlap in (False, True):
                eff = lambda n: step / (step + exposed_comm(prof, n, gbit, bpv, overlap))
                below = next((n for n in range(2, 4097) if eff(n) < 0.9), None)
                cells = " | ".join(f"{100 * eff(n):.0f}%" for n in (8, 32, 128))
                mode = "overlapped" if overlap else "after backward"
                print(f"| {gbit} Gbit/s | {dtype} | {mode} | {cells} | {below or 'never'} |")


if __name__ == "__main__":
    main()
