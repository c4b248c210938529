//! The `alexnet` command line: one file per command under `commands/`, each an args struct and
//! an `exec`; this file only dispatches. Exit codes: 0 done, 1 error, 130 interrupted.

mod commands;
mod common;

use clap::{Parser, Subcommand};
use commands::*;

/// Large blocks (weights, activations, gradients) in 2 MiB pages where Linux gives them on
/// request: the fc weights read ~8% faster, a training step ~4% (see `alexnet::hugepages`).
#[global_allocator]
static GLOBAL: alexnet::hugepages::HugePageAlloc = alexnet::hugepages::HugePageAlloc;

#[derive(Parser)]
#[command(name = "alexnet", version, about = "AlexNet (Krizhevsky et al. 2012) on the CPU: train, evaluate, classify")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The layer table: kernel, stride, pad, groups, output size, parameters, multiply-adds.
    Summary(summary::Args),
    /// Time inference or a training step on synthetic input (median over iterations).
    Bench(bench::Args),
    /// Train a model on an image folder (`--recipe default`, or the paper's as printed).
    Train(Box<train::Args>),
    /// Pack a folder once into the compact image cache (its statistics computed on the way).
    Prepare(prepare::Args),
    /// Top-1 and top-5 error on an image folder; several --weights average their softmax.
    Eval(eval::Args),
    /// Classify images: class names and probabilities.
    Predict(predict::Args),
    /// Read AlexNet weights from PyTorch (.pth zip or legacy, or safetensors) into a checkpoint.
    Import(import::Args),
    /// Write a checkpoint as ONNX (opset 17) and/or safetensors with torchvision's key names.
    Export(export::Args),
    /// Run the network on a raw tensor: `input [N, C, H, W]` from a safetensors file, logits out.
    Forward(forward::Args),
    /// The learned conv1 kernels as an image grid (the paper's Figure 3).
    Filters(filters::Args),
    /// Last-hidden-layer activations of a folder's images, with file names and labels.
    Features(features::Args),
    /// Nearest neighbours in the last hidden layer, as a grid like the paper's Figure 4.
    Neighbors(neighbors::Args),
    /// Classify images over HTTP: a JSON API with dynamic batching, metrics and a web page.
    #[cfg(feature = "serve")]
    Serve(Box<serve::Args>),
    /// One value of several runs against epochs (a plot), and the epoch each reached a threshold.
    Compare(compare::Args),
}

fn main() {
    let result = match Cli::parse().command {
        Command::Summary(a) => summary::exec(a),
        Command::Bench(a) => bench::exec(a),
        Command::Train(a) => train::exec(*a),
        Command::Prepare(a) => prepare::exec(a),
        Command::Eval(a) => eval::exec(a),
        Command::Predict(a) => predict::exec(a),
        Command::Import(a) => import::exec(a),
        Command::Export(a) => export::exec(a),
        Command::Forward(a) => forward::exec(a),
        Command::Filters(a) => filters::exec(a),
        Command::Features(a) => features::exec(a),
        Command::Neighbors(a) => neighbors::exec(a),
        Command::Compare(a) => compare::exec(a),
        #[cfg(feature = "serve")]
        Command::Serve(a) => serve::exec(*a),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
