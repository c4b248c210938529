#!/usr/bin/env python3
"""`alexnet serve` under load, on 127.0.0.1 only: requests/s and p50/p99 latency at concurrency
1, 8 and 32, with dynamic batching and without (--max-batch 1), beside `alexnet bench`'s
batch-1 and batch-32 inference in the same run; optionally a soak (a few minutes at
concurrency 8, the server's resident memory sampled and /metrics scraped every 5 s).

    cargo build --release --examples && python3 scripts/serve_bench.py [--soak 180] [--write]

Without --weights it trains the paper network for one epoch on 16 Imagenette images (the
weights do not change the timing). Images: 64 Imagenette photos (224x224 JPEGs), sent in turn.
--write puts the tables into BENCHMARKS.md between the `serve` markers.
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import date

BIN = "target/release/alexnet"
LOADGEN = "target/release/examples/loadgen"


def cpu_name():
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    name = re.search(r"Model name:\s*(.*)", out).group(1).strip()
    fam = re.search(r"CPU family:\s*(\d+)", out)
    model = re.search(r"Model:\s*(\d+)", out)
    flags = open("/proc/cpuinfo").read()
    isa = "AVX-512" if " avx512f" in flags else "AVX2, no AVX-512"
    return f"{name}, family {fam.group(1) if fam else '?'} model {model.group(1) if model else '?'} ({isa})"


def images(root, n):
    out = []
    for cls in sorted(os.listdir(root)):
        files = sorted(os.listdir(os.path.join(root, cls)))
        out += [os.path.join(root, cls, f) for f in files[: max(1, n // 10)]]
    return out[:n]


def paper_weights(out, data_root):
    weights = os.path.join(out, "paper", "last.safetensors")
    if os.path.exists(weights):
        return weights
    data = os.path.join(out, "data")
    for cls in sorted(os.listdir(data_root))[:2]:
        os.makedirs(os.path.join(data, cls), exist_ok=True)
        for f in sorted(os.listdir(os.path.join(data_root, cls)))[:8]:
            dst = os.path.join(data, cls, f)
            if not os.path.exists(dst):
                os.symlink(os.path.abspath(os.path.join(data_root, cls, f)), dst)
    subprocess.run([BIN, "train", "--model", "paper", "--data", data, "--epochs", "1", "--batch", "8",
                    "--val-split", "0", "--quiet", "--out", os.path.join(out, "paper"),
                    "--cache-dir", os.path.join(out, "cache")], check=True)
    return weights


class Server:
    def __init__(self, weights, extra):
        self.p = subprocess.Popen([BIN, "serve", "--weights", weights, "--addr", "127.0.0.1:0"] + extra,
                                  stdout=subprocess.PIPE, text=True)
        line = self.p.stdout.readline()
        if not line.startswith("listening on http://"):
            sys.exit(f"the server did not start: {line!r}")
        self.url = line.split()[2].rstrip("/")

    def rss_mib(self):
        for line in open(f"/proc/{self.p.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        try:
            code = self.p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.p.kill()
            sys.exit("the server was still running 60 s after SIGTERM")
        if code != 0:
            sys.exit(f"the server exited with {code} after SIGTERM")


def load(url, concurrency, requests, seconds, files):
    out = subprocess.run([LOADGEN, "--url", url, "--concurrency", str(concurrency), "--requests", str(requests),
                          "--seconds", str(seconds)] + files, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def bench(batch):
    out = subprocess.run([BIN, "bench", "--model", "paper", "--mode", "infer", "--batch", str(batch),
                          "--iters", "10", "--json"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights")
    ap.add_argument("--images", default="../shared/data/imagenette/train")
    ap.add_argument("--out", default="runs/serve-bench")
    ap.add_argument("--soak", type=float, default=0, help="seconds of soak at concurrency 8 (0: none)")
    ap.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    weights = a.weights or paper_weights(a.out, a.images)
    files = images(a.images, 64)
    cpu = cpu_name()
    lines = [f"Measured {date.today()} on {cpu}, 2 cores; `python3 scripts/serve_bench.py"
             + (f" --soak {a.soak:g}" if a.soak else "") + "`. Paper network (227x227 input, 256 px stored), "
             "64 Imagenette JPEGs (224x224) sent in turn; the load generator (`examples/loadgen.rs`) runs "
             "on the same 2 cores. The server decodes each JPEG, resizes it and classifies its centre crop.", ""]

    b1, b32 = bench(1), bench(32)
    lines.append(f"`alexnet bench --mode infer` in the same run: batch 1 {b1['ms_per_iter']:.1f} ms "
                 f"({b1['img_per_s']:.1f} img/s), batch 32 {b32['img_per_s']:.1f} img/s.")
    lines += ["", "| batching | concurrency | requests | req/s | p50 ms | p99 ms | mean batch | errors |",
              "|---|---|---|---|---|---|---|---|"]
    results = []
    for label, extra in [("--max-batch 32 --max-wait-ms 2", ["--max-batch", "32", "--max-wait-ms", "2"]),
                         ("none (--max-batch 1)", ["--max-batch", "1"])]:
        s = Server(weights, extra)
        load(s.url, 2, 8, 60, files)  # warm-up
        for c, n in [(1, 100), (8, 400), (32, 640)]:
            r = load(s.url, c, n, 120, files)
            results.append({"batching": label, **r})
            errors = sum(r["errors"].values())
            lines.append(f"| {label} | {c} | {r['ok'] + errors} | {r['requests_per_s']:.1f} | {r['p50_ms']:.1f} | "
                         f"{r['p99_ms']:.1f} | {r['mean_batch']:.1f} | {errors} |")
            print(lines[-1], flush=True)
        s.stop()
    json.dump({"cpu": cpu, "bench": [b1, b32], "load": results}, open(os.path.join(a.out, "load.json"), "w"), indent=1)

    if a.soak:
        s = Server(weights, [])
        # Warm-up at the soak's concurrency, so the network's buffers reach the batch sizes
        # the soak will see (they grow to the largest batch, at most --max-batch).
        load(s.url, 8, 400, 60, files)
        samples = [(0.0, s.rss_mib())]
        t0 = time.time()
        gen = subprocess.Popen([LOADGEN, "--url", s.url, "--concurrency", "8", "--requests", "100000000",
                                "--seconds", str(a.soak)] + files, stdout=subprocess.PIPE, text=True)
        while gen.poll() is None:
            time.sleep(5)
            samples.append((time.time() - t0, s.rss_mib()))
            # Scraped as Prometheus would, every 5 s.
            urllib.request.urlopen(s.url + "/metrics").read()
        r = json.loads(gen.stdout.read())
        metrics = urllib.request.urlopen(s.url + "/metrics").read().decode()
        codes = {m.group(1): float(m.group(2)) for m in
                 re.finditer(r'alexnet_http_requests_total\{route="/v1/predict",code="(\d+)"\} (\S+)', metrics)}
        s.stop()
        with open(os.path.join(a.out, "soak_rss.csv"), "w") as f:
            f.write("seconds,rss_mib\n" + "".join(f"{t:.1f},{m:.1f}\n" for t, m in samples))
        rss = [m for _, m in samples]
        n_half = len(rss) // 2
        lines += ["", f"Soak: {r['seconds']:.0f} s at concurrency 8 with batching: {r['ok']} requests answered 200 "
                  f"({r['requests_per_s']:.1f}/s, p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms), "
                  f"errors {sum(r['errors'].values())}; the server counted {codes}. Resident memory (MiB) "
                  f"after warm-up {rss[0]:.0f}, max of the first half {max(rss[1:n_half + 1] or rss):.0f}, "
                  f"max of the second half {max(rss[n_half + 1:] or rss):.0f}, at the end {rss[-1]:.0f} "
                  f"({len(rss)} samples, every 5 s: {a.out}/soak_rss.csv)."]
        print(lines[-1], flush=True)

    text = "\n".join(lines) + "\n"
    open(os.path.join(a.out, "serve.md"), "w").write(text)
    print(text)
    if a.write:
        md = open("BENCHMARKS.md").read()
        begin, end = "<!-- serve:begin -->", "<!-- serve:end -->"
        block = f"{begin}\n{text}{end}"
        if begin in md:
            md = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, md, flags=re.S)
        else:
            md += f"\n## Serving (`alexnet serve`)\n\n{block}\n"
        open("BENCHMARKS.md", "w").write(md)


if __name__ == "__main__":
    main()
