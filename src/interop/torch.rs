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
    let h = u32::from(h);
    let sign = (h >> 15) << 31;
    let exp = (h >> 10) & 0x1f;
    let frac = h & 0x3ff;
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

/// Decodes little-endian elements of storage kind `kind` (a trailing partial element is ignored).
fn decode(kind: &str, bytes: &[u8]) -> Result<Vec<f32>> {
    fn each<const N: usize>(bytes: &[u8], f: impl Fn([u8; N]) -> f32) -> Vec<f32> {
        bytes
            .chunks_exact(N)
            .map(|c| {
                let mut a = [0u8; N];
                a.copy_from_slice(c);
                f(a)
            })
            .collect()
    }
    Ok(match kind {
        "FloatStorage" => each(bytes, f32::from_le_bytes),
        "DoubleStorage" => each(bytes, |a| f64::from_le_bytes(a) as f32),
        "HalfStorage" => each(bytes, |a| f16_to_f32(u16::from_le_bytes(a))),
        "BFloat16Storage" => each(bytes, |a| f32::from_bits(u32::from(u16::from_le_bytes(a)) << 16)),
        k => return Err(InteropError::Format(format!("unsupported storage {k}"))),
    })
}

/// The number of elements of `shape`, if it fits in a `usize`.
fn numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

/// Materialises a (contiguous) tensor view from its storage's values.
/// Tensors are copied out of their storages, and many dict entries may view one storage: the
/// copies may add up to twice what the file stores (plus 1 M values), no more, so a small file
/// cannot expand into gigabytes.
struct ViewBudget {
    stored: usize,
    copied: usize,
}

impl ViewBudget {
    fn copy(&mut self, n: usize) -> Result<()> {
        self.copied = self.copied.saturating_add(n);
        if self.copied > self.stored.saturating_mul(2).saturating_add(1 << 20) {
            return Err(InteropError::Limit(format!(
                "the tensors view {} values of storages holding {}: refusing to expand the file",
                self.copied, self.stored
            )));
        }
        Ok(())
    }
}

fn view(t: &TensorRef, storage: &[f32], name: &str) -> Result<Vec<f32>> {
    let n = numel(&t.shape).ok_or_else(|| {
        InteropError::Format(format!("`{name}`: shape {:?} has more elements than a usize can count", t.shape))
    })?;
    if t.stride.len() != t.shape.len() {
        return Err(InteropError::Format(format!(
            "`{name}`: {} strides for the {} dimensions of shape {:?}",
            t.stride.len(),
            t.shape.len(),
            t.shape
        )));
    }
    // Row-major strides of this shape; size-1 dimensions may carry any stride, and an empty
    // tensor any strides. Partial products of a non-empty shape are at most `n`.
    if n > 0 {
        let mut expect = 1usize;
        for (&d, &s) in t.shape.iter().zip(&t.stride).rev() {
            if d != 1 && s != expect {
                return Err(InteropError::Format(format!(
                    "`{name}`: non-contiguous tensor (shape {:?}, stride {:?})",
                    t.shape, t.stride
                )));
            }
            expect = expect.saturating_mul(d);
        }
    }
    let outside = || {
        InteropError::Format(format!(
            "`{name}`: {n} elements from offset {} are outside its storage of {}",
            t.offset,
            storage.len()
        ))
    };
    let end = t.offset.checked_add(n).ok_or_else(outside)?;
    storage.get(t.offset..end).map(<[f32]>::to_vec).ok_or_else(outside)
}

/// The state dict: the top-level dict, or a `state_dict` / `model` entry of a training checkpoint.
fn state_dict(mut v: Value) -> Result<Vec<(String, TensorRef)>> {
    loop {
        let Value::Dict(mut items) = v else {
            return Err(format!("the file does not hold a dict of tensors but {}", v.describe()).into());
        };
        if !items.iter().any(|(_, v)| matches!(v, Value::Tensor(_))) {
            let inner = items.iter().position(|(k, v)| {
                matches!(k, Value::Str(k) if k == "state_dict" || k == "model") && matches!(v, Value::Dict(_))
            });
            if let Some(i) = inner {
                v = items.swap_remove(i).1;
                continue;
            }
        }
        let mut out = Vec::new();
        for (k, v) in items {
            let Value::Str(k) = k else { continue };
            match v {
                Value::Tensor(t) => out.push((k, *t)),
                // Non-tensor entries (version numbers, ...) are not parameters. Anything that
                // needed a global is refused by the pickle reader before it gets here.
                _ => continue,
            }
        }
        return Ok(out);
    }
}

/// The bytes of a storage of `numel` elements of `kind`, checked for overflow.
fn storage_bytes(key: &str, kind: &str, numel: usize) -> Result<usize> {
    numel
        .checked_mul(elem_size(kind)?)
        .ok_or_else(|| InteropError::Format(format!("storage {key}: {numel} elements of {kind} overflow a byte count")))
}

fn read_zip(bytes: &[u8]) -> Result<Vec<Named>> {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| format!("bad zip archive: {e}"))?;
    let names: Vec<String> = z
        .file_names()
        .map(|n| n.map(|n| n.into_owned()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad zip archive: {e}"))?;
    let pkl =
        names.iter().find(|n| n.ends_with("/data.pkl") || *n == "data.pkl").ok_or("no data.pkl in the archive")?;
    let prefix = pkl.strip_suffix("data.pkl").unwrap_or_default().to_string();
    // Reads at most `limit` bytes of an entry (nothing is allocated from the entry's claims:
    // the buffer grows with what is actually read), and fails if there are more.
    let archive_len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    let mut read = |name: &str, limit: u64| -> Result<Vec<u8>> {
        let f = z.by_name(name).map_err(|e| format!("{name}: {e}"))?;
        let mut b = Vec::new();
        f.take(limit.saturating_add(1)).read_to_end(&mut b).map_err(|e| format!("{name}: {e}"))?;
        if u64::try_from(b.len()).unwrap_or(u64::MAX) > limit {
            return Err(InteropError::Limit(format!("{name}: more than {limit} bytes")));
        }
        Ok(b)
    };
    // Stored entries cannot be larger than the archive (and compressed ones are not read).
    let (v, _) = pickle::load(&read(pkl, archive_len)?)?;
    let dict = state_dict(v)?;
    let mut storages: HashMap<String, Vec<f32>> = HashMap::new();
    let mut budget = ViewBudget { stored: 0, copied: 0 };
    let mut out = Vec::new();
    for (k, t) in dict {
        if !storages.contains_key(&t.storage.key) {
            let need = storage_bytes(&t.storage.key, &t.storage.kind, t.storage.numel)?;
            let name = format!("{prefix}data/{}", t.storage.key);
            if u64::try_from(need).map_or(true, |n| n > archive_len) {
                return Err(InteropError::Format(format!(
                    "storage {} needs {need} bytes, more than the whole file's {archive_len}",
                    t.storage.key
                )));
            }
            let mut raw = read(&name, archive_len)?;
            if raw.len() < need {
                return Err(InteropError::Format(format!(
                    "storage {} holds {} bytes, needs {need}",
                    t.storage.key,
                    raw.len()
                )));
            }
            raw.truncate(need);
            let decoded = decode(&t.storage.kind, &raw)?;
            budget.stored += decoded.len();
            storages.insert(t.storage.key.clone(), decoded);
        }
        let storage = storages.get(&t.storage.key).ok_or_else(|| format!("{k}: storage {} missing", t.storage.key))?;
        let data = view(&t, storage, &k)?;
        budget.copy(data.len())?;
        out.push(Named::new(k, t.shape, data));
    }
    Ok(out)
}

/// torch.serialization's MAGIC_NUMBER 0x1950a86a20f9469cfc6c, little-endian: the legacy format's
/// first pickle is this integer (`LONG1` of 10 bytes).
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

fn read_legacy(bytes: &[u8]) -> Result<Vec<Named>> {
    let mut pos = 0usize;
    let mut next = |what: &str| -> Result<Value> {
        let rest = bytes.get(pos..).ok_or_else(|| format!("{what}: the file ends"))?;
        let (v, n) = pickle::load(rest).map_err(|e| match e {
            InteropError::Format(e) => InteropError::Format(format!("{what}: {e}")),
            e => e,
        })?;
        pos = pos.saturating_add(n);
        Ok(v)
    };
    if next("magic number")? != Value::BigInt(LEGACY_MAGIC.to_vec()) {
        return Err("not a PyTorch file (bad magic number)".into());
    }
    next("protocol version")?;
    next("system info")?;
    let dict = state_dict(next("state dict")?)?;
    let keys = match next("storage keys")? {
        Value::List(k) => k.into_iter().map(|k| match k {
            Value::Str(s) => Ok(s),
            v => Err(InteropError::Format(format!("storage key is {}, not a string", v.describe()))),
        }),
        v => return Err(InteropError::Format(format!("storage key list expected, got {}", v.describe()))),
    }
    .collect::<Result<Vec<String>>>()?;
    let kinds: HashMap<&str, &str> =
        dict.iter().map(|(_, t)| (t.storage.key.as_str(), t.storage.kind.as_str())).collect();
    let mut storages: HashMap<String, Vec<f32>> = HashMap::new();
    for key in keys {
        let kind = kinds.get(key.as_str()).copied().unwrap_or("FloatStorage");
        let cut = || InteropError::Format(format!("storage {key} cut short"));
        let head = pos.checked_add(8).and_then(|end| bytes.get(pos..end)).ok_or("file ends inside the storages")?;
        let mut numel = [0u8; 8];
        numel.copy_from_slice(head);
        pos += 8;
        let numel = usize::try_from(u64::from_le_bytes(numel)).map_err(|_| cut())?;
        let n = storage_bytes(&key, kind, numel)?;
        let raw = pos.checked_add(n).and_then(|end| bytes.get(pos..end)).ok_or_else(cut)?;
        pos += n;
        storages.insert(key.clone(), decode(kind, raw)?);
    }
    let mut budget = ViewBudget { stored: storages.values().map(Vec::len).sum(), copied: 0 };
    dict.into_iter()
        .map(|(k, t)| {
            let s = storages.get(&t.storage.key).ok_or_else(|| format!("{k}: storage {} missing", t.storage.key))?;
            let data = view(&t, s, &k)?;
            budget.copy(data.len())?;
            Ok(Named::new(k, t.shape, data))
        })
        .collect()
}

fn read_safetensors(bytes: &[u8]) -> Result<(Vec<Named>, HashMap<String, String>)> {
    use safetensors::{Dtype, SafeTensors};
    let st = SafeTensors::deserialize(bytes).map_err(|e| format!("bad safetensors file: {e}"))?;
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| format!("bad safetensors file: {e}"))?;
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
            let data = decode(kind, t.data())?;
            if numel(t.shape()) != Some(data.len()) {
                return Err(InteropError::Format(format!("{name}: shape {:?} does not match its data", t.shape())));
            }
            Ok(Named::new(name, t.shape().to_vec(), data))
        })
        .collect::<Result<_>>()?;
    Ok((out, meta.metadata().clone().unwrap_or_default()))
}

/// What a file is, by its structure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// `torch.save`'s zip format: a zip's local-file magic `PK\x03\x04`.
    Zip,
    /// `torch.save`'s legacy format: pickle protocol 2-5, then the legacy magic number.
    Legacy,
    /// safetensors: a little-endian u64 header length N with 8 + N within the file, and a JSON
    /// header starting at byte 8.
    Safetensors,
}

/// Tells the formats apart by their structure, not by one byte (a safetensors header length
/// can start with 0x80, pickle's protocol opcode).
pub fn detect(bytes: &[u8]) -> Option<FileKind> {
    if bytes.starts_with(b"PK\x03\x04") {
        return Some(FileKind::Zip);
    }
    if let [0x80, 2..=5, rest @ ..] = bytes {
        // Protocol 4 and 5 may open a FRAME (0x95 and an 8-byte length) first.
        let rest = match rest {
            [0x95, r @ ..] => r.get(8..).unwrap_or_default(),
            r => r,
        };
        if let [0x8a, 10, magic @ ..] = rest
            && magic.starts_with(&LEGACY_MAGIC)
        {
            return Some(FileKind::Legacy);
        }
    }
    let mut n = [0u8; 8];
    n.copy_from_slice(bytes.get(..8)?);
    let header = usize::try_from(u64::from_le_bytes(n)).ok()?;
    (header.checked_add(8)? <= bytes.len() && bytes.get(8) == Some(&b'{')).then_some(FileKind::Safetensors)
}

/// Reads every floating-point tensor of a `.pth` (zip or legacy) or safetensors file in memory,
/// with the safetensors metadata (empty for `.pth`). Any input gives tensors or an error; none
/// makes it panic, and nothing in the file is executed.
pub fn read_tensors_from_bytes(bytes: &[u8]) -> Result<(Vec<Named>, HashMap<String, String>)> {
    match detect(bytes) {
        Some(FileKind::Zip) => Ok((read_zip(bytes)?, HashMap::new())),
        Some(FileKind::Legacy) => Ok((read_legacy(bytes)?, HashMap::new())),
        Some(FileKind::Safetensors) => read_safetensors(bytes),
        None => Err("not a PyTorch .pth (zip or legacy) or safetensors file".into()),
    }
}

/// Reads every floating-point tensor of a `.pth` (zip or legacy) or safetensors file, with the
/// safetensors metadata (empty for `.pth`).
pub fn read_tensors(path: &Path) -> Result<(Vec<Named>, HashMap<String, String>)> {
    let bytes = crate::files::read_regular(path, crate::files::MAX_WEIGHTS_BYTES)
        .map_err(|source| InteropError::Io { path: path.into(), source })?;
    read_tensors_from_bytes(&bytes)
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
