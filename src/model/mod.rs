//! The model: configs (the variants as data), the plan (shapes, parameters, multiply-adds, from
//! the config alone), init, the typed layers and the network with its forward and backward
//! passes and its training step.

pub mod changes;
pub mod config;
pub mod file;
pub mod init;
pub mod layer;
pub mod net;
pub mod plan;

pub use changes::ModelChanges;
pub use config::{AlexNetWidths, ConfigError, Init, LayerSpec, ModelConfig, VARIANTS, variant_for_side};
pub use file::ModelFormat;
pub use layer::{Layer, Mode, Param};
pub use net::{LayerTime, Network, StepResult};
pub use plan::{LayerInfo, LayerKind, ParamSpec, Summary, plan};
