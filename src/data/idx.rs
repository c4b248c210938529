//! The IDX format (LeCun's MNIST files; Fashion-MNIST from Debian's `dataset-fashion-mnist`):
//! big-endian header `0x0000 TT DD` (type 0x08 = u8, DD dimensions), DD u32 sizes, then data.
//! Gzipped files (`.gz`) are read transparently.

use super::DataError;
use flate2::read::GzDecoder;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Decompressed IDX files larger than this are refused (Fashion-MNIST's largest is 47 MB).
pub const MAX_IDX_BYTES: u64 = 1 << 30;

/// The file's bytes, gunzipped if they are gzip (at most [`MAX_IDX_BYTES`]: a gzip bomb stops there).
fn decompressed(raw: Vec<u8>, path: &Path) -> Result<Vec<u8>, DataError> {
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(raw);
    }
    let mut out = Vec::new();
    GzDecoder::new(&raw[..])
        .take(MAX_IDX_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| DataError::Idx { path: path.into(), problem: format!("bad gzip data: {e}") })?;
    if out.len() as u64 > MAX_IDX_BYTES {
        return Err(DataError::Idx { path: path.into(), problem: "decompresses to more than 1 GiB".into() });
    }
    Ok(out)
}

/// Parses an IDX file of unsigned bytes: returns its dimensions and data.
pub fn read_u8(path: &Path) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    let raw = crate::files::read_regular(path, MAX_IDX_BYTES).map_err(|e| DataError::io(path, e))?;
    parse_u8(raw, path)
}

/// [`read_u8`] of bytes in memory (gzipped or not), named `path` in errors.
pub fn parse_u8(raw: Vec<u8>, path: &Path) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    let b = decompressed(raw, path)?;
    let bad = |p: String| DataError::Idx { path: path.into(), problem: p };
    if b.len() < 4 || b[0] != 0 || b[1] != 0 {
        return Err(bad("missing the 0x0000 magic".into()));
    }
    if b[2] != 0x08 {
        return Err(bad(format!("element type 0x{:02x}, only unsigned bytes (0x08) are supported", b[2])));
    }
    let nd = b[3] as usize;
    if b.len() < 4 + 4 * nd {
        return Err(bad("truncated header".into()));
    }
    let dims: Vec<usize> =
        b[4..4 + 4 * nd].chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize).collect();
    let n = dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| bad(format!("dimensions {dims:?} overflow")))?;
    let data = &b[4 + 4 * nd..];
    if data.len() != n {
        return Err(bad(format!("header announces {n} values ({dims:?}) but the file holds {}", data.len())));
    }
    Ok((dims, data.to_vec()))
}

/// The labels file next to an images file: `...-images-idx3-ubyte[.gz]` -> `...-labels-idx1-ubyte[.gz]`.
pub fn labels_path_for(images: &Path) -> Option<PathBuf> {
    let name = images.file_name()?.to_str()?;
    name.contains("images-idx3").then(|| images.with_file_name(name.replace("images-idx3", "labels-idx1")))
}

/// True when `path` names an IDX images file.
pub fn is_idx_images(path: &Path) -> bool {
    path.is_file() && path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.contains("-idx3-ubyte"))
}

/// Fashion-MNIST's class names, in label order.
pub const FASHION_MNIST_CLASSES: [&str; 10] =
    ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

/// Greyscale images `[N, H, W]` and their labels, checked against each other.
pub fn read_set(images: &Path) -> Result<(usize, usize, Vec<u8>, Vec<u8>), DataError> {
    let labels_path = labels_path_for(images).ok_or_else(|| DataError::Idx {
        path: images.into(),
        problem: "expected a name like train-images-idx3-ubyte[.gz] (its labels file is found by name)".into(),
    })?;
    let (dims, pixels) = read_u8(images)?;
    if dims.len() != 3 || dims[1] != dims[2] {
        return Err(DataError::Idx { path: images.into(), problem: format!("expected N×H×H images, got {dims:?}") });
    }
    if dims[0] == 0 || dims[1] == 0 {
        return Err(DataError::Idx { path: images.into(), problem: format!("no images ({dims:?})") });
    }
    let (ldims, labels) = read_u8(&labels_path)?;
    if ldims != [dims[0]] {
        return Err(DataError::Idx {
            path: labels_path,
            problem: format!("{:?} labels for {} images", ldims, dims[0]),
        });
    }
    Ok((dims[0], dims[1], pixels, labels))
}
