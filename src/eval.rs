//! Evaluation: top-1 and top-5 error from the centre crop or the paper's ten crops, with the
//! softmax averaged over crops and over the members of an ensemble (section 6 of the paper).

use crate::checkpoint::Checkpoint;
use crate::data::augment::{Normalizer, center_crop, ten_crop};
use crate::data::{ClassInfo, PackedImages};
use crate::error::{Error, Result};
pub use crate::kernels::loss::in_top_k;
use crate::kernels::loss::softmax;
use crate::model::{Mode, Network};
use rayon::prelude::*;
use serde::Serialize;
use std::path::PathBuf;

/// A network with its input pipeline, borrowed for evaluation (the training loop validates its
/// own network through one).
pub struct Classifier<'a> {
    pub net: &'a mut Network,
    pub norm: &'a Normalizer,
    /// Input side (the network's H = W).
    pub crop: usize,
}

impl<'a> Classifier<'a> {
    pub fn new(net: &'a mut Network, norm: &'a Normalizer) -> Self {
        let crop = net.config.input[1];
        Self { net, norm, crop }
    }

    /// Class probabilities `[n, classes]` for `images` (HWC bytes at the normaliser's size),
    /// averaged over the ten crops if asked. Processes `batch` network inputs at a time.
    pub fn probabilities(&mut self, images: &[&[u8]], ten: bool, batch: usize) -> Vec<f32> {
        let crops = if ten { 10 } else { 1 };
        let classes = self.net.classes();
        let per_call = (batch / crops).max(1);
        let mut out = Vec::with_capacity(images.len() * classes);
        for chunk in images.chunks(per_call) {
            let x = test_crops(chunk, self.norm, self.crop, ten);
            let logits = self.net.forward(&x, chunk.len() * crops, Mode::Eval);
            let p = softmax(logits, classes);
            for img in p.chunks(crops * classes) {
                let mut avg = vec![0.0f32; classes];
                for c in img.chunks(classes) {
                    avg.iter_mut().zip(c).for_each(|(a, &v)| *a += v / crops as f32);
                }
                out.extend(avg);
            }
        }
        out
    }
}

/// The network inputs of `images` (stored-size HWC bytes): each image's centre crop, or its
/// ten crops one after another, `[n·crops, 3, crop, crop]`; images in parallel.
pub fn test_crops(images: &[&[u8]], norm: &Normalizer, crop: usize, ten: bool) -> Vec<f32> {
    let per = if ten { 10 } else { 1 } * 3 * crop * crop;
    let mut x = vec![0.0f32; images.len() * per];
    x.par_chunks_mut(per)
        .zip(images.par_iter())
        .for_each(|(dst, img)| if ten { ten_crop(img, norm, crop, dst) } else { center_crop(img, norm, crop, dst) });
    x
}

/// The members' probabilities for `images`, averaged (section 6: "averaging the predictions of
/// several CNNs").
pub fn average_probabilities(members: &mut [Classifier<'_>], images: &[&[u8]], ten: bool, batch: usize) -> Vec<f32> {
    let mut acc: Vec<f32> = Vec::new();
    for m in members.iter_mut() {
        let p = m.probabilities(images, ten, batch);
        if acc.is_empty() {
            acc = p;
        } else {
            acc.iter_mut().zip(&p).for_each(|(a, b)| *a += b);
        }
    }
    let k = members.len() as f32;
    acc.iter_mut().for_each(|v| *v /= k);
    acc
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct EvalResult {
    pub images: usize,
    pub top1_error: f64,
    pub top5_error: f64,
    /// Mean cross-entropy of the averaged probabilities.
    pub loss: f64,
}

/// Scores averaged probabilities against labels.
pub fn score(probs: &[f32], labels: &[usize], classes: usize) -> EvalResult {
    let n = labels.len();
    let (mut t1, mut t5, mut loss) = (0usize, 0usize, 0.0f64);
    for (p, &y) in probs.chunks(classes).zip(labels) {
        t1 += in_top_k(p, y, 1) as usize;
        t5 += in_top_k(p, y, 5.min(classes)) as usize;
        loss -= (p[y].max(1e-12) as f64).ln();
    }
    let d = n.max(1) as f64;
    EvalResult { images: n, top1_error: 1.0 - t1 as f64 / d, top5_error: 1.0 - t5 as f64 / d, loss: loss / d }
}

/// Evaluates an ensemble on `indices` of `images`; `map` sends data labels to model outputs.
/// `progress` is called with the number of images done after each chunk.
pub fn evaluate(
    members: &mut [Classifier<'_>],
    images: &PackedImages,
    indices: &[u32],
    map: &[usize],
    ten: bool,
    batch: usize,
    progress: &dyn Fn(usize),
) -> std::result::Result<EvalResult, crate::data::DataError> {
    let classes = members[0].net.classes();
    let mut probs = Vec::with_capacity(indices.len() * classes);
    let mut labels = Vec::with_capacity(indices.len());
    for chunk_ids in indices.chunks(256) {
        let owned = chunk_ids.iter().map(|&i| images.image(i as usize)).collect::<std::result::Result<Vec<_>, _>>()?;
        let imgs: Vec<&[u8]> = owned.iter().map(|c| &c[..]).collect();
        labels.extend(chunk_ids.iter().map(|&i| map[images.labels[i as usize] as usize]));
        probs.extend(average_probabilities(members, &imgs, ten, batch));
        progress(labels.len());
    }
    Ok(score(&probs, &labels, classes))
}

/// A network with the input pipeline it was trained with: one member of an ensemble.
pub struct Member {
    pub net: Network,
    pub norm: Normalizer,
}

/// An ensemble loaded from checkpoint files; all must share one class list and stored size.
pub struct Ensemble {
    pub members: Vec<Member>,
    pub classes: Vec<ClassInfo>,
    /// Stored image side the members' inputs are cropped from.
    pub stored: usize,
}

impl Ensemble {
    pub fn load(paths: &[PathBuf]) -> Result<Self> {
        let mut members = Vec::new();
        let mut classes: Option<Vec<ClassInfo>> = None;
        let mut stored = 0;
        for p in paths {
            let ck = Checkpoint::load(p)?;
            let spec = ck.config.data;
            if let Some(c) = &classes {
                if *c != ck.classes {
                    return Err(Error::Invalid(format!(
                        "{}: its classes differ from those of {}",
                        p.display(),
                        paths[0].display()
                    )));
                }
                if spec.stored != stored {
                    return Err(Error::Invalid(format!(
                        "{}: expects {}px images, {} expects {stored}px",
                        p.display(),
                        spec.stored,
                        paths[0].display()
                    )));
                }
            }
            stored = spec.stored;
            let norm = Normalizer::new(&spec, &ck.stats);
            classes = Some(ck.classes.clone());
            members.push(Member { net: ck.network()?, norm });
        }
        let Some(classes) = classes else { return Err(Error::Invalid("no --weights given".into())) };
        Ok(Self { members, classes, stored })
    }

    /// The members, borrowed for [`evaluate`] or [`average_probabilities`].
    pub fn classifiers(&mut self) -> Vec<Classifier<'_>> {
        self.members.iter_mut().map(|m| Classifier::new(&mut m.net, &m.norm)).collect()
    }

    /// Averaged class probabilities of decoded `stored × stored` images.
    pub fn probabilities(&mut self, images: &[&[u8]], ten: bool, batch: usize) -> Vec<f32> {
        average_probabilities(&mut self.classifiers(), images, ten, batch)
    }
}

/// One prediction: the top classes of an image with their probabilities.
#[derive(Clone, Debug, Serialize)]
pub struct Prediction {
    pub image: String,
    pub top: Vec<ClassScore>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ClassScore {
    pub index: usize,
    pub id: String,
    pub name: String,
    pub probability: f32,
}

/// The `k` most probable classes of each row of `probs`.
pub fn top_k(probs: &[f32], classes: &[ClassInfo], k: usize) -> Vec<Vec<ClassScore>> {
    probs
        .chunks(classes.len())
        .map(|p| {
            let mut idx: Vec<usize> = (0..p.len()).collect();
            // Highest first; NaN (a broken network) last, not first as `total_cmp` would put it.
            let key = |i: usize| if p[i].is_nan() { f32::NEG_INFINITY } else { p[i] };
            idx.sort_by(|&a, &b| key(b).total_cmp(&key(a)).then(a.cmp(&b)));
            idx.into_iter()
                .take(k)
                .map(|i| ClassScore {
                    index: i,
                    id: classes[i].id.clone(),
                    name: classes[i].name.clone(),
                    probability: p[i],
                })
                .collect()
        })
        .collect()
}
