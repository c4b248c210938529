//! Plain safetensors files: named f32 tensors with optional string metadata and no model config,
//! for exchange with other tools (`export --safetensors`, `forward`).

use super::{InteropError, Result};
use crate::tensor::{NamedTensor, f32_from_le_bytes, f32_to_le_bytes};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::Path;

/// Writes plain named f32 tensors (with optional metadata) as safetensors.
pub fn write_plain(path: &Path, tensors: &[NamedTensor], meta: HashMap<String, String>) -> Result<()> {
    let owned: Vec<(String, Vec<usize>, Vec<u8>)> =
        tensors.iter().map(|t| (t.name.clone(), t.shape.clone(), f32_to_le_bytes(&t.data))).collect();
    let views = owned
        .iter()
        .map(|(n, s, b)| Ok((n.clone(), TensorView::new(Dtype::F32, s.clone(), b)?)))
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
        .map_err(|e| InteropError::Format(e.to_string()).in_file(path))?;
    crate::files::check_writable(path).map_err(|source| InteropError::Io { path: path.into(), source })?;
    let meta = (!meta.is_empty()).then_some(meta);
    safetensors::serialize_to_file(views, meta, path).map_err(|e| InteropError::Format(e.to_string()).in_file(path))
}

/// Reads one f32 tensor from a safetensors file.
pub fn read_plain(path: &Path, name: &str) -> Result<NamedTensor> {
    let bytes = crate::files::read_regular(path, crate::files::MAX_WEIGHTS_BYTES)
        .map_err(|source| InteropError::Io { path: path.into(), source })?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| InteropError::Format(format!("not a safetensors file: {e}")).in_file(path))?;
    let t = st.tensor(name).map_err(|_| InteropError::Format(format!("no tensor `{name}`")).in_file(path))?;
    if t.dtype() != Dtype::F32 {
        return Err(InteropError::Format(format!("`{name}` is {:?}, expected F32", t.dtype())).in_file(path));
    }
    Ok(NamedTensor::new(name, t.shape().to_vec(), f32_from_le_bytes(t.data())))
}
