#!/usr/bin/env python3
"""How much does LRN vary from image to image and place to place in a trained `cifar` net?

LRN divides each ReLU output a_c by d_c = (k + alpha/n * sum_{c' near c} a_c'^2)^beta. If the sum
is small next to k = 2 everywhere, d_c is nearly the constant 2^0.75 = 1.68 and LRN is a fixed
damping, not a normalisation. This script runs conv1 -> ReLU -> LRN (and on through max-pool and
the grouped conv2 for the second LRN) of a checkpoint on images of a folder, centre crop of the
stored image (the whole 32x32 image for the cifar models), and prints the distribution of
d / k^beta over every position and channel.

  scripts/lrn_denominator.py CHECKPOINT.safetensors IMAGE_DIR [--images N] [--json]

Needs numpy and Pillow (`pip install numpy pillow`). The checkpoint is read as safetensors (a JSON header and raw float32
data; nothing in it is executed). Only the `cifar`-family layer order is handled (conv, relu,
lrn, max_pool, conv, relu, lrn) with stride-1 convolutions, the per-channel input normalisation,
and images already at the stored size (CIFAR's 32x32 files): anything else is refused rather
than approximated.
"""
import argparse
import json
import pathlib
import struct

import numpy as np
from PIL import Image


def load(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        if n > 100_000_000:
            raise SystemExit(f"{path}: header of {n} bytes is not a safetensors header")
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    tensors = {}
    for name, t in header.items():
        if t["dtype"] != "F32":
            continue
        a, b = t["data_offsets"]
        if not (0 <= a <= b <= len(data)) or (b - a) != 4 * int(np.prod(t["shape"])):
            raise SystemExit(f"{path}: tensor {name} has offsets outside the file")
        tensors[name] = np.frombuffer(data[a:b], dtype="<f4").reshape(t["shape"])
    return tensors, meta


def conv(x, w, b, pad, groups):
    """x [N, C, H, W], w [O, C/groups, k, k], stride 1."""
    n, c, h, wd = x.shape
    o, cg, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = h + 2 * pad - k + 1, wd + 2 * pad - k + 1
    out = np.empty((n, o, oh, ow), dtype=np.float32)
    og = o // groups
    for g in range(groups):
        xs = xp[:, g * cg:(g + 1) * cg]
        cols = np.lib.stride_tricks.sliding_window_view(xs, (k, k), axis=(2, 3))  # N, cg, oh, ow, k, k
        out[:, g * og:(g + 1) * og] = np.einsum("nchwij,ocij->nohw", cols, w[g * og:(g + 1) * og], optimize=True)
    return out + b[None, :, None, None]


def lrn_denominator(a, size, alpha, beta, k, alpha_over_n):
    sq = np.pad(a * a, ((0, 0), (size // 2, size // 2), (0, 0), (0, 0)))
    s = sum(sq[:, i:i + a.shape[1]] for i in range(size))
    return (k + (alpha / size if alpha_over_n else alpha) * s) ** beta


def max_pool(x, kernel, stride, pad):
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=-np.inf)
    win = np.lib.stride_tricks.sliding_window_view(xp, (kernel, kernel), axis=(2, 3))[:, :, ::stride, ::stride]
    return win.max(axis=(-1, -2))


def describe(name, d, k, beta):
    r = (d / k**beta).ravel()
    q = np.percentile(r, [50, 90, 99, 99.9])
    print(f"{name}: d / k^beta over {r.size} values: mean {r.mean():.4f}, median {q[0]:.4f}, "
          f"p90 {q[1]:.4f}, p99 {q[2]:.4f}, p99.9 {q[3]:.4f}, max {r.max():.4f}")
    return {"values": int(r.size), "mean": float(r.mean()), "p50": float(q[0]), "p90": float(q[1]),
            "p99": float(q[2]), "p999": float(q[3]), "max": float(r.max())}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("images")
    ap.add_argument("--images", dest="count", type=int, default=256)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    t, meta = load(args.checkpoint)
    cfg, stats = json.loads(meta["config"]), json.loads(meta["stats"])
    layers = cfg["layers"]
    kinds = [l["type"] for l in layers[:7]]
    if kinds != ["conv", "relu", "lrn", "max_pool", "conv", "relu", "lrn"]:
        raise SystemExit(f"{args.checkpoint}: layers start {kinds}, not conv relu lrn max_pool conv relu lrn")
    norm = cfg.get("data", {}).get("normalize", {})
    norm = norm.get("type") if isinstance(norm, dict) else norm
    if norm != "per_channel":
        raise SystemExit(f"{args.checkpoint}: input normalisation {norm!r}; only per_channel is handled")
    for c in (layers[0], layers[4]):
        if c.get("stride", 1) != 1:
            raise SystemExit(f"{args.checkpoint}: {c['name']} has stride {c['stride']}; only stride 1 is handled")
    files = sorted(p for p in pathlib.Path(args.images).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not files:
        raise SystemExit(f"{args.images}: no images")
    files = files[:: max(1, len(files) // args.count)][: args.count]
    size = cfg["input"][1]
    imgs = []
    for f in files:
        im = Image.open(f).convert("RGB")
        if im.size != (size, size):
            raise SystemExit(f"{f}: {im.size[0]}x{im.size[1]}, not the model's {size}x{size} (resize is not handled)")
        imgs.append(np.asarray(im, dtype=np.float32))
    x = np.stack(imgs)
    x = (x - np.array(stats["channel_mean"])) / np.array(stats["channel_std"])
    x = x.transpose(0, 3, 1, 2).astype(np.float32)
    out = {"checkpoint": args.checkpoint, "images": len(files)}
    c1, l1, p1, c2, l2 = layers[0], layers[2], layers[3], layers[4], layers[6]
    a1 = np.maximum(conv(x, t["param.conv1.weight"], t["param.conv1.bias"], c1["pad"], c1["groups"]), 0)
    d1 = lrn_denominator(a1, l1["size"], l1["alpha"], l1["beta"], l1["k"], l1.get("convention", "alpha_over_n") == "alpha_over_n")
    out["lrn1"] = describe("lrn1 (after conv1)", d1, l1["k"], l1["beta"])
    h = max_pool(a1 / d1, p1["kernel"], p1["stride"], p1["pad"])
    a2 = np.maximum(conv(h, t["param.conv2.weight"], t["param.conv2.bias"], c2["pad"], c2["groups"]), 0)
    d2 = lrn_denominator(a2, l2["size"], l2["alpha"], l2["beta"], l2["k"], l2.get("convention", "alpha_over_n") == "alpha_over_n")
    out["lrn2"] = describe("lrn2 (after conv2)", d2, l2["k"], l2["beta"])
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
