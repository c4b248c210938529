//! Recipes: the paper's, exactly as printed (section 5), and the default one, which changes the
//! least of it that makes the paper's network train on any image folder in the steps a CPU
//! affords.
//!
//! Why the paper's settings collapse on a 10-class folder: with N(0, 0.01) weights the signal
//! shrinks through the conv stack, so fc7's output is almost the constant vector its biases of 1
//! give it, h7 ≈ (1, …, 1) with ‖h7‖² ≈ 4096, the same for every image. One SGD step on fc8 then
//! moves every class's logit by `lr · ‖h7‖² · (mean p_c − frequency_c)`: with 1000 classes both
//! terms are ~0.001 and the step is harmless; with 10 classes the batch-to-batch fluctuation of
//! the class frequencies (~0.03) times 0.01 · 4096, amplified ~10× by momentum 0.9, swings the
//! logits by ~10 a step. The loss jumps to ~16, the ReLUs die and it sits at ln 10.
//!
//! The default recipe's deviations, each with its published basis (README, *Recipes*, gives the
//! measured effect):
//! - inputs standardised per channel (mean 0, std 1) instead of 0-255 minus the mean image, and
//!   He init, N(0, 2/fan_in) (He et al. 2015), instead of N(0, 0.01): the signal keeps its scale
//!   through all eight layers, so the hidden vectors depend on the image from the first step;
//! - biases of 0.1 where the paper puts 1 (Caffe's bvlc_alexnet): still positive for the ReLUs,
//!   a hundred times less of the constant ‖h7‖² above;
//! - the learning rate ramps linearly from 0 over the first epoch (Goyal et al. 2017), so the
//!   first steps on random weights cannot throw the net out of its working range; over at most
//!   the first 10% of the planned steps, so a short run is not all ramp (the ramp multiplies the
//!   cosine: a one-epoch run under a one-epoch ramp never passes a quarter of the peak lr);
//! - cosine decay to ~0 over the run (Loshchilov & Hutter 2017) instead of drops on a plateau:
//!   over the epochs given, or with `--time-limit` over the steps the measured throughput allows
//!   in that time. A plateau schedule needs tens of epochs to notice a plateau; a CPU budget
//!   has a handful.
//!
//! Everything else is the paper's: the network, batch 128, lr 0.01, momentum 0.9, weight decay
//! 0.0005 in the paper's update rule, dropout 0.5, random 227 crops, flips, PCA colour noise.
//! (Dropout belongs to the model, not the recipe: the `cifar` variants have none by default.)

use super::schedule::Schedule;
use crate::data::Normalize;
use crate::model::ModelConfig;
use crate::model::config::{Init, LayerSpec};
use serde::{Deserialize, Serialize};

/// A training recipe: the model-level settings and the schedule a run starts from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Recipe {
    /// The paper's recipe with the smallest changes that train on any folder (see the module doc).
    #[default]
    Default,
    /// Section 5 exactly: N(0, 0.01) init, biases 1, mean-image subtraction on 0-255 pixels, lr
    /// 0.01 divided by 10 on a plateau of the validation error, no warm-up.
    Paper,
}

/// The default recipe's bias where the paper puts 1 (Caffe's bvlc_alexnet value).
pub const DEFAULT_POSITIVE_BIAS: f32 = 0.1;
/// Epochs over which the default recipe ramps the learning rate up from 0.
pub const DEFAULT_WARMUP_EPOCHS: f32 = 1.0;
/// The largest share of a run's planned steps the default recipe's warm-up may take.
pub const DEFAULT_WARMUP_MAX_FRACTION: f32 = 0.1;

impl Recipe {
    /// The recipe's changes to a model variant's own settings. `Paper` keeps the variant as it is
    /// (for the `paper` family: section 5's). `Default`: He init, per-channel standardisation
    /// (fixed published statistics, e.g. torchvision's, are kept), biases above 0.1 lowered to 0.1.
    pub fn adapt_model(self, mut m: ModelConfig) -> ModelConfig {
        if self == Recipe::Paper {
            return m;
        }
        m.init = Init::He;
        if m.data.normalize == Normalize::PerPixelMean {
            m.data.normalize = Normalize::PerChannel;
        }
        for l in &mut m.layers {
            if let LayerSpec::Conv { bias_init, .. } | LayerSpec::Linear { bias_init, .. } = l {
                *bias_init = bias_init.min(DEFAULT_POSITIVE_BIAS);
            }
        }
        m
    }

    /// The recipe's schedule: the paper's plateau, or cosine over the epochs (over the time
    /// when the run has a time limit).
    pub fn schedule(self, lr: f32, time_limited: bool) -> Schedule {
        match (self, time_limited) {
            (Recipe::Paper, _) => Schedule::default(),
            (Recipe::Default, false) => Schedule::Cosine { min_lr: lr * 1e-3 },
            (Recipe::Default, true) => Schedule::TimeCosine { min_lr: lr * 1e-3 },
        }
    }

    /// Epochs of linear learning-rate warm-up.
    pub fn warmup_epochs(self) -> f32 {
        match self {
            Recipe::Paper => 0.0,
            Recipe::Default => DEFAULT_WARMUP_EPOCHS,
        }
    }

    /// The largest share of the planned steps the warm-up may take. The paper's recipe has no
    /// warm-up; one added to it (`--warmup-epochs`) is bounded the same way.
    pub fn warmup_max_fraction(self) -> f32 {
        DEFAULT_WARMUP_MAX_FRACTION
    }
}

/// Steps of warm-up in a run of `planned_steps`: `epoch_steps` (the warm-up epochs in steps),
/// at most `max_fraction` of the plan (rounded up, so a bounded warm-up still has a step).
pub fn warmup_steps(epoch_steps: u64, max_fraction: f32, planned_steps: u64) -> u64 {
    // Less a hair, so 0.1 (an f32 slightly above a tenth) of 210 is 21 steps, not 22.
    let bound = (f64::from(max_fraction.clamp(0.0, 1.0)) * planned_steps as f64 - 1e-6).ceil() as u64;
    epoch_steps.min(bound.max(1))
}

/// The warm-up factor of step `step` (0-based) of `warmup_steps`: (step+1)/warmup_steps, then 1.
pub fn warmup_factor(step: u64, warmup_steps: u64) -> f32 {
    if step >= warmup_steps { 1.0 } else { (step + 1) as f32 / warmup_steps as f32 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_recipe_keeps_the_paper_model() {
        assert_eq!(Recipe::Paper.adapt_model(ModelConfig::paper()), ModelConfig::paper());
        assert_eq!(Recipe::Paper.schedule(0.01, true), Schedule::default());
        assert_eq!(Recipe::Paper.warmup_epochs(), 0.0);
    }

    #[test]
    fn default_recipe_changes_init_inputs_and_biases_only() {
        let (p, d) = (ModelConfig::paper(), Recipe::Default.adapt_model(ModelConfig::paper()));
        assert_eq!(d.init, Init::He);
        assert_eq!(d.data.normalize, Normalize::PerChannel);
        let biases = |m: &ModelConfig| -> Vec<f32> {
            m.layers
                .iter()
                .filter_map(|l| match l {
                    LayerSpec::Conv { bias_init, .. } | LayerSpec::Linear { bias_init, .. } => Some(*bias_init),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(biases(&p), [0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0]);
        assert_eq!(biases(&d), [0.0, 0.1, 0.0, 0.1, 0.1, 0.1, 0.1, 0.0]);
        // Put those three back: nothing else differs.
        let mut back = d.clone();
        (back.init, back.data.normalize) = (p.init, p.data.normalize);
        for (l, q) in back.layers.iter_mut().zip(&p.layers) {
            if let (
                LayerSpec::Conv { bias_init: a, .. } | LayerSpec::Linear { bias_init: a, .. },
                LayerSpec::Conv { bias_init: b, .. } | LayerSpec::Linear { bias_init: b, .. },
            ) = (l, q)
            {
                *a = *b;
            }
        }
        assert_eq!(back, p);
        // torchvision's fixed ImageNet statistics stay.
        let tv = ModelConfig::variant("torchvision").unwrap();
        assert_eq!(Recipe::Default.adapt_model(tv.clone()).data.normalize, tv.data.normalize);
    }

    #[test]
    fn warmup_is_bounded_by_a_share_of_the_run() {
        // A long run keeps its epoch of warm-up; a one-epoch run ramps over its first tenth.
        assert_eq!(warmup_steps(210, 0.1, 210 * 90), 210);
        assert_eq!(warmup_steps(210, 0.1, 210), 21);
        assert_eq!(warmup_steps(210, 0.1, 205), 21);
        assert_eq!(warmup_steps(210, 1.0, 210), 210);
        assert_eq!(warmup_steps(0, 0.1, 210), 0);
        assert_eq!(warmup_steps(210, 0.1, 3), 1);
        assert_eq!(Recipe::Default.warmup_max_fraction(), DEFAULT_WARMUP_MAX_FRACTION);
    }

    #[test]
    fn warmup_ramps_linearly_then_holds() {
        assert_eq!(warmup_factor(0, 4), 0.25);
        assert_eq!(warmup_factor(3, 4), 1.0);
        assert_eq!(warmup_factor(100, 4), 1.0);
        assert_eq!(warmup_factor(0, 0), 1.0);
    }
}
