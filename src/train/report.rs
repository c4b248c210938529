//! What a run tells the person watching: a progress bar with loss, images/s and ETA, and one
//! line per epoch and per event. Nothing here decides anything.

use super::metrics::EpochMetrics;
use super::state::TrainState;
use indicatif::{ProgressBar, ProgressStyle};

/// A bar for work of unknown length at first (packing a folder): `what [bar] n/N per-s ETA`.
pub fn progress_bar(quiet: bool, what: &str) -> ProgressBar {
    let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(0) };
    bar.set_style(progress_style(&format!("{what} [{{bar:30}}] {{pos}}/{{len}} {{per_sec}} ETA {{eta}}")));
    bar
}

fn progress_style(template: &str) -> ProgressStyle {
    // The templates are constants of this file; a bad one is a bug caught by every test run.
    ProgressStyle::with_template(template).unwrap_or_else(|e| unreachable!("progress template: {e}"))
}

/// The training bar and the lines printed above it.
pub struct Reporter {
    bar: ProgressBar,
    quiet: bool,
    /// Start of the images/s window, images seen since, and the loader's seconds making them.
    window_start: std::time::Instant,
    window_images: usize,
    window_wait_seconds: f64,
}

impl Reporter {
    pub fn new(quiet: bool, batches_per_epoch: usize) -> Self {
        let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(batches_per_epoch as u64) };
        bar.set_style(progress_style("epoch {prefix} [{bar:30}] {pos}/{len} batches {msg} ETA {eta}"));
        Self { bar, quiet, window_start: std::time::Instant::now(), window_images: 0, window_wait_seconds: 0.0 }
    }

    /// A line above the bar.
    pub fn say(&self, msg: &str) {
        if !self.quiet {
            self.bar.suspend(|| println!("{msg}"));
        }
    }

    pub fn start_epoch(&mut self, epoch: usize, epochs: usize, first_batch: usize) {
        self.bar.set_prefix(format!("{}/{epochs}", epoch + 1));
        self.bar.reset();
        self.bar.set_position(first_batch as u64);
        (self.window_start, self.window_images, self.window_wait_seconds) = (std::time::Instant::now(), 0, 0.0);
    }

    /// After each step: the epoch's mean loss, the images/s of the last ~10 s, and the part of
    /// that time spent waiting for data (`waited`: this step's wait for its batch).
    pub fn step(&mut self, state: &TrainState, images: usize, waited: f64) {
        self.window_images += images;
        self.window_wait_seconds += waited;
        let secs = self.window_start.elapsed().as_secs_f64();
        self.bar.set_message(format!(
            "loss {:.3}  {:.0} img/s  data wait {:.0}%",
            state.epoch_loss(),
            self.window_images as f64 / secs.max(1e-9),
            100.0 * self.window_wait_seconds / secs.max(1e-9)
        ));
        self.bar.inc(1);
        if secs > 10.0 {
            (self.window_start, self.window_images, self.window_wait_seconds) = (std::time::Instant::now(), 0, 0.0);
        }
    }

    pub fn epoch_done(&self, m: &EpochMetrics, epochs: usize) {
        let val = match (m.val_loss, m.val_top1_error, m.val_top5_error) {
            (Some(l), Some(t1), Some(t5)) => {
                format!("val loss {l:.4} top-1 err {:5.1}% top-5 err {:5.1}%", 100.0 * t1, 100.0 * t5)
            }
            _ => "no validation".to_string(),
        };
        self.say(&format!(
            "epoch {:>3}/{epochs}  train loss {:.4} top-1 err {:5.1}%  {val}  lr {:.2e}  {:.0} img/s{}  {:.1}s",
            m.epoch + 1,
            m.train_loss,
            100.0 * m.train_top1_error,
            m.lr,
            m.images_per_s,
            match (m.loader_images_per_s, m.data_wait_fraction) {
                (Some(r), Some(w)) => format!(" (loader {r:.0}, data wait {:.0}%)", 100.0 * w),
                _ => String::new(),
            },
            m.epoch_seconds
        ));
    }

    /// The loss sits at ln(classes): every class predicted alike.
    pub fn warn_stuck(&self, train_loss: f64, classes: usize) {
        let ln = (classes as f64).ln();
        self.say(&format!(
            "warning: the training loss ({train_loss:.3}) is still at ln({classes}) = {ln:.3}: the network \
             predicts every class alike. If the first epochs' loss was far above that, the lr overshot and the \
             ReLUs died: try a lower --lr, or the default recipe (no --recipe paper); with the paper's \
             N(0, 0.01) init a slow start can also last several epochs."
        ));
    }

    /// Leaves the bar where it stands (a stop or an error).
    pub fn abandon(&self) {
        self.bar.abandon();
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
