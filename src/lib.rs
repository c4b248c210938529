//! # alexnet
//!
//! AlexNet (Krizhevsky, Sutskever, Hinton, *ImageNet Classification with Deep Convolutional
//! Neural Networks*, NIPS 2012) on the CPU: the network, its forward and backward passes, and
//! the paper's SGD.
//!
//! ```text
//! layer   kernel    stride pad groups  output      params       mult-adds
//! conv1   11x11x3   4      0   1       55x55x96    34,944       105,415,200
//! lrn, maxpool 3x3/2                   27x27x96
//! conv2   5x5x48    1      2   2       27x27x256   307,456      223,948,800
//! lrn, maxpool 3x3/2                   13x13x256
//! conv3   3x3x256   1      1   1       13x13x384   885,120      149,520,384
//! conv4   3x3x192   1      1   2       13x13x384   663,936      112,140,288
//! conv5   3x3x192   1      1   2       13x13x256   442,624       74,760,192
//! maxpool 3x3/2                        6x6x256
//! fc6 (dropout 0.5 before)             4096        37,752,832    37,748,736
//! fc7 (dropout 0.5 before)             4096        16,781,312    16,777,216
//! fc8                                  1000         4,097,000     4,096,000
//! total                                            60,965,224   724,406,816
//! ```
//!
//! ```
//! use alexnet::model::{ModelConfig, Mode, Network, plan};
//!
//! // The paper's network as data: its layer table and parameter count.
//! let paper = ModelConfig::variant("paper").unwrap();
//! assert_eq!(plan(&paper).unwrap().params, 60_965_224);
//!
//! // A small variant, run forward on one 32x32 image.
//! let mut net = Network::new(ModelConfig::variant("cifar").unwrap(), 0).unwrap();
//! let logits = net.forward(&vec![0.0; 3 * 32 * 32], 1, Mode::Eval);
//! assert_eq!(logits.len(), 10);
//! ```
//!
//! Data flows one way, and the modules below are listed in that order:
//!
//! ```text
//! image files ─ data::folder / data::idx / data::image (decode) ─ data::cache (packed uint8, stats)
//!   ─ data::pipeline (Splits → permutation → TrainInput: augment → LoaderOptions → Loader batches)
//!   ─ Network::train_step (model: plan → layers → kernels; kernels::loss) ─ optim (SGD)
//!   ─ checkpoint (safetensors) and train::metrics (metrics.jsonl) ─ plot (curves.png)
//! ```
//!
//! [`train`] drives that loop in stages; [`eval`] runs the centre or ten crops of a data set
//! through one network or an ensemble; [`interop`] reads PyTorch's files and writes ONNX;
//! [`bench`] times it all. Errors are typed: each module's error (`DataError`, `ConfigError`,
//! `CheckpointError`, `InteropError`) names the file and the problem and converts into [`Error`],
//! which the commands return.

pub mod rng;
pub mod tensor;
pub mod matmul;
pub mod kernels;
pub mod data;
pub mod model;
pub mod optim;
pub mod train;
pub mod cluster;
pub mod checkpoint;
pub mod eval;
pub mod features;
pub mod plot;
pub mod interop;
pub mod bench;
#[cfg(feature = "serve")]
pub mod serve;
pub mod error;
pub mod threads;
pub mod hugepages;
pub mod files;

pub use checkpoint::Checkpoint;
pub use error::{Error, Result};
pub use model::{Mode, ModelConfig, Network};
