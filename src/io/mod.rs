//! Files: checkpoints (safetensors), plots (PNG).

pub mod checkpoint;
pub mod plot;

pub use checkpoint::{Checkpoint, TrainState};
