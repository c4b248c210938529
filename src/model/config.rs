//! The network as data: an input shape and a list of layer specs. Variants are configs, not code.
//!
//! | variant      | what it is |
//! |--------------|------------|
//! | `paper`      | Krizhevsky et al. 2012: 227×227 input, conv→ReLU→LRN→pool, groups 2 on conv2/4/5 (the two-GPU split), 60,965,224 parameters |
//! | `paper-1gpu` | the same without groups, 62,378,344 parameters |
//! | `paper-half` | section 3.2's one-GPU comparison: conv1–conv4 halved (48/128/192/192), conv5 and fc kept |
//! | `caffenet`   | Caffe's CaffeNet: pool before LRN |
//! | `torchvision`| `torchvision.models.alexnet`: 64/192/384/256/256, conv1 pad 2, 224 input, no LRN, adaptive average pool to 6×6, 61,100,840 parameters |
//! | `zfnet`      | Zeiler & Fergus 2013: 7×7/2 conv1, 5×5/2 conv2, 512/1024/512 in conv3–5 |
//! | `alexnet64`  | the paper's eight layers for 64×64 images (Tiny ImageNet): conv1 5×5/2 instead of 11×11/4, pools padded by 1, 56×56 crops of 64×64 images |
//! | `cifar`      | a small AlexNet-style net for 32×32 inputs (cuda-convnet's CIFAR-10 nets in spirit): no dropout unless `--dropout` |
//! | `cifar-half` | `cifar` with half the kernels in conv1-4 and one tower (section 3.2's comparison at CIFAR size) |
//! | `cifar-4layer` | the paper's Figure 1 net: four weight layers (cuda-convnet's layers-18pct without its normalisation), no dropout |

use crate::data::{DataSpec, Normalize};
use crate::kernels::dropout::DropoutMode;
use crate::kernels::lrn::LrnParams;
use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum ConfigError {
    #[error("unknown model '{0}': neither a built-in variant ({known}) nor a model file", known = VARIANTS.join(", "))]
    UnknownModel(String),
    /// A model file that cannot be read, parsed or built; `problem` names the layer and field.
    #[error("{}: {problem}", path.display())]
    File { path: std::path::PathBuf, problem: String },
    /// `index` counts from 0 in the config's list; the message counts from 1, as a reader of
    /// the file's `[[layers]]` tables does.
    #[error("layer {} ({what}): {problem}", index + 1)]
    BadLayer { index: usize, what: String, problem: String },
    /// A problem of the whole network: its input, its data pipeline, its init, its size.
    #[error("{0}")]
    BadModel(String),
    #[error("the network must end in a fully connected layer giving the class scores")]
    NoClassifier,
}

/// One layer of the network. In a model file, a `[[layers]]` table with `type` one of the
/// variants' snake_case names (`conv`, `relu`, `lrn`, `max_pool`, ...); unknown fields are
/// errors. Defaults: `stride` 1, `pad` 0, `groups` 1, `bias_init` 0, and the paper's LRN.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum LayerSpec {
    /// Convolution; `groups` > 1 splits channels as the paper's two GPUs did.
    Conv {
        name: String,
        out: usize,
        kernel: usize,
        #[serde(default = "one")]
        stride: usize,
        #[serde(default)]
        pad: usize,
        #[serde(default = "one")]
        groups: usize,
        #[serde(default)]
        bias_init: f32,
    },
    Relu,
    Tanh,
    Lrn(LrnParams),
    MaxPool {
        kernel: usize,
        stride: usize,
        #[serde(default)]
        pad: usize,
    },
    AdaptiveAvgPool {
        out_h: usize,
        out_w: usize,
    },
    Flatten,
    Dropout {
        p: f32,
    },
    /// Fully connected layer.
    Linear {
        name: String,
        out: usize,
        #[serde(default)]
        bias_init: f32,
    },
}

/// Serde's default for strides and groups.
fn one() -> usize {
    1
}

/// How weights are drawn. Biases always take each layer's `bias_init`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Init {
    /// The paper: every weight from N(0, std²), std = 0.01.
    Gaussian { std: f32 },
    /// He et al. 2015: N(0, 2/fan_in), fan_in = in/groups·kh·kw (or in, for a linear layer).
    He,
}

impl Default for Init {
    /// The paper's.
    fn default() -> Self {
        Init::Gaussian { std: 0.01 }
    }
}

/// `--init paper|he`: the paper's N(0, 0.01²) or He's N(0, 2/fan_in).
#[cfg(feature = "cli")]
impl clap::ValueEnum for Init {
    fn value_variants<'a>() -> &'a [Self] {
        &[Init::Gaussian { std: 0.01 }, Init::He]
    }
    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(match self {
            Init::Gaussian { .. } => clap::builder::PossibleValue::new("paper").help("N(0, 0.01²), the paper"),
            Init::He => {
                clap::builder::PossibleValue::new("he").help("N(0, 2/fan_in); pair with --normalize per-channel")
            }
        })
    }
}

/// A network: what a model file holds (README, *Model files*). Unknown fields are errors; `init`
/// defaults to the paper's N(0, 0.01²), `data` to the paper's 256-pixel pipeline, `name` to the
/// file's stem.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    #[serde(default)]
    pub name: String,
    /// `[C, H, W]` of one input image.
    pub input: [usize; 3],
    pub layers: Vec<LayerSpec>,
    #[serde(default)]
    pub init: Init,
    #[serde(default)]
    pub dropout_mode: DropoutMode,
    /// Stored image size, padding and normalisation of the input pipeline.
    #[serde(default)]
    pub data: DataSpec,
}

pub const VARIANTS: [&str; 10] = [
    "paper",
    "paper-1gpu",
    "paper-half",
    "caffenet",
    "torchvision",
    "zfnet",
    "alexnet64",
    "cifar",
    "cifar-half",
    "cifar-4layer",
];

/// The built-in variant whose input fits images of shorter side `side` pixels: `cifar` (32×32
/// input) below 45 px, `alexnet64` (56×56 crops of 64×64) below 128 px, `paper` (227×227 crops
/// of 256×256) above; the bounds are about the geometric means of the neighbouring sizes, so
/// an image is never scaled by more than ~1.4× or ~2× either way to fit.
pub fn variant_for_side(side: usize) -> &'static str {
    match side {
        0..45 => "cifar",
        45..128 => "alexnet64",
        _ => "paper",
    }
}

/// Widths of an AlexNet-shaped network, from which the paper-topology variants are built.
#[derive(Clone, Debug, PartialEq)]
pub struct AlexNetWidths {
    pub conv: [usize; 5],
    pub fc: [usize; 2],
    pub classes: usize,
    pub input: usize,
    /// Groups on conv2, conv4 and conv5 (2 in the paper, 1 on one GPU).
    pub groups: usize,
    /// Pool before LRN (CaffeNet) instead of after it (the paper).
    pub pool_before_norm: bool,
}

impl AlexNetWidths {
    pub fn paper() -> Self {
        Self {
            conv: [96, 256, 384, 384, 256],
            fc: [4096, 4096],
            classes: 1000,
            input: 227,
            groups: 2,
            pool_before_norm: false,
        }
    }
}

fn conv(name: &str, out: usize, kernel: usize, stride: usize, pad: usize, groups: usize, bias_init: f32) -> LayerSpec {
    LayerSpec::Conv { name: name.into(), out, kernel, stride, pad, groups, bias_init }
}
fn linear(name: &str, out: usize, bias_init: f32) -> LayerSpec {
    LayerSpec::Linear { name: name.into(), out, bias_init }
}
fn pool(kernel: usize, stride: usize, pad: usize) -> LayerSpec {
    LayerSpec::MaxPool { kernel, stride, pad }
}

/// conv1..conv5 and fc6..fc8 in the paper's arrangement, biases 1 in conv2, conv4, conv5, fc6,
/// fc7 (section 5), paper init, paper dropout.
pub fn paper_topology(name: &str, w: &AlexNetWidths) -> ModelConfig {
    use LayerSpec::*;
    let lrn = Lrn(LrnParams::paper());
    let norm_pool = |v: &mut Vec<LayerSpec>| {
        if w.pool_before_norm {
            v.extend([pool(3, 2, 0), lrn.clone()]);
        } else {
            v.extend([lrn.clone(), pool(3, 2, 0)]);
        }
    };
    let mut l = vec![conv("conv1", w.conv[0], 11, 4, 0, 1, 0.0), Relu];
    norm_pool(&mut l);
    l.extend([conv("conv2", w.conv[1], 5, 1, 2, w.groups, 1.0), Relu]);
    norm_pool(&mut l);
    l.extend([
        conv("conv3", w.conv[2], 3, 1, 1, 1, 0.0),
        Relu,
        conv("conv4", w.conv[3], 3, 1, 1, w.groups, 1.0),
        Relu,
        conv("conv5", w.conv[4], 3, 1, 1, w.groups, 1.0),
        Relu,
        pool(3, 2, 0),
        Flatten,
        Dropout { p: 0.5 },
        linear("fc6", w.fc[0], 1.0),
        Relu,
        Dropout { p: 0.5 },
        linear("fc7", w.fc[1], 1.0),
        Relu,
        linear("fc8", w.classes, 0.0),
    ]);
    ModelConfig {
        name: name.into(),
        input: [3, w.input, w.input],
        layers: l,
        init: Init::Gaussian { std: 0.01 },
        dropout_mode: DropoutMode::Paper,
        data: DataSpec { stored: 256, pad: 0, normalize: Normalize::PerPixelMean },
    }
}

/// `torchvision.models.alexnet` (the "one weird trick" one-tower net) with given widths.
pub fn torchvision_topology(conv_w: [usize; 5], fc: [usize; 2], classes: usize, input: usize) -> ModelConfig {
    use LayerSpec::*;
    ModelConfig {
        name: "torchvision".into(),
        input: [3, input, input],
        layers: vec![
            conv("conv1", conv_w[0], 11, 4, 2, 1, 0.0),
            Relu,
            pool(3, 2, 0),
            conv("conv2", conv_w[1], 5, 1, 2, 1, 0.0),
            Relu,
            pool(3, 2, 0),
            conv("conv3", conv_w[2], 3, 1, 1, 1, 0.0),
            Relu,
            conv("conv4", conv_w[3], 3, 1, 1, 1, 0.0),
            Relu,
            conv("conv5", conv_w[4], 3, 1, 1, 1, 0.0),
            Relu,
            pool(3, 2, 0),
            AdaptiveAvgPool { out_h: 6, out_w: 6 },
            Flatten,
            Dropout { p: 0.5 },
            linear("fc6", fc[0], 0.0),
            Relu,
            Dropout { p: 0.5 },
            linear("fc7", fc[1], 0.0),
            Relu,
            linear("fc8", classes, 0.0),
        ],
        init: Init::He,
        dropout_mode: DropoutMode::Inverted,
        // torchvision's preprocessing: resize 256, centre-crop 224, ImageNet mean/std.
        data: DataSpec { stored: 256, pad: 0, normalize: Normalize::IMAGENET },
    }
}

impl ModelConfig {
    /// The paper's network (`paper`): 227×227 input, two towers, 1000 classes.
    pub fn paper() -> Self {
        paper_topology("paper", &AlexNetWidths::paper())
    }

    /// A named variant with the ImageNet head (1000 classes; `cifar`: 10).
    pub fn variant(name: &str) -> Result<Self, ConfigError> {
        Ok(match name {
            "paper" => Self::paper(),
            "paper-1gpu" => paper_topology("paper-1gpu", &AlexNetWidths { groups: 1, ..AlexNetWidths::paper() }),
            // Section 3.2's comparison net: "half as many kernels in each convolutional layer
            // trained on one GPU", except conv5 (and the fully connected layers), which the
            // paper kept whole so both nets have about as many parameters.
            "paper-half" => paper_topology(
                "paper-half",
                &AlexNetWidths { conv: [48, 128, 192, 192, 256], groups: 1, ..AlexNetWidths::paper() },
            ),
            "caffenet" => {
                paper_topology("caffenet", &AlexNetWidths { pool_before_norm: true, ..AlexNetWidths::paper() })
            }
            "torchvision" => torchvision_topology([64, 192, 384, 256, 256], [4096, 4096], 1000, 224),
            "zfnet" => zfnet(),
            "alexnet64" => alexnet64(),
            "cifar" => cifar("cifar", [64, 128, 192, 192, 128], 2),
            // Section 3.2's comparison at CIFAR size, built as `paper-half` is: half the kernels
            // of every convolutional layer but conv5, one tower.
            "cifar-half" => cifar("cifar-half", [32, 64, 96, 96, 128], 1),
            "cifar-4layer" => cifar_4layer(),
            other => return Err(ConfigError::UnknownModel(other.into())),
        })
    }

    /// Replaces every ReLU by tanh (the paper's Figure 1 comparison) or back.
    pub fn with_activation(mut self, tanh: bool) -> Self {
        for l in &mut self.layers {
            if matches!(l, LayerSpec::Relu | LayerSpec::Tanh) {
                *l = if tanh { LayerSpec::Tanh } else { LayerSpec::Relu };
            }
        }
        self
    }

    /// Replaces the last linear layer's width (the class count).
    pub fn with_classes(mut self, classes: usize) -> Self {
        if let Some(LayerSpec::Linear { out, .. }) =
            self.layers.iter_mut().rev().find(|l| matches!(l, LayerSpec::Linear { .. }))
        {
            *out = classes;
        }
        self
    }

    /// The paper's GPU towers, as conv1's filters are drawn in blocks (its Figure 3): the groups
    /// of the second convolution, whose groups each read one tower's conv1 channels (1 if none).
    pub fn towers(&self) -> usize {
        self.layers
            .iter()
            .filter_map(|l| match l {
                LayerSpec::Conv { groups, .. } => Some(*groups),
                _ => None,
            })
            .nth(1)
            .unwrap_or(1)
    }

    /// Number of classes: the width of the last layer, which must be linear.
    pub fn classes(&self) -> Result<usize, ConfigError> {
        match self.layers.last() {
            Some(LayerSpec::Linear { out, .. }) => Ok(*out),
            _ => Err(ConfigError::NoClassifier),
        }
    }
}

/// The paper's network for 64×64 images (`alexnet64`): the same eight layers, widths, groups,
/// biases, LRN, overlapping 3×3/2 pools and dropout, with two changes so that the maps keep the
/// paper's proportions on a 56×56 crop of a 64×64 image (the paper: 227 of 256):
/// - conv1 is 5×5 with stride 2 and padding 2 (the paper: 11×11/4 on 227). Its kernel covers
///   9% of the crop's side (the paper's 4.8%), and stride 2 keeps 28×28 maps where stride 4
///   would leave 14×14 before the first pool.
/// - the three pools are padded by 1, so the maps go 28 → 14 → 7 → 4 (the paper: 55 → 27 → 13
///   → 6) and fc6 sees 4×4×256 = 4096 values (the paper: 6×6×256 = 9216).
///
/// 201,048,576 multiply-adds an image (the paper: 724 M) and 39,966,056 parameters with 1000
/// classes (36,688,456 with 200), most of them in fc6 and fc7 as in the paper.
fn alexnet64() -> ModelConfig {
    use LayerSpec::*;
    let lrn = Lrn(LrnParams::paper());
    let mut layers = vec![
        conv("conv1", 96, 5, 2, 2, 1, 0.0),
        Relu,
        lrn.clone(),
        pool(3, 2, 1),
        conv("conv2", 256, 5, 1, 2, 2, 1.0),
        Relu,
        lrn,
        pool(3, 2, 1),
    ];
    let paper = ModelConfig::paper();
    // conv3 to fc8 exactly as the paper's (from conv3 on), bar the last pool's padding.
    let conv3 = paper.layers.iter().position(|l| matches!(l, Conv { name, .. } if name == "conv3")).unwrap_or(0);
    layers.extend(paper.layers[conv3..].iter().cloned().map(|l| match l {
        MaxPool { kernel, stride, .. } => MaxPool { kernel, stride, pad: 1 },
        other => other,
    }));
    ModelConfig {
        name: "alexnet64".into(),
        input: [3, 56, 56],
        layers,
        // 64×64 images stored as they are; random 56×56 crops (centre crop at test).
        data: DataSpec { stored: 64, pad: 0, normalize: Normalize::PerPixelMean },
        ..paper
    }
}

/// Zeiler & Fergus 2013 ("ZFNet"): 7×7/2 conv1, 5×5/2 conv2, 512/1024/512 in conv3–5.
fn zfnet() -> ModelConfig {
    use LayerSpec::*;
    let lrn = Lrn(LrnParams::paper());
    ModelConfig {
        name: "zfnet".into(),
        input: [3, 224, 224],
        layers: vec![
            conv("conv1", 96, 7, 2, 1, 1, 0.0),
            Relu,
            pool(3, 2, 1),
            lrn.clone(),
            conv("conv2", 256, 5, 2, 0, 1, 1.0),
            Relu,
            pool(3, 2, 1),
            lrn,
            conv("conv3", 512, 3, 1, 1, 1, 0.0),
            Relu,
            conv("conv4", 1024, 3, 1, 1, 1, 1.0),
            Relu,
            conv("conv5", 512, 3, 1, 1, 1, 1.0),
            Relu,
            pool(3, 2, 0),
            Flatten,
            Dropout { p: 0.5 },
            linear("fc6", 4096, 1.0),
            Relu,
            Dropout { p: 0.5 },
            linear("fc7", 4096, 1.0),
            Relu,
            linear("fc8", 1000, 0.0),
        ],
        init: Init::Gaussian { std: 0.01 },
        dropout_mode: DropoutMode::Paper,
        data: DataSpec { stored: 256, pad: 0, normalize: Normalize::PerPixelMean },
    }
}

/// A small AlexNet-style net for 32×32 images (cuda-convnet's CIFAR-10 nets in spirit):
/// conv widths `w`, `groups` on conv2, conv4 and conv5 (2: the paper's two towers), dropout
/// layers before fc6 and fc7 at p = 0.
fn cifar(name: &str, w: [usize; 5], groups: usize) -> ModelConfig {
    use LayerSpec::*;
    let lrn = Lrn(LrnParams::paper());
    ModelConfig {
        name: name.into(),
        input: [3, 32, 32],
        layers: vec![
            conv("conv1", w[0], 5, 1, 2, 1, 0.0),
            Relu,
            lrn.clone(),
            pool(3, 2, 1),
            conv("conv2", w[1], 5, 1, 2, groups, 0.1),
            Relu,
            lrn,
            pool(3, 2, 1),
            conv("conv3", w[2], 3, 1, 1, 1, 0.0),
            Relu,
            conv("conv4", w[3], 3, 1, 1, groups, 0.1),
            Relu,
            conv("conv5", w[4], 3, 1, 1, groups, 0.1),
            Relu,
            pool(3, 2, 1),
            Flatten,
            // Dropout layers kept at p = 0, so `--dropout 0.5` gives the paper's regularisation
            // back. Off by default, as in cuda-convnet's CIFAR-10 nets: at the budgets this net
            // trains for (4-30 epochs) it underfits, and dropout cost it 13 points of held-out
            // error after 4 epochs on CIFAR-10 (45.3% with, 32.5% without, seed 0).
            Dropout { p: 0.0 },
            linear("fc6", 512, 0.1),
            Relu,
            Dropout { p: 0.0 },
            linear("fc7", 512, 0.1),
            Relu,
            linear("fc8", 10, 0.0),
        ],
        init: Init::He,
        dropout_mode: DropoutMode::Paper,
        // CIFAR: images stay 32x32; pad 4 and crop 32, per-channel standardisation
        // (He init expects unit-variance inputs).
        data: DataSpec { stored: 32, pad: 4, normalize: Normalize::PerChannel },
    }
}

/// The paper's Figure 1 network: "a four-layer convolutional neural network" on CIFAR-10, as in
/// cuda-convnet's layers-18pct (conv 32, 32, 64 of 5×5, each followed by a 3×3 stride-2 pool,
/// then a fully connected layer to the 10 classes) without its response normalisation and
/// with max pools throughout: nothing but the activation function to compare, and "no
/// regularization of any kind" (no dropout; weight decay and augmentation are the run's flags).
fn cifar_4layer() -> ModelConfig {
    use LayerSpec::*;
    ModelConfig {
        name: "cifar-4layer".into(),
        input: [3, 32, 32],
        layers: vec![
            conv("conv1", 32, 5, 1, 2, 1, 0.0),
            Relu,
            pool(3, 2, 1),
            conv("conv2", 32, 5, 1, 2, 1, 0.0),
            Relu,
            pool(3, 2, 1),
            conv("conv3", 64, 5, 1, 2, 1, 0.0),
            Relu,
            pool(3, 2, 1),
            Flatten,
            linear("fc4", 10, 0.0),
        ],
        init: Init::He,
        dropout_mode: DropoutMode::Paper,
        data: DataSpec { stored: 32, pad: 4, normalize: Normalize::PerChannel },
    }
}
