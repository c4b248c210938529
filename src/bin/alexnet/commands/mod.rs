//! One module per command: its flags (`Args`) and what it does (`exec`).

pub mod bench;
pub mod compare;
pub mod eval;
pub mod export;
pub mod features;
pub mod filters;
pub mod forward;
pub mod import;
pub mod neighbors;
pub mod predict;
pub mod prepare;
#[cfg(feature = "serve")]
pub mod serve;
pub mod summary;
pub mod train;
