#!/usr/bin/env python3
"""Network speed, ours and PyTorch's side by side in one run, written into BENCHMARKS.md.

    PYTHON=~/venv/bin/python python3 scripts/benchmarks.py [--threads 2] [--iters 5] [--dry-run]

For each case (model, mode, batch) it runs `alexnet bench --json` with `--conv im2col` and with
`--conv auto` (Winograd on the 3x3 layers), then scripts/bench_pytorch.py under $PYTHON (a
python with torch; PyTorch's columns stay empty without one), one after the other, on an
otherwise idle machine. The table goes into BENCHMARKS.md between markers named after the CPU
(model name, family, model number), so each kind of machine keeps its own table and a rerun on
the same kind replaces it. Nothing else in BENCHMARKS.md is touched.
"""
import argparse
import datetime
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "alexnet")
CASES = [
    ("paper", "train", 64),
    ("paper", "infer", 64),
    ("paper", "infer", 1),
    ("torchvision", "train", 64),
    ("torchvision", "infer", 64),
    ("torchvision", "infer", 1),
]


def run_json(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def ours(model, mode, batch, threads, iters, conv):
    return run_json([BIN, "bench", "--model", model, "--mode", mode, "--batch", str(batch),
                     "--threads", str(threads), "--iters", str(iters), "--conv", conv, "--json"])


def pytorch(py, model, mode, batch, threads, iters, channels_last=False):
    cmd = [py, os.path.join(ROOT, "scripts", "bench_pytorch.py"), "--model", model, "--mode", mode,
           "--batch", str(batch), "--threads", str(threads), "--iters", str(iters)]
    if channels_last:
        cmd.append("--channels-last")
    try:
        return run_json(cmd)
    except (subprocess.CalledProcessError, FileNotFoundError, ValueError):
        return None


def torch_version(py):
    try:
        return subprocess.run([py, "-c", "import torch; print(torch.__version__)"], check=True,
                              capture_output=True, text=True).stdout.strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None


def speed(r, batch):
    """img/s, or ms for one image."""
    if r is None:
        return "-"
    return f"{r['ms_per_iter']:.1f} ms" if batch == 1 else f"{r['img_per_s']:.1f}"


def ratio(a, b, batch):
    if a is None or b is None:
        return "-"
    return f"{b['ms_per_iter'] / a['ms_per_iter']:.2f}x"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--dry-run", action="store_true", help="print the section, do not write it")
    a = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "-q"], cwd=ROOT, check=True)
    py = os.environ.get("PYTHON", sys.executable)
    tv = torch_version(py)
    rows, cpu, peak = [], None, []
    for model, mode, batch in CASES:
        im2col = ours(model, mode, batch, a.threads, a.iters, "im2col")
        auto = ours(model, mode, batch, a.threads, a.iters, "auto")
        cpu = auto["cpu"]
        peak += [im2col["gemm_peak_gflops"], auto["gemm_peak_gflops"]]
        ref = pytorch(py, model, mode, batch, a.threads, a.iters) if tv else None
        # PyTorch's faster layout for the torchvision model's inference, as the issue compares.
        if tv and model == "torchvision" and mode == "infer":
            cl = pytorch(py, model, mode, batch, a.threads, a.iters, channels_last=True)
            if cl and (ref is None or cl["ms_per_iter"] < ref["ms_per_iter"]):
                ref = dict(cl, note="channels-last")
        rows.append((model, mode, batch, im2col, auto, ref))
        print(f"{model} {mode} {batch}: im2col {speed(im2col, batch)}, auto {speed(auto, batch)}, "
              f"PyTorch {speed(ref, batch)}", file=sys.stderr)
    key = f"{cpu['model']} / family {cpu['family']} model {cpu['model_number']}"
    ext = ", ".join(n for n, on in [("AVX2", cpu["avx2"]), ("AVX-512", cpu["avx512f"]),
                                     ("AVX512-BF16", cpu["avx512_bf16"])] if on) or "no AVX2"
    lines = [
        f"<!-- cpu: {key} -->",
        f"### {cpu['model']}, CPU family {cpu['family']} model {cpu['model_number']} ({ext}), "
        f"{a.threads} threads",
        "",
        f"Measured {datetime.date.today().isoformat()} by `python3 scripts/benchmarks.py --threads "
        f"{a.threads} --iters {a.iters}` (median of {a.iters} iterations after one warm-up; "
        f"PyTorch {tv or 'not installed'}); this run's matrix-multiply peak (1024³ f32, "
        f"{a.threads} threads): {min(peak):.0f}-{max(peak):.0f} GFLOP/s. img/s, or ms for one "
        "image; `peak` is the FLOPs of direct convolution per second over that peak (above 1: "
        "faster than any im2col implementation can be here).",
        "",
        "| model, mode, batch | ours, im2col | ours, auto (Winograd) | peak | PyTorch | auto / PyTorch | auto / im2col |",
        "|---|---|---|---|---|---|---|",
    ]
    for model, mode, batch, im2col, auto, ref in rows:
        note = f" ({ref['note']})" if ref and ref.get("note") else ""
        lines.append(f"| {model} {mode} {batch} | {speed(im2col, batch)} | {speed(auto, batch)} | "
                     f"{auto['peak_fraction']:.2f} | {speed(ref, batch)}{note} | "
                     f"{ratio(auto, ref, batch)} | {ratio(auto, im2col, batch)} |")
    lines.append(f"<!-- /cpu: {key} -->")
    section = "\n".join(lines) + "\n"
    if a.dry_run:
        print(section)
        return
    path = os.path.join(ROOT, "BENCHMARKS.md")
    text = open(path).read()
    heading = "## Network speed (scripts/benchmarks.py)\n\n"
    pattern = re.compile(re.escape(f"<!-- cpu: {key} -->") + r".*?" + re.escape(f"<!-- /cpu: {key} -->") + r"\n",
                         re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    elif heading in text:
        text = text.replace(heading, heading + section + "\n", 1)
    else:
        text = text.rstrip("\n") + "\n\n" + heading + section
    open(path, "w").write(text)
    print(section)


if __name__ == "__main__":
    main()
