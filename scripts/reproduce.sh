#!/usr/bin/env bash
# The runs behind REPRODUCTION.md, claim by claim. Each run goes to $RUNS/<name> and is resumed
# if it stopped (a finished run is left alone), so the script can be run again across sittings.
#
#   scripts/reproduce.sh CLAIM...     claims: headline cifar30 embedded recipe fig1 lrn pool towers pca dropout ensemble
#
# Environment: DATA (default ../shared/data), RUNS (default runs/repro), SEEDS (default "0 1 2"),
# THREADS (default 2), BIN (default target/release/alexnet). Never run two of these at once on
# a 2-core machine: the time-limited runs measure what the cores do in that time.
set -euo pipefail
DATA=${DATA:-../shared/data}
RUNS=${RUNS:-runs/repro}
SEEDS=${SEEDS:-0 1 2}
THREADS=${THREADS:-2}
BIN=${BIN:-target/release/alexnet}
IMAGENETTE="--data $DATA/imagenette/train --classes $DATA/imagenette/classes.tsv"
CIFAR="--data $DATA/cifar10/train"

# run NAME ARGS...: train into $RUNS/NAME unless it already finished; resume it if it stopped.
run() {
  local name=$1; shift
  local dir=$RUNS/$name
  if [[ -f $dir/done ]]; then echo "== $name: done"; return; fi
  echo "== $name: $*"
  if [[ -f $dir/last.safetensors ]]; then
    $BIN train --resume "$dir" --threads "$THREADS"
  else
    $BIN train "$@" --threads "$THREADS" --out "$dir"
  fi
  touch "$dir/done"
}

# held_out NAME: centre-crop and ten-crop error of a run's last weights on its held-out images.
held_out() {
  local dir=$RUNS/$1
  for crops in "" --ten-crop; do
    $BIN eval --weights "$dir/last.safetensors" --held-out "$dir" $crops --json --threads "$THREADS" \
      > "$dir/eval${crops:+-ten-crop}.json"
  done
}

for claim in "$@"; do
  case $claim in
    headline)  # Imagenette, paper model, default recipe, 2 hours; ten crops; Figures 3 and 4.
      run imagenette-default $IMAGENETTE --time-limit 120
      held_out imagenette-default
      $BIN filters --weights "$RUNS/imagenette-default/last.safetensors" --out "$RUNS/imagenette-default/conv1.png" --json \
        > "$RUNS/imagenette-default/filters.json" ;;
    cifar30)   # CIFAR-10, cifar model, default recipe, 30 minutes.
      run cifar-default $CIFAR --model cifar --time-limit 30
      held_out cifar-default ;;
    embedded)  # The main job of README's set-up.
      run embedded-default ;;
    recipe)    # README's Recipes: each deviation of the default recipe taken back alone, 3 epochs.
      run recipe-default $IMAGENETTE --epochs 3
      run recipe-no-warmup $IMAGENETTE --epochs 3 --warmup-epochs 0
      run recipe-paper-init $IMAGENETTE --epochs 3 --init paper --normalize per-pixel-mean
      run recipe-biases-1 $IMAGENETTE --epochs 3 --recipe paper --init he --normalize per-channel \
        --schedule cosine --warmup-epochs 1
      run recipe-plateau $IMAGENETTE --epochs 3 --schedule plateau
      run recipe-paper $IMAGENETTE --epochs 3 --recipe paper ;;
    fig1)      # Figure 1: ReLU vs tanh, four-layer net, no regularisation, lr chosen per activation.
      for act in relu tanh; do
        for lr in 0.005 0.01 0.02 0.04; do
          flag=$([[ $act == tanh ]] && echo --tanh || true)
          run fig1-$act-lr$lr $CIFAR --model cifar-4layer $flag --lr "$lr" --epochs 30 --schedule step \
            --step-every 1000 --warmup-epochs 0 --weight-decay 0 --no-random-crop --no-flip --pca-std 0 --val-split 0
        done
      done ;;
    lrn|pool|pca|dropout)  # Section 3.3, 3.4, 4.1, 4.2 on CIFAR-10: each seed with and without.
      case $claim in
        lrn) off=--no-lrn ;; pool) off=--no-overlap-pool ;; pca) off="--pca-std 0" ;; dropout) off="--dropout 0" ;;
      esac
      for seed in $SEEDS; do
        run $claim-on-s$seed $CIFAR --model cifar --epochs 8 --seed "$seed"
        run $claim-off-s$seed $CIFAR --model cifar --epochs 8 --seed "$seed" $off
      done ;;
    towers)    # Section 3.2: two towers vs the half-width one-tower net, Imagenette.
      for seed in $SEEDS; do
        run towers-paper-s$seed $IMAGENETTE --model paper --epochs 8 --seed "$seed"
        run towers-half-s$seed $IMAGENETTE --model paper-half --epochs 8 --seed "$seed"
      done ;;
    ensemble)  # Section 6: nets of several seeds on the same held-out images, softmax averaged.
      w=()
      for seed in $SEEDS; do
        run ensemble-s$seed $CIFAR --model cifar --epochs 8 --seed "$seed"
        w+=(--weights "$RUNS/ensemble-s$seed/last.safetensors")
      done
      $BIN eval "${w[@]}" --held-out "$RUNS/ensemble-s${SEEDS%% *}" --json --threads "$THREADS" \
        > "$RUNS/ensemble.json" ;;
    *) echo "unknown claim $claim" >&2; exit 2 ;;
  esac
done
