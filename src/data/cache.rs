//! The packed image set: every image decoded once and stored as `size × size × 3` bytes, read
//! back through a memory map so that epochs after the first decode no JPEG.
//!
//! File layout (little-endian):
//! ```text
//! [0, 16)    magic "ALEXNET-PACKED\0\x01"
//! [16, 64)   zero
//! [64, ..)   images, count × size·size·3 bytes, HWC RGB
//!            labels, count × u32
//!            mean image, size·size·3 × f32 (HWC, 0-255)
//!            metadata JSON (count, size, classes, statistics, source)
//! last 32    u64 JSON offset, u64 JSON length, magic
//! ```
//! The metadata sits at the end so images stream straight to disk while statistics accumulate.
//! A file is written under a temporary name and renamed when complete, so an interrupted
//! `prepare` never leaves a file that looks valid.

use super::stats::{DataStats, StatsAccumulator};
use super::{ClassInfo, DataError};
use memmap2::Mmap;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 16] = b"ALEXNET-PACKED\0\x01";
const DATA_START: usize = 64;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Meta {
    count: usize,
    size: usize,
    classes: Vec<ClassInfo>,
    stats: DataStats,
    source: String,
    /// The key of the folder's contents it was packed from ([`super::store::content_key`]);
    /// empty for files from before the shared store and for sets that are not folders.
    #[serde(default)]
    key: String,
    /// The files of the folder that could not be decoded and were skipped (`--skip-bad`).
    #[serde(default)]
    skipped: Vec<String>,
    /// The exact sums behind `stats` (absent in files from before they were kept).
    #[serde(default)]
    sums: Option<StatsAccumulator>,
}

enum Storage {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

/// A packed set of equally sized RGB images with labels, classes and statistics.
pub struct PackedImages {
    storage: Storage,
    pub count: usize,
    pub size: usize,
    pub labels: Vec<u32>,
    pub classes: Vec<ClassInfo>,
    pub stats: DataStats,
    pub source: String,
    /// See [`super::store::content_key`]; empty when unknown.
    pub key: String,
    /// Files of the source skipped as undecodable when it was packed (`--skip-bad`).
    pub skipped: Vec<String>,
    /// The sums `stats` were made from, when the file has them: see [`Self::stats_of`].
    sums: Option<StatsAccumulator>,
}

impl PackedImages {
    /// Bytes of one image.
    pub fn image_len(&self) -> usize {
        self.size * self.size * 3
    }

    /// Image `i`, HWC RGB.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        let bytes = match &self.storage {
            Storage::Mapped(m) => &m[..],
            Storage::Owned(v) => &v[..],
        };
        &bytes[DATA_START + i * n..DATA_START + (i + 1) * n]
    }

    /// Opens a cache file written by [`Packer`].
    pub fn open(path: &Path) -> Result<Self, DataError> {
        let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
        // SAFETY: the map is read-only; a file changed underneath would give wrong pixels but
        // not unsafety in Rust terms beyond what every mmap user accepts. Caches are ours.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| DataError::io(path, e))?;
        Self::parse(Storage::Mapped(map), path)
    }

    /// Parses an in-memory packed set (as [`Packer::finish_in_memory`] returns).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, DataError> {
        Self::parse(Storage::Owned(bytes), Path::new("<memory>"))
    }

    fn parse(storage: Storage, path: &Path) -> Result<Self, DataError> {
        let bad = |p: &str| DataError::Cache { path: path.into(), problem: p.into() };
        let b: &[u8] = match &storage {
            Storage::Mapped(m) => m,
            Storage::Owned(v) => v,
        };
        if b.len() < DATA_START + 32 || &b[..16] != MAGIC {
            return Err(bad("not an alexnet packed image file (bad magic); create it with `alexnet prepare`"));
        }
        if &b[b.len() - 16..] != MAGIC {
            return Err(bad("incomplete file (no trailer); delete it and run `alexnet prepare` again"));
        }
        let u64_at = |o: usize| {
            let v = u64::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3], b[o + 4], b[o + 5], b[o + 6], b[o + 7]]);
            usize::try_from(v).unwrap_or(usize::MAX)
        };
        let (json_off, json_len) = (u64_at(b.len() - 32), u64_at(b.len() - 24));
        if json_off.checked_add(json_len).is_none_or(|end| end > b.len() - 32) {
            return Err(bad("corrupt trailer"));
        }
        let meta: Meta = serde_json::from_slice(&b[json_off..json_off + json_len])
            .map_err(|e| bad(&format!("bad metadata: {e}")))?;
        if meta.size == 0 || meta.size > crate::model::plan::limits::MAX_STORED {
            return Err(bad(&format!("image size {} out of range", meta.size)));
        }
        // Every offset from the file's numbers, with checked arithmetic: a wrap must not pass.
        let offsets = (|| {
            let img_len = meta.size.checked_mul(meta.size)?.checked_mul(3)?;
            let labels_off = meta.count.checked_mul(img_len)?.checked_add(DATA_START)?;
            let mean_off = meta.count.checked_mul(4)?.checked_add(labels_off)?;
            let end = img_len.checked_mul(4)?.checked_add(mean_off)?;
            Some((labels_off, mean_off, end))
        })();
        let Some((labels_off, mean_off, end)) = offsets.filter(|o| o.2 == json_off) else {
            return Err(bad("sizes in the metadata do not match the file"));
        };
        debug_assert_eq!(end, json_off);
        let labels: Vec<u32> =
            b[labels_off..mean_off].chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        if let Some(l) = labels.iter().find(|&&l| l as usize >= meta.classes.len()) {
            return Err(bad(&format!("label {l} out of range for {} classes", meta.classes.len())));
        }
        let mut stats = meta.stats;
        stats.mean_image = crate::tensor::f32_from_le_bytes(&b[mean_off..json_off]);
        // The sums stand in for reading the images again (`stats_of`): they must be the ones
        // these statistics came from.
        if let Some(s) = &meta.sums
            && !(s.fits(meta.size) && s.count() == meta.count as u64 && s.finish() == stats)
        {
            return Err(bad("the statistics do not match the sums they were computed from"));
        }
        Ok(Self {
            storage,
            count: meta.count,
            size: meta.size,
            labels,
            classes: meta.classes,
            stats,
            source: meta.source,
            key: meta.key,
            skipped: meta.skipped,
            sums: meta.sums,
        })
    }

    /// Statistics over a subset (e.g. the training part of a `--val-split`). When the subset
    /// is most of the set and the file kept its sums, the images left out are read and their
    /// sums taken from the whole's (exact integers: the same statistics, a tenth of the reading
    /// for a 10% split).
    pub fn stats_of(&self, indices: &[u32]) -> DataStats {
        if let Some(total) = &self.sums
            && total.count() == self.count as u64
            && indices.len() * 2 > self.count
        {
            let mut inside = vec![false; self.count];
            let distinct =
                indices.iter().all(|&i| inside.get_mut(i as usize).is_some_and(|seen| !std::mem::replace(seen, true)));
            if distinct {
                let outside: Vec<u32> = (0..self.count as u32).filter(|&i| !inside[i as usize]).collect();
                if let Some(rest) = total.minus(&self.sums_of(&outside)) {
                    return rest.finish();
                }
            }
        }
        self.sums_of(indices).finish()
    }

    fn sums_of(&self, indices: &[u32]) -> StatsAccumulator {
        indices
            .par_chunks(256)
            .map(|ch| {
                let mut acc = StatsAccumulator::new(self.size);
                ch.iter().for_each(|&i| acc.add(self.image(i as usize)));
                acc
            })
            .reduce_with(|a, b| a.merge(&b))
            .unwrap_or_else(|| StatsAccumulator::new(self.size))
    }
}

/// Streams images into a packed set.
pub struct Packer<W: Write> {
    out: W,
    size: usize,
    labels: Vec<u32>,
    acc: StatsAccumulator,
    written: usize,
    key: String,
    skipped: Vec<String>,
}

impl<W: Write> Packer<W> {
    pub fn new(mut out: W, size: usize) -> std::io::Result<Self> {
        out.write_all(MAGIC)?;
        out.write_all(&[0u8; DATA_START - 16])?;
        Ok(Self {
            out,
            size,
            labels: Vec::new(),
            acc: StatsAccumulator::new(size),
            written: DATA_START,
            key: String::new(),
            skipped: Vec::new(),
        })
    }

    pub fn push(&mut self, image: &[u8], label: u32) -> std::io::Result<()> {
        assert_eq!(image.len(), self.size * self.size * 3, "image size");
        self.out.write_all(image)?;
        self.acc.add(image);
        self.labels.push(label);
        self.written += image.len();
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Records the key of the folder being packed (see [`super::store::content_key`]).
    pub fn set_key(&mut self, key: &str) {
        self.key = key.into();
    }

    /// Records the files that were skipped as undecodable.
    pub fn set_skipped(&mut self, skipped: Vec<String>) {
        self.skipped = skipped;
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Writes labels, mean image, metadata and trailer; returns the writer.
    pub fn finish(mut self, classes: Vec<ClassInfo>, source: &str) -> std::io::Result<(W, DataStats)> {
        let stats = self.acc.finish();
        for l in &self.labels {
            self.out.write_all(&l.to_le_bytes())?;
        }
        for m in &stats.mean_image {
            self.out.write_all(&m.to_le_bytes())?;
        }
        let json_off = self.written + 4 * self.labels.len() + 4 * stats.mean_image.len();
        let meta = Meta {
            count: self.labels.len(),
            size: self.size,
            classes,
            stats: stats.clone(),
            source: source.into(),
            key: std::mem::take(&mut self.key),
            skipped: std::mem::take(&mut self.skipped),
            sums: Some(self.acc.clone()),
        };
        let json = serde_json::to_vec(&meta).map_err(std::io::Error::other)?;
        self.out.write_all(&json)?;
        self.out.write_all(&(json_off as u64).to_le_bytes())?;
        self.out.write_all(&(json.len() as u64).to_le_bytes())?;
        self.out.write_all(MAGIC)?;
        self.out.flush()?;
        Ok((self.out, stats))
    }
}

/// What to do with a file that cannot be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnBadImage {
    Fail,
    /// Skip it with a warning on stderr.
    Skip,
}

/// Result of packing: how many images went in and which files were skipped.
#[derive(Debug, Default, Serialize)]
pub struct PackReport {
    pub images: usize,
    pub skipped: Vec<String>,
    pub seconds: f64,
    pub images_per_s: f64,
}

/// Receives each decoded image with its path and label.
pub type ImageSink<'a> = dyn FnMut(&Path, u32, Vec<u8>) -> Result<(), DataError> + 'a;

/// Decodes `items` at `size × size` in parallel chunks of 256 (so memory stays bounded) and
/// hands each decoded image to `sink` in order. A bad file stops with its error, or with
/// [`OnBadImage::Skip`] is skipped with a warning; returns the skipped paths. `on_progress` is
/// called with the number of files done so far.
pub fn decode_each(
    items: &[(PathBuf, u32)],
    size: usize,
    on_bad: OnBadImage,
    on_progress: &(dyn Fn(usize) + Sync),
    sink: &mut ImageSink<'_>,
) -> Result<Vec<String>, DataError> {
    let mut skipped = Vec::new();
    let mut done = 0;
    for chunk in items.chunks(256) {
        let decoded: Vec<Result<Vec<u8>, DataError>> =
            chunk.par_iter().map(|(p, _)| super::image::load_square(p, size)).collect();
        for ((path, label), r) in chunk.iter().zip(decoded) {
            match r {
                Ok(img) => sink(path, *label, img)?,
                Err(e) if on_bad == OnBadImage::Skip => {
                    eprintln!("warning: skipping {e}");
                    skipped.push(path.display().to_string());
                }
                Err(e) => return Err(e),
            }
        }
        done += chunk.len();
        on_progress(done);
    }
    Ok(skipped)
}

/// Decodes `items` (see [`decode_each`]) and streams them into `packer`.
pub fn pack_files<W: Write>(
    packer: &mut Packer<W>,
    items: &[(PathBuf, u32)],
    size: usize,
    on_bad: OnBadImage,
    on_progress: &(dyn Fn(usize) + Sync),
) -> Result<Vec<String>, DataError> {
    decode_each(items, size, on_bad, on_progress, &mut |path, label, img| {
        packer.push(&img, label).map_err(|e| DataError::io(path, e))
    })
}

/// Where a packed set comes from, as its file records it.
#[derive(Clone, Copy, Debug)]
pub struct Origin<'a> {
    /// The source's canonical path.
    pub source: &'a str,
    /// The key of the folder's contents ([`super::store::content_key`]); empty for none.
    pub key: &'a str,
}

/// Bytes of a packed file of `count` images at `size × size` (the metadata JSON estimated
/// generously: its classes and statistics are a few kB, a little more per class).
pub fn packed_bytes(count: usize, size: usize, classes: usize) -> u64 {
    let img = (size as u64).saturating_mul(size as u64).saturating_mul(3);
    let images = (count as u64).saturating_mul(img.saturating_add(4));
    images.saturating_add(img.saturating_mul(4)).saturating_add(DATA_START as u64 + 65_536 + 32 + 512 * classes as u64)
}

/// Packs labelled images into a cache file at `out`, atomically: the images go to a uniquely
/// named temporary file `OUT.*.partial` in the same folder, renamed to `out` when complete, so
/// neither an interrupted pack nor two concurrent ones ever leave a file at `out` that is not
/// whole (a process killed outright leaves its `.partial`, which the next pack of `out` under
/// the store's lock removes). The disk's free space is checked against the file's size before
/// the first image is decoded. The file is readable by everyone (0644), as files `cp` makes.
pub fn write_cache(
    out: &Path,
    items: &[(PathBuf, u32)],
    classes: Vec<ClassInfo>,
    size: usize,
    origin: Origin<'_>,
    on_bad: OnBadImage,
    on_progress: &(dyn Fn(usize) + Sync),
) -> Result<PackReport, DataError> {
    use std::os::unix::fs::PermissionsExt;
    let t0 = std::time::Instant::now();
    let max = crate::model::plan::limits::MAX_STORED;
    if size == 0 || size > max {
        return Err(DataError::Cache { path: out.into(), problem: format!("stored size {size} outside 1..={max}") });
    }
    let dir = out.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    crate::files::check_writable(out).map_err(|e| DataError::io(out, e))?;
    let needed = packed_bytes(items.len(), size, classes.len());
    super::store::check_room(out, needed, super::store::free_bytes(dir))?;
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let (file, tmp) = tempfile::Builder::new()
        .prefix(&format!("{name}."))
        .suffix(".partial")
        .permissions(std::fs::Permissions::from_mode(0o644))
        .tempfile_in(dir)
        .map_err(|e| DataError::io(dir, e))?
        .into_parts();
    // `tmp` removes the file when dropped: whatever fails below (a bad image, a full disk), no
    // partial file is left behind.
    let mut packer =
        Packer::new(std::io::BufWriter::with_capacity(1 << 20, file), size).map_err(|e| DataError::io(&*tmp, e))?;
    packer.set_key(origin.key);
    let skipped = pack_files(&mut packer, items, size, on_bad, on_progress)?;
    if packer.is_empty() {
        return Err(DataError::layout(out, "no image could be decoded"));
    }
    let images = packer.len();
    packer.set_skipped(skipped.clone());
    let (w, _) = packer.finish(classes, origin.source).map_err(|e| DataError::io(&*tmp, e))?;
    w.into_inner()
        .map_err(|e| DataError::io(&*tmp, e.into_error()))?
        .sync_all()
        .map_err(|e| DataError::io(&*tmp, e))?;
    tmp.persist(out).map_err(|e| DataError::io(out, e.error))?;
    let seconds = t0.elapsed().as_secs_f64();
    Ok(PackReport { images, skipped, seconds, images_per_s: items.len() as f64 / seconds.max(1e-9) })
}

/// Packs labelled images into memory (for evaluation sets that need no cache file).
pub fn pack_in_memory(
    items: &[(PathBuf, u32)],
    classes: Vec<ClassInfo>,
    size: usize,
    source: &str,
    on_bad: OnBadImage,
) -> Result<PackedImages, DataError> {
    let mut packer = Packer::new(Vec::new(), size).map_err(|e| DataError::io(source, e))?;
    pack_files(&mut packer, items, size, on_bad, &|_| {})?;
    if packer.is_empty() {
        return Err(DataError::layout(source, "no image could be decoded"));
    }
    let (bytes, _) = packer.finish(classes, source).map_err(|e| DataError::io(source, e))?;
    PackedImages::from_bytes(bytes)
}

/// Packs raw `size × size` RGB images already in memory (IDX sets, tests).
pub fn pack_raw(
    images: &[Vec<u8>],
    labels: &[u32],
    classes: Vec<ClassInfo>,
    size: usize,
    source: &str,
) -> PackedImages {
    let mut packer = Packer::new(Vec::new(), size).expect("writing to memory");
    for (img, &l) in images.iter().zip(labels) {
        packer.push(img, l).expect("writing to memory");
    }
    let (bytes, _) = packer.finish(classes, source).expect("writing to memory");
    PackedImages::from_bytes(bytes).expect("freshly packed")
}
