//! Exchange with other tools: PyTorch's `.pth` files (our own pickle reader, nothing executed)
//! and safetensors in, ONNX and torchvision-keyed safetensors out. One error type.

pub mod import;
pub mod onnx;
pub mod pickle;
pub mod plain;
pub mod torch;

pub use import::{ImportAs, import, torchvision_named};
use std::path::PathBuf;

/// What can go wrong reading or writing another tool's files.
#[derive(Debug, thiserror::Error)]
pub enum InteropError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// The bytes do not follow the format (pickle stream, zip layout, safetensors header).
    #[error("{0}")]
    Format(String),
    /// The file asks for something never done: a pickle global outside `torch.save`'s
    /// state-dict types (which could run code in Python's own unpickler).
    #[error("{0}")]
    Refused(String),
    /// The file exceeds a resource bound (nesting depth, values built, sizes): likely crafted.
    #[error("{0}")]
    Limit(String),
    /// The tensors do not make an AlexNet: unknown, missing or misshapen keys.
    #[error("{0}")]
    Weights(String),
    /// The network cannot be written in the target format.
    #[error("{0}")]
    Export(String),
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    #[error(transparent)]
    Config(#[from] crate::model::ConfigError),
    /// Any of the above, with the file it came from.
    #[error("{path}: {source}")]
    InFile { path: PathBuf, source: Box<InteropError> },
}

impl InteropError {
    /// Names the file, unless the error already does.
    pub fn in_file(self, path: &std::path::Path) -> Self {
        match self {
            e @ (InteropError::Io { .. } | InteropError::InFile { .. } | InteropError::Checkpoint(_)) => e,
            e => InteropError::InFile { path: path.into(), source: Box::new(e) },
        }
    }
}

pub type Result<T, E = InteropError> = std::result::Result<T, E>;

/// A description of what is wrong with the file's content.
impl From<String> for InteropError {
    fn from(problem: String) -> Self {
        InteropError::Format(problem)
    }
}

impl From<&str> for InteropError {
    fn from(problem: &str) -> Self {
        InteropError::Format(problem.into())
    }
}
