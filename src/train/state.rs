//! Where a training run stands: enough, with the seed, to resume it exactly. Stored in every
//! training checkpoint.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// The epoch in progress (0-based) and the next batch of it to run.
    pub epoch: usize,
    pub batch_in_epoch: usize,
    /// Optimizer steps taken so far.
    pub step: u64,
    pub lr: f32,
    pub best_val_top1: Option<f64>,
    pub best_epoch: Option<usize>,
    pub epochs_without_improvement: usize,
    pub lr_drops: usize,
    /// Running sums of the epoch in progress (for its metrics line).
    pub epoch_loss_sum: f64,
    pub epoch_correct: u64,
    pub epoch_images: u64,
    pub epoch_seconds: f64,
    /// Wall time of the whole run so far.
    pub elapsed_seconds: f64,
    /// The time-budget schedule's plan: the step its cosine ends at.
    #[serde(default)]
    pub planned_steps: Option<u64>,
}

impl TrainState {
    /// A fresh run at learning rate `lr`.
    pub fn start(lr: f32) -> Self {
        Self { lr, ..Self::default() }
    }

    /// Counts one step of `images` images with mean loss `loss`, `correct` of them right.
    pub fn record_step(&mut self, batch_index: usize, images: usize, loss: f32, correct: usize) {
        self.step += 1;
        self.batch_in_epoch = batch_index + 1;
        self.epoch_loss_sum += loss as f64 * images as f64;
        self.epoch_correct += correct as u64;
        self.epoch_images += images as u64;
    }

    /// Mean training loss and top-1 error of the epoch so far.
    pub fn epoch_loss(&self) -> f64 {
        self.epoch_loss_sum / self.epoch_images.max(1) as f64
    }
    pub fn epoch_top1_error(&self) -> f64 {
        1.0 - self.epoch_correct as f64 / self.epoch_images.max(1) as f64
    }

    /// Moves on to the next epoch, clearing the epoch's running sums.
    pub fn next_epoch(&mut self) {
        self.epoch += 1;
        self.batch_in_epoch = 0;
        self.epoch_loss_sum = 0.0;
        self.epoch_correct = 0;
        self.epoch_images = 0;
        self.epoch_seconds = 0.0;
    }

    /// Records a validation score (lower is better); returns whether it is the best so far.
    pub fn record_score(&mut self, score: f64) -> bool {
        let improved = self.best_val_top1.is_none_or(|b| score < b - 1e-12);
        if improved {
            self.best_val_top1 = Some(score);
            self.best_epoch = Some(self.epoch);
            self.epochs_without_improvement = 0;
        } else {
            self.epochs_without_improvement += 1;
        }
        improved
    }
}
