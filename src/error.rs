//! The library's one error type: every fallible call returns [`Error`] (or the narrower error of
//! its module, which converts into it). Messages name the file and the problem.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error(transparent)]
    Config(#[from] crate::model::ConfigError),
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    #[error(transparent)]
    Interop(#[from] crate::interop::InteropError),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// Options that contradict each other or the data.
    #[error("{0}")]
    Invalid(String),
    /// The training loss stopped being finite.
    #[error(
        "the loss became {loss} at epoch {epoch} step {step}: training diverged. Lower the learning rate \
         (now {lr}; try --lr {}), or check the input normalisation. The last checkpoint is {}",
        lr / 10.0,
        last.display()
    )]
    Diverged { loss: f32, epoch: usize, step: u64, lr: f32, last: PathBuf },
    #[error("cannot start the thread pool: {0}")]
    Threads(#[from] rayon::ThreadPoolBuildError),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
