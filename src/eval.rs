//! Evaluation: top-1 and top-5 error from the centre crop or the paper's ten crops, with the
//! softmax averaged over crops and over the members of an ensemble (section 6 of the paper).

use crate::data::augment::{Normalizer, center_crop, ten_crop};
use crate::data::{ClassInfo, PackedImages};
use crate::kernels::loss::softmax;
use crate::model::{Mode, Network};
use rayon::prelude::*;
use serde::Serialize;

/// One network of an ensemble with its own input pipeline.
pub struct Member {
    pub net: Network,
    pub norm: Normalizer,
    /// Input side (the network's H = W).
    pub crop: usize,
}

impl Member {
    pub fn new(net: Network, norm: Normalizer) -> Self {
        let crop = net.config.input[1];
        Self { net, norm, crop }
    }

    /// Class probabilities `[n, classes]` for `images` (HWC bytes at the normaliser's size),
    /// averaged over the ten crops if asked. Processes `batch` network inputs at a time.
    pub fn probabilities(&mut self, images: &[&[u8]], ten: bool, batch: usize) -> Vec<f32> {
        let crops = if ten { 10 } else { 1 };
        let classes = self.net.classes();
        let len = self.net.input_len();
        let per_call = (batch / crops).max(1);
        let mut out = Vec::with_capacity(images.len() * classes);
        for chunk in images.chunks(per_call) {
            let mut x = vec![0.0f32; chunk.len() * crops * len];
            let (norm, crop) = (&self.norm, self.crop);
            x.par_chunks_mut(crops * len).zip(chunk.par_iter()).for_each(|(dst, img)| {
                if ten { ten_crop(img, norm, crop, dst) } else { center_crop(img, norm, crop, dst) }
            });
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

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct EvalResult {
    pub images: usize,
    pub top1_error: f64,
    pub top5_error: f64,
    /// Mean cross-entropy of the averaged probabilities.
    pub loss: f64,
}

/// Whether `label` is among the `k` highest of `p` (ties counted against us: a class scoring
/// the same as the true one and listed before it takes the slot).
pub fn in_top_k(p: &[f32], label: usize, k: usize) -> bool {
    let v = p[label];
    let above = p.iter().enumerate().filter(|&(i, &q)| q > v || (q == v && i < label)).count();
    above < k
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

/// Maps the data's class ids onto the model's output indices; an unknown class is an error.
pub fn class_map(data: &[ClassInfo], model: &[ClassInfo]) -> Result<Vec<usize>, String> {
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
    if missing.is_empty() { Ok(map) } else { Err(format!("classes not known to the model: {}", missing.join(", "))) }
}

/// Evaluates an ensemble on `indices` of `images`; `map` sends data labels to model outputs.
/// `progress` is called with the number of images done after each chunk.
pub fn evaluate(
    members: &mut [Member],
    images: &PackedImages,
    indices: &[u32],
    map: &[usize],
    ten: bool,
    batch: usize,
    progress: &dyn Fn(usize),
) -> EvalResult {
    let classes = members[0].net.classes();
    let mut probs = vec![0.0f32; indices.len() * classes];
    let mut labels = Vec::with_capacity(indices.len());
    for chunk_ids in indices.chunks(256) {
        let imgs: Vec<&[u8]> = chunk_ids.iter().map(|&i| images.image(i as usize)).collect();
        labels.extend(chunk_ids.iter().map(|&i| map[images.labels[i as usize] as usize]));
        let offset = (labels.len() - chunk_ids.len()) * classes;
        for m in members.iter_mut() {
            let p = m.probabilities(&imgs, ten, batch);
            probs[offset..offset + p.len()].iter_mut().zip(&p).for_each(|(a, &b)| *a += b);
        }
        progress(labels.len());
    }
    let k = members.len() as f32;
    probs.iter_mut().for_each(|v| *v /= k);
    score(&probs, &labels, classes)
}

/// An ensemble loaded from checkpoint files; all must share one class list and stored size.
pub struct Ensemble {
    pub members: Vec<Member>,
    pub classes: Vec<ClassInfo>,
    /// Stored image side the members' inputs are cropped from.
    pub stored: usize,
}

impl Ensemble {
    pub fn load(paths: &[std::path::PathBuf]) -> anyhow::Result<Self> {
        use anyhow::{Context, bail};
        let mut members = Vec::new();
        let mut classes: Option<Vec<ClassInfo>> = None;
        let mut stored = 0;
        for p in paths {
            let ck = crate::io::Checkpoint::load(p).with_context(|| format!("loading weights {}", p.display()))?;
            let spec = ck.config.data;
            if let Some(c) = &classes {
                if *c != ck.classes {
                    bail!("{}: its classes differ from those of {}", p.display(), paths[0].display());
                }
                if spec.stored != stored {
                    bail!(
                        "{}: expects {}px images, {} expects {stored}px",
                        p.display(),
                        spec.stored,
                        paths[0].display()
                    );
                }
            }
            stored = spec.stored;
            let norm = crate::data::augment::Normalizer::new(&spec, &ck.stats);
            classes = Some(ck.classes.clone());
            members.push(Member::new(ck.network(), norm));
        }
        let Some(classes) = classes else { bail!("no --weights given") };
        Ok(Self { members, classes, stored })
    }

    /// Averaged class probabilities of decoded `stored × stored` images.
    pub fn probabilities(&mut self, images: &[&[u8]], ten: bool, batch: usize) -> Vec<f32> {
        let k = self.members.len() as f32;
        let mut acc: Vec<f32> = Vec::new();
        for m in &mut self.members {
            let p = m.probabilities(images, ten, batch);
            if acc.is_empty() {
                acc = p;
            } else {
                acc.iter_mut().zip(&p).for_each(|(a, b)| *a += b);
            }
        }
        acc.iter_mut().for_each(|v| *v /= k);
        acc
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
            idx.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
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
