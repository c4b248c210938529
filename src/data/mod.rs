//! Data: image folders and IDX files in, a compact packed cache, augmentation, and background
//! loaders handing out batches. Nothing here knows about the model beyond a [`DataSpec`].

pub mod augment;
pub mod cache;
pub mod folder;
pub mod idx;
pub mod ilsvrc;
pub mod image;
pub mod imagenet;
pub mod loader;
pub mod matfile;
pub mod pipeline;
pub mod source;
pub mod stats;
pub mod store;

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use thiserror::Error;

pub use augment::{Augment, AugmentOptions, Normalizer, PcaSource, ten_crop};
pub use cache::PackedImages;
pub use folder::ImageFolder;
pub use pipeline::{
    LoaderOptions, SplitError, SplitRecord, Splits, TrainInput, UnknownClasses, ValSet, class_map, permutation,
};
pub use stats::DataStats;
pub use store::CacheStore;

#[derive(Debug, Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: empty file (0 bytes)")]
    EmptyFile { path: PathBuf },
    #[error("{path}: not an image (unrecognised content; JPEG and PNG are supported)")]
    NotImage { path: PathBuf },
    #[error("{path}: cannot decode image: {reason}")]
    Decode { path: PathBuf, reason: String },
    /// The header claims more pixels than the decoder may allocate (a decompression bomb).
    #[error(
        "{path}: cannot decode image: claims {width}x{height} pixels ({:.0} megapixels), more than the limit of {:.0} (--max-megapixels)",
        *width as f64 * *height as f64 / 1e6,
        *limit as f64 / 1e6
    )]
    TooManyPixels { path: PathBuf, width: u32, height: u32, limit: u64 },
    #[error("{path}: {problem}")]
    Layout { path: PathBuf, problem: String },
    #[error("{path}: not a valid IDX file: {problem}")]
    Idx { path: PathBuf, problem: String },
    #[error("{path}: not a usable cache: {problem}")]
    Cache { path: PathBuf, problem: String },
}

impl DataError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io { path: path.into(), source }
    }
    pub fn layout(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        DataError::Layout { path: path.into(), problem: problem.into() }
    }
}

/// A class: its id (folder name, WordNet id) and a human name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassInfo {
    pub id: String,
    pub name: String,
}

/// How the model's input normalisation is computed.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Normalize {
    /// The paper: subtract the mean image of the training set, pixel by pixel (0-255 units).
    PerPixelMean,
    /// Subtract the training set's per-channel mean and divide by its per-channel std.
    PerChannel,
    /// Fixed statistics on 0-255 values, e.g. torchvision's ImageNet mean/std.
    Fixed { mean: [f32; 3], std: [f32; 3] },
}

impl Normalize {
    /// torchvision's preset: mean 0.485/0.456/0.406, std 0.229/0.224/0.225 on 0-1 RGB.
    pub const IMAGENET: Normalize = Normalize::Fixed { mean: imagenet::MEAN, std: imagenet::STD };
}

/// `--normalize per-pixel-mean|per-channel|imagenet`.
#[cfg(feature = "cli")]
impl clap::ValueEnum for Normalize {
    fn value_variants<'a>() -> &'a [Self] {
        &[Normalize::PerPixelMean, Normalize::PerChannel, Normalize::IMAGENET]
    }
    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        use clap::builder::PossibleValue;
        Some(match self {
            Normalize::PerPixelMean => PossibleValue::new("per-pixel-mean").help("subtract the mean image (the paper)"),
            Normalize::PerChannel => {
                PossibleValue::new("per-channel").help("per-channel mean and std: unit-variance inputs, for He init")
            }
            Normalize::Fixed { .. } => PossibleValue::new("imagenet").help("torchvision's ImageNet mean and std"),
        })
    }
}

/// Image sizes and normalisation: part of a model's configuration.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataSpec {
    /// Images are resized (shorter side) and centre-cropped to `stored × stored` (the paper: 256).
    pub stored: usize,
    /// Zero padding (after normalisation) around the stored image before random crops (CIFAR's
    /// pad-and-crop; 0 for the paper).
    pub pad: usize,
    pub normalize: Normalize,
}

impl Default for DataSpec {
    fn default() -> Self {
        Self { stored: 256, pad: 0, normalize: Normalize::PerPixelMean }
    }
}
