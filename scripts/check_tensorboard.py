#!/usr/bin/env python3
"""Reads a training run's TensorBoard event files with TensorBoard's own reader and checks them
against the run's metrics.jsonl: every scalar at every epoch's step (float32 of the same value),
and conv1's filters as a PNG image each epoch. Exits non-zero on any difference.

Usage: python scripts/check_tensorboard.py RUN_DIR   (needs `pip install tensorboard`)
"""

import json
import struct
import sys
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

TAGS = {
    "train/loss": "train_loss",
    "train/top1_error": "train_top1_error",
    "val/loss": "val_loss",
    "val/top1_error": "val_top1_error",
    "val/top5_error": "val_top5_error",
    "lr": "lr",
    "images_per_s": "images_per_s",
}


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def main(run):
    run = Path(run)
    metrics = [json.loads(l) for l in open(run / "metrics.jsonl")]
    acc = EventAccumulator(str(run), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    tags = acc.Tags()
    problems = []
    for tag, key in TAGS.items():
        want = [(m["step"], f32(m[key])) for m in metrics if m.get(key) is not None]
        got = [(e.step, e.value) for e in acc.Scalars(tag)] if tag in tags["scalars"] else []
        if got != want:
            problems.append(f"{tag}: tensorboard has {got}, metrics.jsonl {want}")
    images = acc.Images("conv1/filters") if "conv1/filters" in tags["images"] else []
    if [i.step for i in images] != [m["step"] for m in metrics]:
        problems.append(f"conv1/filters at steps {[i.step for i in images]}")
    for i in images:
        if not i.encoded_image_string.startswith(b"\x89PNG") or i.width < 10 or i.height < 10:
            problems.append(f"conv1/filters at step {i.step} is not a PNG of its size")
    for p in problems:
        print("MISMATCH", p)
    print(f"{run}: {sum(len(acc.Scalars(t)) for t in tags['scalars'])} scalars and {len(images)} images "
          f"read by tensorboard's EventAccumulator, {'not ' if problems else ''}matching metrics.jsonl")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
