//! The layers' kernels: each file is one kind of layer, a forward and a backward over plain
//! slices, with its formula and shapes in the doc comment. Nothing here knows about files,
//! models or training; `crate::model::layer` calls them, one `Layer` per kind.

pub mod act;
pub mod conv;
pub mod dropout;
pub mod fft;
pub mod linear;
pub mod loss;
pub mod lrn;
pub mod polyphase;
pub mod pool;
pub mod winograd;
