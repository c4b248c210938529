//! The model: configs (the variants as data), shape planning and the layer table, init, and
//! the run-time network with its forward and backward passes.

pub mod config;
pub mod init;
pub mod net;
pub mod summary;

pub use config::{AlexNetWidths, ConfigError, Init, LayerSpec, ModelConfig, VARIANTS};
pub use net::{Mode, Network, Param};
pub use summary::{LayerInfo, Summary, plan};
