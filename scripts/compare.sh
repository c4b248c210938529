#!/usr/bin/env bash
# Side-by-side: `alexnet bench` and, when torch is installed, scripts/bench_pytorch.py, on the
# same models, batch and threads, one JSON line each. Usage: scripts/compare.sh [threads]
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-$(nproc)}
py=${PYTHON:-python3}   # a python with torch, e.g. PYTHON=~/venv/bin/python
cargo build --release -q
for spec in "paper train 64" "paper infer 64" "paper infer 1" "torchvision train 64" "torchvision infer 64"; do
  set -- $spec
  ./target/release/alexnet bench --model "$1" --mode "$2" --batch "$3" --threads "$threads" --iters 5 --json
  if "$py" -c "import torch" 2>/dev/null; then
    "$py" scripts/bench_pytorch.py --model "$1" --mode "$2" --batch "$3" --threads "$threads" --iters 5
  fi
done
