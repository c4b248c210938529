//! The named links between a packed image set and the network's batches: which images train
//! and which validate ([`Splits`]), in what order ([`permutation`]), how one stored image
//! becomes one input ([`TrainInput`]), and how batches are served ([`LoaderOptions`]). Training
//! and the loader benchmark both build their batches from these.

use super::augment::{Augment, Normalizer, train_sample};
use super::cache::PackedImages;
use super::loader::{Loader, MakeInput};
use super::{ClassInfo, DataSpec, DataStats};
use crate::rng;
use std::sync::Arc;

/// A permutation of `0..n` (Fisher–Yates driven by the counter RNG).
pub fn permutation(n: usize, seed: u64) -> Vec<u32> {
    let mut p: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        let j = (rng::splitmix64(seed ^ rng::splitmix64(i as u64)) % (i as u64 + 1)) as usize;
        p.swap(i, j);
    }
    p
}

/// Classes of a data set that a model does not know (their ids).
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("classes not known to the model: {}", .0.join(", "))]
pub struct UnknownClasses(pub Vec<String>);

/// Why a data set cannot be split as asked.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SplitError {
    #[error(transparent)]
    UnknownClasses(#[from] UnknownClasses),
    #[error("--val-split {0} leaves no training images")]
    NoTrainingImages(f32),
}

/// Maps the data's class ids onto the model's output indices; a class the model does not know
/// is an error naming it.
pub fn class_map(data: &[ClassInfo], model: &[ClassInfo]) -> Result<Vec<usize>, UnknownClasses> {
    let mut missing = Vec::new();
    let map = data
        .iter()
        .map(|c| {
            model.iter().position(|m| m.id == c.id).unwrap_or_else(|| {
                missing.push(c.id.clone());
                0
            })
        })
        .collect();
    if missing.is_empty() { Ok(map) } else { Err(UnknownClasses(missing)) }
}

/// Images to validate on: which of `images`, and where their labels land among the outputs.
pub struct ValSet {
    pub images: Arc<PackedImages>,
    pub indices: Vec<u32>,
    /// Data label -> model output index.
    pub class_map: Vec<usize>,
}

/// A split as a run folder keeps it (`split.json`): later commands that take the run's held-out
/// images check they are still the same ones.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SplitRecord {
    pub training: usize,
    pub held_out: usize,
    /// sha256 of the training then the held-out image indices with their labels.
    pub digest: String,
}

/// The training images (a subset of `train`) and the validation images, if any.
pub struct Splits {
    pub train: Arc<PackedImages>,
    pub train_indices: Vec<u32>,
    pub val: Option<ValSet>,
}

impl Splits {
    /// `val` when given (its classes mapped onto the training set's), else `val_split` of
    /// `train` held out by a permutation of `seed`. The caller names the files in errors.
    pub fn new(
        train: Arc<PackedImages>,
        val: Option<Arc<PackedImages>>,
        val_split: f32,
        seed: u64,
    ) -> Result<Self, SplitError> {
        let all: Vec<u32> = (0..train.count as u32).collect();
        if let Some(v) = val {
            let map = class_map(&v.classes, &train.classes)?;
            let indices = (0..v.count as u32).collect();
            return Ok(Splits { train, train_indices: all, val: Some(ValSet { images: v, indices, class_map: map }) });
        }
        let n_val = ((train.count as f64) * val_split as f64).round() as usize;
        if n_val == 0 {
            return Ok(Splits { train, train_indices: all, val: None });
        }
        if n_val >= train.count {
            return Err(SplitError::NoTrainingImages(val_split));
        }
        let perm = permutation(train.count, rng::mix(&[seed, 0x5_911]));
        let (tr, va) = perm.split_at(train.count - n_val);
        let (mut tr, mut va) = (tr.to_vec(), va.to_vec());
        tr.sort_unstable();
        va.sort_unstable();
        let class_map = (0..train.classes.len()).collect();
        Ok(Splits { val: Some(ValSet { images: train.clone(), indices: va, class_map }), train, train_indices: tr })
    }

    /// What the split is, to find it again: the image counts and a digest of which images
    /// train and which are held out, with their labels.
    pub fn record(&self) -> SplitRecord {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        let mut put = |set: &PackedImages, idx: &[u32], tag: u8| {
            h.update([tag]);
            for &i in idx {
                h.update(i.to_le_bytes());
                h.update(set.labels[i as usize].to_le_bytes());
            }
        };
        put(&self.train, &self.train_indices, 0);
        if let Some(v) = &self.val {
            put(&v.images, &v.indices, 1);
        }
        SplitRecord {
            training: self.train_indices.len(),
            held_out: self.val.as_ref().map_or(0, |v| v.indices.len()),
            digest: h.finalize().iter().map(|b| format!("{b:02x}")).collect(),
        }
    }

    /// Statistics of exactly the training images.
    pub fn train_stats(&self) -> Result<DataStats, super::DataError> {
        if self.train_indices.len() == self.train.count {
            Ok(self.train.stats.clone())
        } else {
            self.train.stats_of(&self.train_indices)
        }
    }
}

/// How a stored training image becomes a network input: normalised, augmented, cropped.
pub struct TrainInput {
    pub norm: Normalizer,
    pub augment: Augment,
    /// Network input side.
    pub crop: usize,
    /// Zero padding around the stored image before cropping.
    pub pad: usize,
    pub seed: u64,
}

impl TrainInput {
    pub fn new(spec: &DataSpec, stats: &DataStats, augment: Augment, crop: usize, seed: u64) -> Self {
        Self { norm: Normalizer::new(spec, stats), augment, crop, pad: spec.pad, seed }
    }

    /// Values per input.
    pub fn input_len(&self) -> usize {
        3 * self.crop * self.crop
    }

    /// The loader's per-image function for `epoch`: image `i`'s crop, flip and colour noise
    /// are a function of `(seed, epoch, i)` alone.
    pub fn for_epoch(self: &Arc<Self>, epoch: usize) -> Arc<MakeInput> {
        let t = self.clone();
        Arc::new(move |img: &[u8], i: usize, out: &mut [f32]| {
            let s = rng::mix(&[t.seed, epoch as u64, i as u64, 0xa06]);
            train_sample(img, &t.norm, &t.augment, t.crop, t.pad, s, out)
        })
    }
}

/// How batches are served.
#[derive(Clone, Copy, Debug)]
pub struct LoaderOptions {
    pub batch: usize,
    /// Skip the first `start_batch` batches (resuming mid-epoch).
    pub start_batch: usize,
    /// Serve the last partial batch too.
    pub keep_last: bool,
    /// Batches each worker prepares ahead of the network.
    pub prefetch: usize,
    /// Threads reading, decoding and augmenting (`--loader-threads`; the batches are the same
    /// whatever their number).
    pub workers: usize,
}

impl LoaderOptions {
    pub fn new(batch: usize) -> Self {
        Self { batch, start_batch: 0, keep_last: false, prefetch: 3, workers: 1 }
    }

    /// Serves `order` of `images`, each made by `input` for `epoch`, on background threads.
    pub fn spawn(&self, images: Arc<PackedImages>, order: Vec<u32>, input: &Arc<TrainInput>, epoch: usize) -> Loader {
        Loader::spawn(images, order, *self, input.input_len(), input.for_epoch(epoch))
    }
}
