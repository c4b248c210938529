//! Files: checkpoints (safetensors), plots (PNG).

pub mod checkpoint;
pub mod import;
pub mod onnx;
pub mod pickle;
pub mod plot;
pub mod torch;

pub use checkpoint::{Checkpoint, TrainState};
