#!/usr/bin/env python3
"""Runs every exported ONNX case through onnxruntime and compares with our logits.

Each case folder (written by `cargo test --test import_export`, see tests/import_export.rs) holds
model.onnx and io.safetensors with `input` and our `logits`. Relative error must be <= 1e-4.
Usage: check_onnx.py CASES_DIR. Needs numpy and onnxruntime (pip); prints 'N passed, M failed'.
"""
import json
import pathlib
import struct
import sys

import numpy as np
import onnxruntime as ort


def load_safetensors(path):
    b = path.read_bytes()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8:8 + n])
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        s, e = v["data_offsets"]
        out[k] = np.frombuffer(b[8 + n + s:8 + n + e], dtype=np.float32).reshape(v["shape"])
    return out


def main():
    cases = sorted(p for p in pathlib.Path(sys.argv[1]).iterdir() if (p / "model.onnx").exists())
    passed = failed = 0
    for case in cases:
        io = load_safetensors(case / "io.safetensors")
        sess = ort.InferenceSession(str(case / "model.onnx"), providers=["CPUExecutionProvider"])
        got = sess.run(["logits"], {"input": io["input"]})[0]
        err = float(np.linalg.norm(got - io["logits"]) / np.linalg.norm(io["logits"]))
        ok = err <= 1e-4
        passed += ok
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {case.name}: relative error {err:.2e}")
    if not cases:
        print("no ONNX cases found")
        failed += 1
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
