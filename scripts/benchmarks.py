#!/usr/bin/env python3
"""Network speed, ours and PyTorch's side by side in one run, written into BENCHMARKS.md.

    PYTHON=~/venv/bin/python python3 scripts/benchmarks.py [--threads 2] [--iters 5] [--rounds 3] [--dry-run]

For each case (model, mode, batch) it runs `alexnet bench --json` with `--conv im2col` and with
`--conv auto` (FFT on conv2 from 8 images, Winograd on the 3x3 layers), on a CPU with
AVX512-BF16 also `--conv auto --precision bf16`, then scripts/bench_pytorch.py under $PYTHON (a
python with torch; PyTorch's columns stay empty without one), one after the other, on an
otherwise idle machine, and does so `--rounds` times, interleaved: on a shared host whose speed
drifts by ±20% within minutes, the three runs of one round see the same machine, so each
round's ratios are fair even when its rates are not. The table gives the median rate of the
rounds and the median of the rounds' ratios with their range (lowest-highest), so that the noise
is in plain view. The table goes into BENCHMARKS.md between markers named after the CPU
(model name, family, model number), so each kind of machine keeps its own table and a rerun on
the same kind replaces it. Nothing else in BENCHMARKS.md is touched.
"""
import argparse
import datetime
import json
import os
import re
import statistics
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


def ours(model, mode, batch, threads, iters, conv, precision="f32"):
    return run_json([BIN, "bench", "--model", model, "--mode", mode, "--batch", str(batch),
                     "--threads", str(threads), "--iters", str(iters), "--conv", conv,
                     "--precision", precision, "--json"])


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


def median_run(runs):
    """The run with the median time, the faster of the middle two for an even count, as
    statistics.median_low (runs: dicts with ms_per_iter, or None for a failed run)."""
    runs = sorted((r for r in runs if r is not None), key=lambda r: r["ms_per_iter"])
    return runs[(len(runs) - 1) // 2] if runs else None


def speed(r, batch):
    """img/s, or ms for one image."""
    if r is None:
        return "-"
    return f"{r['ms_per_iter']:.1f} ms" if batch == 1 else f"{r['img_per_s']:.1f}"


def ratio(a_runs, b_runs):
    """How many times faster a is than b: the median of the rounds' ratios, and their range."""
    rs = [b["ms_per_iter"] / a["ms_per_iter"] for a, b in zip(a_runs, b_runs) if a and b]
    if not rs:
        return "-"
    med = statistics.median(rs)
    return f"{med:.2f}x ({min(rs):.2f}-{max(rs):.2f})" if len(rs) > 1 else f"{med:.2f}x"


def pytorch_best_layout(py, model, mode, batch, threads, iters):
    """PyTorch's run, and for the torchvision model's inference its faster layout of NCHW and
    channels-last, as the issue compares."""
    ref = pytorch(py, model, mode, batch, threads, iters)
    if model == "torchvision" and mode == "infer":
        cl = pytorch(py, model, mode, batch, threads, iters, channels_last=True)
        if cl and (ref is None or cl["ms_per_iter"] < ref["ms_per_iter"]):
            ref = dict(cl, note="channels-last")
    return ref


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--case", action="append", metavar="MODEL,MODE,BATCH",
                    help="only these cases (repeatable), e.g. paper,infer,1; implies --dry-run")
    ap.add_argument("--dry-run", action="store_true", help="print the section, do not write it")
    a = ap.parse_args()
    if a.rounds < 1 or a.iters < 1:
        ap.error("--rounds and --iters must be at least 1")
    subprocess.run(["cargo", "build", "--release", "-q"], cwd=ROOT, check=True)
    py = os.environ.get("PYTHON", sys.executable)
    tv = torch_version(py)
    rows, cpu, peak = [], None, []
    cases = CASES
    if a.case:
        cases = [(m, mo, int(b)) for m, mo, b in (c.split(",") for c in a.case)]
        a.dry_run = True
    for model, mode, batch in cases:
        im2col, auto, bf16, ref = [], [], [], []
        for rnd in range(a.rounds):
            im2col.append(ours(model, mode, batch, a.threads, a.iters, "im2col"))
            auto.append(ours(model, mode, batch, a.threads, a.iters, "auto"))
            has_bf16 = auto[-1]["cpu"]["avx512_bf16"]
            bf16.append(ours(model, mode, batch, a.threads, a.iters, "auto", "bf16") if has_bf16 else None)
            ref.append(pytorch_best_layout(py, model, mode, batch, a.threads, a.iters) if tv else None)
            peak += [im2col[-1]["gemm_peak_gflops"], auto[-1]["gemm_peak_gflops"]]
            print(f"{model} {mode} {batch} round {rnd + 1}: im2col {speed(im2col[-1], batch)}, "
                  f"auto {speed(auto[-1], batch)}, auto bf16 {speed(bf16[-1], batch)}, "
                  f"PyTorch {speed(ref[-1], batch)}", file=sys.stderr)
        cpu = auto[-1]["cpu"]
        rows.append((model, mode, batch, im2col, auto, bf16, ref))
    key = f"{cpu['model']} / family {cpu['family']} model {cpu['model_number']}"
    ext = ", ".join(n for n, on in [("AVX2", cpu["avx2"]), ("AVX-512", cpu["avx512f"]),
                                     ("AVX512-BF16", cpu["avx512_bf16"])] if on) or "no AVX2"
    lines = [
        f"<!-- cpu: {key} -->",
        f"### {cpu['model']}, CPU family {cpu['family']} model {cpu['model_number']} ({ext}), "
        f"{a.threads} threads",
        "",
        f"Measured {datetime.date.today().isoformat()} by `python3 scripts/benchmarks.py --threads "
        f"{a.threads} --iters {a.iters} --rounds {a.rounds}` (each run the median of {a.iters} "
        f"iterations after one warm-up; {a.rounds} interleaved rounds of ours by im2col, ours by "
        f"auto, ours by auto with bf16 products (on CPUs with AVX512-BF16) and PyTorch "
        f"{tv or '(not installed)'}, all f32 but the bf16 column). img/s, or ms for one image: the median "
        "round (the faster of the middle two for an even count). Ratios: the median of the rounds' ratios (their range in brackets). The "
        "matrix-multiply peak (best 1024³ f32 product on "
        f"{a.threads} threads) ranged {min(peak):.0f}-{max(peak):.0f} GFLOP/s over the run's "
        f"measurements; `peak` is the median round of auto's direct-convolution FLOPs per second "
        f"over the run's best, {max(peak):.0f} (above 1: faster than any im2col implementation "
        "can be here).",
        "",
        "| model, mode, batch | ours, im2col | ours, auto (FFT + Winograd) | peak | PyTorch | auto / PyTorch "
        "| auto / im2col | ours, auto, bf16 | bf16 / f32 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for model, mode, batch, im2col, auto, bf16, ref in rows:
        mid_ref = median_run(ref)
        note = f" ({mid_ref['note']})" if mid_ref and mid_ref.get("note") else ""
        frac = median_run(auto)["gflops"] / max(peak)
        lines.append(f"| {model} {mode} {batch} | {speed(median_run(im2col), batch)} | "
                     f"{speed(median_run(auto), batch)} | {frac:.2f} | {speed(mid_ref, batch)}{note} | "
                     f"{ratio(auto, ref)} | {ratio(auto, im2col)} | {speed(median_run(bf16), batch)} | "
                     f"{ratio(bf16, auto)} |")
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
