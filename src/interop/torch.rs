//! Reading tensors from files PyTorch writes: `torch.save` in the zip format (PyTorch >= 1.6)
//! and in the legacy format (a sequence of pickles followed by raw storages, as torchvision's
//! published `alexnet-owt-7be5be79.pth` is), and plain safetensors.

use super::pickle::{self, TensorRef, Value};
use super::{InteropError, Result};
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

/// A named tensor as f32, in file order.
pub type Named = crate::tensor::NamedTensor;

fn elem_size(kind: &str) -> Result<usize> {
    Ok(match kind {
        "FloatStorage" => 4,
        "DoubleStorage" => 8,
        "HalfStorage" | "BFloat16Storage" => 2,
        k => return Err(InteropError::Format(format!("tensors of {k} are not supported (floating point only)"))),
    })
}

fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match exp {
        0 if frac == 0 => sign,
        0 => {
            // Subnormal: renormalise.
            let shift = frac.leading_zeros() - 21;
            sign | ((127 - 15 + 1 - shift) << 23) | ((frac << shift) & 0x3ff) << 13
        }
        31 => sign | 0x7f80_0000 | (frac << 13),
        e => sign | ((e + 127 - 15) << 23) | (frac << 13),
    };
    f32::from_bits(bits)
}

/// Decodes `numel` elements of storage kind `kind` from little-endian bytes.
fn decode(kind: &str, bytes: &[u8]) -> Result<Vec<f32>> {
    Ok(match kind {
        "FloatStorage" => bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4"))).collect(),
        "DoubleStorage" => bytes.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8")) as f32).collect(),
        "HalfStorage" => bytes.chunks_exact(2).map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]]))).collect(),
        "BFloat16Storage" => {
            bytes.chunks_exact(2).map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16)).collect()
        }
        k => return Err(InteropError::Format(format!("unsupported storage {k}"))),
    })
}

/// Materialises a (contiguous) tensor view from its storage's values.
fn view(t: &TensorRef, storage: &[f32], name: &str) -> Result<Vec<f32>> {
    let n: usize = t.shape.iter().product();
    // Row-major strides of this shape; size-1 dimensions may carry any stride.
    let mut expect = 1;
    for (&d, &s) in t.shape.iter().zip(&t.stride).rev() {
        if d != 1 && s != expect {
            return Err(InteropError::Format(format!(
                "{name}: non-contiguous tensor (shape {:?}, stride {:?})",
                t.shape, t.stride
            )));
        }
        expect *= d;
    }
    storage.get(t.offset..t.offset + n).map(|s| s.to_vec()).ok_or_else(|| {
        InteropError::Format(format!(
            "{name}: view [{}, {}) outside its storage of {}",
            t.offset,
            t.offset + n,
            storage.len()
        ))
    })
}

/// The state dict: the top-level dict, or a `state_dict` / `model` entry of a training checkpoint.
fn state_dict(v: Value) -> Result<Vec<(String, TensorRef)>> {
    let Value::Dict(items) = v else { return Err("the file does not hold a dict of tensors".into()) };
    if !items.iter().any(|(_, v)| matches!(v, Value::Tensor(_))) {
        for (k, v) in &items {
            if let Value::Str(k) = k
                && (k == "state_dict" || k == "model")
                && let Value::Dict(_) = v
            {
                return state_dict(v.clone());
            }
        }
    }
    let mut out = Vec::new();
    for (k, v) in items {
        let Value::Str(k) = k else { continue };
        match v {
            Value::Tensor(t) => out.push((k, t)),
            // Non-tensor entries (e.g. BatchNorm's num_batches_tracked is a tensor; version
            // numbers are not) are not parameters.
            _ => continue,
        }
    }
    Ok(out)
}

fn read_zip(path: &Path, bytes: &[u8]) -> Result<Vec<Named>> {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| format!("bad zip archive: {e}"))?;
    let names: Vec<String> = z
        .file_names()
        .map(|n| n.map(|n| n.into_owned()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad zip archive: {e}"))?;
    let pkl =
        names.iter().find(|n| n.ends_with("/data.pkl") || *n == "data.pkl").ok_or("no data.pkl in the archive")?;
    let prefix = pkl.trim_end_matches("data.pkl").to_string();
    let mut read = |name: &str| -> Result<Vec<u8>> {
        let mut f = z.by_name(name).map_err(|e| format!("{name}: {e}"))?;
        let mut b = Vec::new();
        f.read_to_end(&mut b).map_err(|e| format!("{name}: {e}"))?;
        Ok(b)
    };
    let (v, _) = pickle::load(&read(pkl)?)?;
    let dict = state_dict(v)?;
    let mut storages: HashMap<String, Vec<f32>> = HashMap::new();
    let mut out = Vec::new();
    for (k, t) in dict {
        if !storages.contains_key(&t.storage.key) {
            let raw = read(&format!("{prefix}data/{}", t.storage.key))?;
            let need = t.storage.numel * elem_size(&t.storage.kind)?;
            if raw.len() < need {
                return Err(InteropError::Format(format!(
                    "{}: storage {} holds {} bytes, needs {need}",
                    path.display(),
                    t.storage.key,
                    raw.len()
                )));
            }
            storages.insert(t.storage.key.clone(), decode(&t.storage.kind, &raw[..need])?);
        }
        let data = view(&t, &storages[&t.storage.key], &k)?;
        out.push(Named::new(k, t.shape.clone(), data));
    }
    Ok(out)
}

fn read_legacy(bytes: &[u8]) -> Result<Vec<Named>> {
    let mut pos = 0;
    let mut next = |what: &str| -> Result<Value> {
        let (v, n) = pickle::load(&bytes[pos..]).map_err(|e| format!("{what}: {e}"))?;
        pos += n;
        Ok(v)
    };
    // torch.serialization's MAGIC_NUMBER 0x1950a86a20f9469cfc6c, little-endian.
    const MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
    if next("magic number")? != Value::BigInt(MAGIC.to_vec()) {
        return Err("not a PyTorch file (bad magic number)".into());
    }
    let _protocol = next("protocol version")?;
    let _sys_info = next("system info")?;
    let dict = state_dict(next("state dict")?)?;
    let keys = match next("storage keys")? {
        Value::List(k) => k.into_iter().map(|k| match k {
            Value::Str(s) => Ok(s),
            v => Err(InteropError::Format(format!("storage key {v:?}"))),
        }),
        v => return Err(InteropError::Format(format!("storage key list expected, got {v:?}"))),
    }
    .collect::<Result<Vec<String>>>()?;
    let kinds: HashMap<&str, &str> =
        dict.iter().map(|(_, t)| (t.storage.key.as_str(), t.storage.kind.as_str())).collect();
    let mut storages: HashMap<String, Vec<f32>> = HashMap::new();
    for key in keys {
        let kind = kinds.get(key.as_str()).copied().unwrap_or("FloatStorage");
        let numel = bytes.get(pos..pos + 8).ok_or("file ends inside the storages")?;
        let numel = u64::from_le_bytes(numel.try_into().expect("8")) as usize;
        pos += 8;
        let n = numel * elem_size(kind)?;
        let raw = bytes.get(pos..pos + n).ok_or_else(|| format!("storage {key} cut short"))?;
        pos += n;
        storages.insert(key.clone(), decode(kind, raw)?);
    }
    dict.into_iter()
        .map(|(k, t)| {
            let s = storages.get(&t.storage.key).ok_or_else(|| format!("{k}: storage {} missing", t.storage.key))?;
            let data = view(&t, s, &k)?;
            Ok(Named::new(k, t.shape, data))
        })
        .collect()
}

fn read_safetensors(bytes: &[u8]) -> Result<(Vec<Named>, HashMap<String, String>)> {
    use safetensors::{Dtype, SafeTensors};
    let st = SafeTensors::deserialize(bytes).map_err(|e| e.to_string())?;
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| e.to_string())?;
    // File order: by offset.
    let mut tensors = st.tensors();
    tensors.sort_by_key(|(_, t)| t.data().as_ptr() as usize);
    let out = tensors
        .into_iter()
        .map(|(name, t)| {
            let kind = match t.dtype() {
                Dtype::F32 => "FloatStorage",
                Dtype::F64 => "DoubleStorage",
                Dtype::F16 => "HalfStorage",
                Dtype::BF16 => "BFloat16Storage",
                d => return Err(InteropError::Format(format!("{name}: dtype {d:?} is not floating point"))),
            };
            Ok(Named::new(name, t.shape().to_vec(), decode(kind, t.data())?))
        })
        .collect::<Result<_>>()?;
    Ok((out, meta.metadata().clone().unwrap_or_default()))
}

/// Reads every floating-point tensor of a `.pth` (zip or legacy) or safetensors file, with the
/// safetensors metadata (empty for `.pth`).
pub fn read_tensors(path: &Path) -> Result<(Vec<Named>, HashMap<String, String>)> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    if bytes.starts_with(b"PK\x03\x04") {
        Ok((read_zip(path, &bytes)?, HashMap::new()))
    } else if bytes.first() == Some(&0x80) {
        Ok((read_legacy(&bytes)?, HashMap::new()))
    } else if bytes.len() > 8 && bytes.get(8) == Some(&b'{') {
        read_safetensors(&bytes)
    } else {
        Err("not a PyTorch .pth (zip or legacy) or safetensors file".into())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn half_floats() {
        for (h, f) in [(0x3c00u16, 1.0f32), (0xc000, -2.0), (0x0000, 0.0), (0x7bff, 65504.0), (0x0001, 5.960_464_5e-8)]
        {
            assert_eq!(super::f16_to_f32(h), f, "{h:#x}");
        }
    }
}
