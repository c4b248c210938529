//! The packed image set: every image of a source, compact, with labels, classes and the
//! statistics of the pixels training will see, read back one image at a time.
//!
//! Each image is stored the cheapest way that never changes what the network sees beyond the
//! recipe's resize: an image whose shorter side is at most the stored size `S` keeps its own
//! size (its file's bytes, or its central square raw when that is smaller) and is brought to
//! `S × S` when read, so nothing is stored upscaled and its pixels are exactly those of a
//! direct decode; a larger one is brought to `S × S` (shorter side to S, centre crop) and
//! stored as a JPEG of quality [`JPEG_QUALITY`], or raw when that is smaller.
//!
//! File layout (little-endian), format 2:
//! ```text
//! [0, 16)    magic "ALEXNET-PACKED\0\x02"
//! [16, 64)   zero
//! [64, ..)   the images' records, one after another
//!            index, count × 32 bytes: u64 offset, u64 length, u32 kind, u32 width, u32 height,
//!                   u32 check (the first 4 bytes of the record's SHA-256, little-endian)
//!            labels, count × u32
//!            mean image, S·S·3 × f32 (HWC, 0-255)
//!            metadata JSON (count, size, classes, statistics, source, key)
//! last 32    u64 JSON offset, u64 JSON length, magic
//! ```
//! Format 1 (magic `...\x01`, every image `S·S·3` raw bytes from offset 64, no index) is still
//! read. The metadata sits at the end so images stream straight to disk while statistics
//! accumulate. A file is written under a temporary name and renamed when complete, so an
//! interrupted pack never leaves a file that looks valid.
//!
//! Every record is checked against its index entry's hash when read: a file damaged after it was
//! packed gives an error naming the file and the image, never different pixels.
//!
//! Images are read with `pread`, not through a map of the whole file: a process's resident
//! memory holds the batch it is making, whatever the set's size (the kernel's page cache keeps
//! what is read often, outside the process).

use super::image::{MAX_FILE_BYTES, decode_rgb, decode_rgb_within, encode_jpeg, resize_center_square};
use super::stats::{DataStats, StatsAccumulator};
use super::{ClassInfo, DataError};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const MAGIC_V1: &[u8; 16] = b"ALEXNET-PACKED\0\x01";
const MAGIC: &[u8; 16] = b"ALEXNET-PACKED\0\x02";
const DATA_START: usize = 64;
/// Bytes of one index entry.
const ENTRY_LEN: usize = 32;
/// The largest metadata JSON read. It holds the exact sums behind the statistics, ~10 bytes of
/// text per stored value (S·S·3 of them: ~2 MB at 256, ~500 MB at the largest stored size),
/// and the classes; it is also bounded by the file's length, checked first.
const MAX_META: usize = 1 << 30;
/// Encoded images whose decoded pixels are recorded at packing time, so that a build whose
/// JPEG/PNG decoder gives other pixels is caught when the file is opened.
const DECODER_PROBES: usize = 8;
/// The most pixels an encoded record may decode to (1 gigapixel, 3 GB as RGB).
const MAX_DECODED_PIXELS: u64 = 1 << 30;

/// The quality of the JPEGs an image larger than the stored size is kept as (FFCV's default
/// for ImageNet; README, *Data*, gives its measured size and cost).
pub const JPEG_QUALITY: u8 = 90;

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
    /// The first [`DECODER_PROBES`] encoded images: (index, [`check_of`] their pixels as read).
    #[serde(default)]
    probes: Vec<(usize, u32)>,
}

/// How one image is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `S·S·3` bytes, HWC RGB, at the stored size.
    Raw,
    /// A JPEG or PNG file of `width × height` (after its EXIF rotation), brought to `S × S`
    /// when read.
    Encoded,
    /// `width · height · 3` bytes, HWC RGB, brought to `S × S` when read.
    RawNative,
}

impl Kind {
    fn code(self) -> u32 {
        match self {
            Kind::Raw => 0,
            Kind::Encoded => 1,
            Kind::RawNative => 2,
        }
    }
    fn from_code(c: u32) -> Option<Self> {
        [Kind::Raw, Kind::Encoded, Kind::RawNative].into_iter().find(|k| k.code() == c)
    }
}

/// One stored image: how, and where in the file.
#[derive(Clone, Copy, Debug)]
struct Entry {
    offset: u64,
    len: u64,
    kind: Kind,
    width: u32,
    height: u32,
    /// [`check_of`] the record (format 1 files have none).
    check: Option<u32>,
}

/// The little-endian u32 at `o` of `b` (in bounds: the caller read those bytes).
fn le_u32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"))
}

/// The little-endian u64 at `o` of `b` (in bounds: the caller read those bytes).
fn le_u64(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"))
}

/// The first 4 bytes of the SHA-256 of `bytes`: what a record is checked against when read.
fn check_of(bytes: &[u8]) -> u32 {
    use sha2::Digest;
    let h = sha2::Sha256::digest(bytes);
    u32::from_le_bytes([h[0], h[1], h[2], h[3]])
}

/// One image as [`Packer`] stores it.
pub struct Record {
    pub kind: Kind,
    pub width: u32,
    pub height: u32,
    pub bytes: Vec<u8>,
}

/// Where each image's record is: format 2's index, or format 1's fixed-size raw images from
/// byte 64 (computed, not listed: a format-1 file of tiny images must not make a large index).
enum Index {
    Listed(Vec<Entry>),
    Fixed { count: usize, len: u64 },
}

impl Index {
    fn get(&self, i: usize) -> Option<Entry> {
        match self {
            Index::Listed(v) => v.get(i).copied(),
            Index::Fixed { count, len } => (i < *count).then(|| Entry {
                offset: DATA_START as u64 + i as u64 * len,
                len: *len,
                kind: Kind::Raw,
                width: 0,
                height: 0,
                check: None,
            }),
        }
    }

    fn iter(&self) -> impl Iterator<Item = Entry> + '_ {
        let n = match self {
            Index::Listed(v) => v.len(),
            Index::Fixed { count, .. } => *count,
        };
        (0..n).filter_map(|i| self.get(i))
    }
}

enum Storage {
    File(std::fs::File),
    Owned(Vec<u8>),
}

impl Storage {
    fn len(&self) -> std::io::Result<u64> {
        match self {
            Storage::File(f) => Ok(f.metadata()?.len()),
            Storage::Owned(v) => Ok(v.len() as u64),
        }
    }

    /// `len` bytes at `offset` (bounds already checked against the file's length).
    fn read(&self, offset: u64, len: usize) -> std::io::Result<Cow<'_, [u8]>> {
        match self {
            Storage::File(f) => {
                let mut buf = vec![0u8; len];
                f.read_exact_at(&mut buf, offset)?;
                Ok(Cow::Owned(buf))
            }
            Storage::Owned(v) => {
                let o = usize::try_from(offset).map_err(std::io::Error::other)?;
                v.get(o..o.saturating_add(len))
                    .map(Cow::Borrowed)
                    .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))
            }
        }
    }
}

/// A packed set of images with labels, classes and statistics; every image comes out RGB at
/// `size × size`.
pub struct PackedImages {
    storage: Storage,
    /// The file's path, for errors (`<memory>` for an in-memory set).
    path: PathBuf,
    entries: Index,
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
    /// Bytes of one image as it comes out: `size · size · 3`.
    pub fn image_len(&self) -> usize {
        self.size * self.size * 3
    }

    /// Bytes the images take in the file (records only), for reports.
    pub fn stored_bytes(&self) -> u64 {
        self.entries.iter().map(|e| e.len).sum()
    }

    /// How image `i` is stored, and its record's bytes.
    pub fn stored_as(&self, i: usize) -> Option<(Kind, u64)> {
        self.entries.get(i).map(|e| (e.kind, e.len))
    }

    /// How many images are stored each way: raw at the stored size, encoded, raw at their own.
    pub fn kinds(&self) -> [usize; 3] {
        let mut n = [0; 3];
        self.entries.iter().for_each(|e| n[e.kind.code() as usize] += 1);
        n
    }

    /// Image `i`, `size × size` HWC RGB. An encoded image is decoded here; an error means the
    /// file changed or was damaged after it was packed (every image decoded when it was).
    pub fn image(&self, i: usize) -> Result<Cow<'_, [u8]>, DataError> {
        let bad =
            |problem: String| DataError::Cache { path: self.path.clone(), problem: format!("image {i}: {problem}") };
        let e = self.entries.get(i).ok_or_else(|| bad(format!("out of range ({} images)", self.count)))?;
        let bytes = self.storage.read(e.offset, e.len as usize).map_err(|err| bad(err.to_string()))?;
        if e.check.is_some_and(|c| c != check_of(&bytes)) {
            return Err(bad(
                "damaged since it was packed (its bytes do not match their hash): delete the file to pack it again"
                    .into(),
            ));
        }
        let img = match e.kind {
            Kind::Raw => return Ok(bytes),
            Kind::RawNative => image::RgbImage::from_raw(e.width, e.height, bytes.into_owned())
                .ok_or_else(|| bad("raw pixels of the wrong length".into()))?,
            Kind::Encoded => {
                let name = self.path.join(format!("image-{i}"));
                // The packer decoded it under its own pixel limit: allow exactly its size here
                // (within a bound no real image passes), whatever this process's limit.
                let limit = (u64::from(e.width) * u64::from(e.height)).min(MAX_DECODED_PIXELS);
                let img = decode_rgb_within(&bytes, &name, limit).map_err(|err| bad(err.to_string()))?;
                if img.dimensions() != (e.width, e.height) {
                    return Err(bad(format!(
                        "decodes to {}x{}, packed as {}x{}",
                        img.width(),
                        img.height(),
                        e.width,
                        e.height
                    )));
                }
                img
            }
        };
        Ok(Cow::Owned(resize_center_square(&img, self.size)))
    }

    /// Opens a cache file written by [`Packer`] (format 2) or by an earlier release (format 1).
    pub fn open(path: &Path) -> Result<Self, DataError> {
        let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
        Self::parse(Storage::File(file), path)
    }

    /// Parses an in-memory packed set (as [`Packer::finish`] on a `Vec` returns).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, DataError> {
        Self::parse(Storage::Owned(bytes), Path::new("<memory>"))
    }

    /// Reads the trailer, metadata, index, labels and mean image, checking every size the file
    /// states against the file's length before anything is allocated from it.
    fn parse(storage: Storage, path: &Path) -> Result<Self, DataError> {
        let bad = |p: &str| DataError::Cache { path: path.into(), problem: p.into() };
        let io = |e: std::io::Error| DataError::io(path, e);
        let file_len = storage.len().map_err(io)?;
        if file_len < (DATA_START + 32) as u64 {
            return Err(bad("not an alexnet packed image file (too short); create it with `alexnet prepare`"));
        }
        let head = storage.read(0, 16).map_err(io)?;
        let v1 = match &head[..] {
            m if m == MAGIC => false,
            m if m == MAGIC_V1 => true,
            _ => return Err(bad("not an alexnet packed image file (bad magic); create it with `alexnet prepare`")),
        };
        let tail = storage.read(file_len - 32, 32).map_err(io)?;
        if tail[16..] != head[..] {
            return Err(bad("incomplete file (no trailer); delete it and run `alexnet prepare` again"));
        }
        let (json_off, json_len) = (le_u64(&tail, 0), le_u64(&tail, 8));
        if json_len > MAX_META as u64 || json_off.checked_add(json_len).is_none_or(|end| end != file_len - 32) {
            return Err(bad("corrupt trailer"));
        }
        let json = storage.read(json_off, json_len as usize).map_err(io)?;
        let meta: Meta = serde_json::from_slice(&json).map_err(|e| bad(&format!("bad metadata: {e}")))?;
        if meta.size == 0 || meta.size > crate::model::plan::limits::MAX_STORED {
            return Err(bad(&format!("image size {} out of range", meta.size)));
        }
        let img_len = (meta.size * meta.size * 3) as u64;
        let layout = sections(meta.count as u64, img_len, json_off, v1);
        let Some((index_off, labels_off, mean_off)) = layout else {
            return Err(bad("sizes in the metadata do not match the file"));
        };
        let entries = if v1 {
            Index::Fixed { count: meta.count, len: img_len }
        } else {
            let index = storage.read(index_off, meta.count * ENTRY_LEN).map_err(io)?;
            Index::Listed(parse_index(&index, index_off, meta.size).map_err(|p| bad(&p))?)
        };
        let label_bytes = storage.read(labels_off, meta.count * 4).map_err(io)?;
        let labels: Vec<u32> = label_bytes.chunks_exact(4).map(|c| le_u32(c, 0)).collect();
        if let Some(l) = labels.iter().find(|&&l| l as usize >= meta.classes.len()) {
            return Err(bad(&format!("label {l} out of range for {} classes", meta.classes.len())));
        }
        let mut stats = meta.stats;
        stats.mean_image = crate::tensor::f32_from_le_bytes(&storage.read(mean_off, img_len as usize * 4).map_err(io)?);
        // The sums stand in for reading the images again (`stats_of`): they must be the ones
        // these statistics came from.
        if let Some(s) = &meta.sums
            && !(s.fits(meta.size) && s.count() == meta.count as u64 && s.finish() == stats)
        {
            return Err(bad("the statistics do not match the sums they were computed from"));
        }
        let probes = meta.probes;
        let set = Self {
            storage,
            path: path.into(),
            entries,
            count: meta.count,
            size: meta.size,
            labels,
            classes: meta.classes,
            stats,
            source: meta.source,
            key: meta.key,
            skipped: meta.skipped,
            sums: meta.sums,
        };
        set.check_decoder(&probes)?;
        Ok(set)
    }

    /// Decodes the probed images and compares their pixels with those recorded when the file
    /// was packed: a build whose JPEG or PNG decoder gives other pixels would read other images
    /// than the statistics describe.
    fn check_decoder(&self, probes: &[(usize, u32)]) -> Result<(), DataError> {
        for &(i, want) in probes.iter().take(DECODER_PROBES) {
            if check_of(&self.image(i)?) != want {
                return Err(DataError::Cache {
                    path: self.path.clone(),
                    problem: format!(
                        "image {i} decodes to other pixels in this build than when the file was packed (a changed \
                         JPEG/PNG decoder): pack the folder again (`alexnet prepare`)"
                    ),
                });
            }
        }
        Ok(())
    }

    /// Statistics over a subset (e.g. the training part of a `--val-split`). When the subset
    /// is most of the set and the file kept its sums, the images left out are read and their
    /// sums taken from the whole's (exact integers: the same statistics, a tenth of the reading
    /// for a 10% split).
    pub fn stats_of(&self, indices: &[u32]) -> Result<DataStats, DataError> {
        if let Some(total) = &self.sums
            && total.count() == self.count as u64
            && indices.len() * 2 > self.count
        {
            let mut inside = vec![false; self.count];
            let distinct =
                indices.iter().all(|&i| inside.get_mut(i as usize).is_some_and(|seen| !std::mem::replace(seen, true)));
            if distinct {
                let outside: Vec<u32> = (0..self.count as u32).filter(|&i| !inside[i as usize]).collect();
                if let Some(rest) = total.minus(&self.sums_of(&outside)?) {
                    return Ok(rest.finish());
                }
            }
        }
        Ok(self.sums_of(indices)?.finish())
    }

    fn sums_of(&self, indices: &[u32]) -> Result<StatsAccumulator, DataError> {
        indices
            .par_chunks(256)
            .map(|ch| {
                let mut acc = StatsAccumulator::new(self.size);
                for &i in ch {
                    acc.add(&self.image(i as usize)?);
                }
                Ok(acc)
            })
            .try_reduce(|| StatsAccumulator::new(self.size), |a, b| Ok(a.merge(&b)))
    }
}

/// Where the index, labels and mean image start, from the file's numbers with checked
/// arithmetic (a wrap must not pass): the sections before the metadata at `json_off` must end
/// exactly where it starts, and the images (format 1: `count` raw images from byte 64) where
/// the index does.
fn sections(count: u64, img_len: u64, json_off: u64, v1: bool) -> Option<(u64, u64, u64)> {
    let mean_off = json_off.checked_sub(img_len * 4)?;
    let labels_off = mean_off.checked_sub(count.checked_mul(4)?)?;
    let index_off = if v1 { labels_off } else { labels_off.checked_sub(count.checked_mul(ENTRY_LEN as u64)?)? };
    let images_end = if v1 { count.checked_mul(img_len)?.checked_add(DATA_START as u64)? } else { index_off };
    (index_off >= DATA_START as u64 && images_end == index_off).then_some((index_off, labels_off, mean_off))
}

/// The index of a format-2 file: every entry's record inside `[DATA_START, index_off)` and of
/// the length its kind implies.
fn parse_index(index: &[u8], index_off: u64, size: usize) -> Result<Vec<Entry>, String> {
    let raw_len = (size * size * 3) as u64;
    index
        .chunks_exact(ENTRY_LEN)
        .enumerate()
        .map(|(i, b)| {
            let (offset, len) = (le_u64(b, 0), le_u64(b, 8));
            let kind =
                Kind::from_code(le_u32(b, 16)).ok_or_else(|| format!("image {i}: unknown kind {}", le_u32(b, 16)))?;
            let (width, height) = (le_u32(b, 20), le_u32(b, 24));
            let inside = offset >= DATA_START as u64 && offset.checked_add(len).is_some_and(|end| end <= index_off);
            // What the packer writes: a raw square no larger than the stored size, or a file
            // whose shorter side is at most the stored size (a re-encoded image is exactly it).
            let (w, h) = (width as usize, height as usize);
            let fits = match kind {
                Kind::Raw => len == raw_len,
                Kind::RawNative => w > 0 && w == h && w <= size && len == (w * w * 3) as u64,
                Kind::Encoded => w > 0 && h > 0 && w.min(h) <= size && len > 0 && len <= MAX_FILE_BYTES,
            };
            if !(inside && fits) {
                return Err(format!(
                    "image {i}: its record ({len} bytes at {offset}, {kind:?} {width}x{height}) does not fit the file"
                ));
            }
            Ok(Entry { offset, len, kind, width, height, check: Some(le_u32(b, 28)) })
        })
        .collect()
}

/// How images are stored: the stored size, the JPEG quality of images larger than it, and
/// whether every image is re-encoded at the stored size (to measure what a quality costs on
/// sets whose photos are all below it; `prepare --reencode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredAs {
    pub size: usize,
    pub quality: u8,
    pub reencode: bool,
}

impl StoredAs {
    /// `size × size`, the default quality, small images kept as they are.
    pub fn at(size: usize) -> Self {
        Self { size, quality: JPEG_QUALITY, reencode: false }
    }
}

/// One image file as the cache keeps it (as `how` says), and its pixels at `how.size` squared
/// exactly as [`PackedImages::image`] will give them back (for the statistics). See the module
/// doc.
pub fn encode_file(path: &Path, how: StoredAs) -> Result<(Record, Vec<u8>), DataError> {
    let size = how.size;
    let bytes = crate::files::read_regular(path, MAX_FILE_BYTES).map_err(|e| DataError::io(path, e))?;
    let img = decode_rgb(&bytes, path)?;
    let (w, h) = img.dimensions();
    let pixels = resize_center_square(&img, size);
    let side = w.min(h);
    if side as usize <= size && !how.reencode {
        // Kept at its own size: the file, or its central square raw when smaller (a PNG of
        // noise, a long panorama). The square gives the same pixels: the resize crops it first.
        let square = u64::from(side) * u64::from(side) * 3;
        let record = if bytes.len() as u64 <= square {
            Record { kind: Kind::Encoded, width: w, height: h, bytes }
        } else {
            let (x0, y0) = ((w - side) / 2, (h - side) / 2);
            let raw = image::imageops::crop_imm(&img, x0, y0, side, side).to_image().into_raw();
            Record { kind: Kind::RawNative, width: side, height: side, bytes: raw }
        };
        return Ok((record, pixels));
    }
    let jpeg =
        encode_jpeg(&pixels, size, how.quality).map_err(|reason| DataError::Decode { path: path.into(), reason })?;
    if jpeg.len() >= pixels.len() {
        let s = size as u32;
        return Ok((Record { kind: Kind::Raw, width: s, height: s, bytes: pixels.clone() }, pixels));
    }
    // The statistics are those of the pixels training will see: the JPEG's, decoded.
    let seen = decode_rgb(&jpeg, path)?.into_raw();
    let s = size as u32;
    Ok((Record { kind: Kind::Encoded, width: s, height: s, bytes: jpeg }, seen))
}

/// Streams images into a packed set: records to the writer as they come, the index, labels
/// and statistics at [`Packer::finish`].
pub struct Packer<W: Write> {
    out: W,
    size: usize,
    entries: Vec<Entry>,
    labels: Vec<u32>,
    acc: StatsAccumulator,
    written: u64,
    key: String,
    skipped: Vec<String>,
    probes: Vec<(usize, u32)>,
}

impl<W: Write> Packer<W> {
    pub fn new(mut out: W, size: usize) -> std::io::Result<Self> {
        out.write_all(MAGIC)?;
        out.write_all(&[0u8; DATA_START - 16])?;
        Ok(Self {
            out,
            size,
            entries: Vec::new(),
            labels: Vec::new(),
            acc: StatsAccumulator::new(size),
            written: DATA_START as u64,
            key: String::new(),
            skipped: Vec::new(),
            probes: Vec::new(),
        })
    }

    /// Adds a `size × size` RGB image, stored raw.
    pub fn push(&mut self, image: &[u8], label: u32) -> std::io::Result<()> {
        assert_eq!(image.len(), self.size * self.size * 3, "image size");
        let s = self.size as u32;
        self.push_record(Record { kind: Kind::Raw, width: s, height: s, bytes: image.to_vec() }, image, label)
    }

    /// Adds an image stored as `record`, whose pixels at the stored size are `pixels` (exactly
    /// what reading it back gives: they go into the statistics).
    pub fn push_record(&mut self, record: Record, pixels: &[u8], label: u32) -> std::io::Result<()> {
        assert_eq!(pixels.len(), self.size * self.size * 3, "image size");
        self.out.write_all(&record.bytes)?;
        let len = record.bytes.len() as u64;
        let (kind, width, height, check) = (record.kind, record.width, record.height, Some(check_of(&record.bytes)));
        if kind != Kind::Raw && self.probes.len() < DECODER_PROBES {
            self.probes.push((self.labels.len(), check_of(pixels)));
        }
        self.entries.push(Entry { offset: self.written, len, kind, width, height, check });
        self.acc.add(pixels);
        self.labels.push(label);
        self.written += len;
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

    /// Writes the index, labels, mean image, metadata and trailer; returns the writer.
    pub fn finish(mut self, classes: Vec<ClassInfo>, source: &str) -> std::io::Result<(W, DataStats)> {
        let stats = self.acc.finish();
        for e in &self.entries {
            let mut b = [0u8; ENTRY_LEN];
            b[0..8].copy_from_slice(&e.offset.to_le_bytes());
            b[8..16].copy_from_slice(&e.len.to_le_bytes());
            b[16..20].copy_from_slice(&e.kind.code().to_le_bytes());
            b[20..24].copy_from_slice(&e.width.to_le_bytes());
            b[24..28].copy_from_slice(&e.height.to_le_bytes());
            b[28..32].copy_from_slice(&e.check.unwrap_or(0).to_le_bytes());
            self.out.write_all(&b)?;
        }
        for l in &self.labels {
            self.out.write_all(&l.to_le_bytes())?;
        }
        for m in &stats.mean_image {
            self.out.write_all(&m.to_le_bytes())?;
        }
        let n = self.labels.len() as u64;
        let json_off = self.written + (ENTRY_LEN as u64 + 4) * n + 4 * stats.mean_image.len() as u64;
        let meta = Meta {
            count: self.labels.len(),
            size: self.size,
            classes,
            stats: stats.clone(),
            source: source.into(),
            key: std::mem::take(&mut self.key),
            skipped: std::mem::take(&mut self.skipped),
            sums: Some(self.acc.clone()),
            probes: std::mem::take(&mut self.probes),
        };
        let json = serde_json::to_vec(&meta).map_err(std::io::Error::other)?;
        self.out.write_all(&json)?;
        self.out.write_all(&json_off.to_le_bytes())?;
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
    each_file(items, on_bad, on_progress, &|p| super::image::load_square(p, size), sink)
}

/// `work` on every file of `items` in parallel chunks of 256, results to `sink` in order; see
/// [`decode_each`].
fn each_file<T: Send>(
    items: &[(PathBuf, u32)],
    on_bad: OnBadImage,
    on_progress: &(dyn Fn(usize) + Sync),
    work: &(dyn Fn(&Path) -> Result<T, DataError> + Sync),
    sink: &mut dyn FnMut(&Path, u32, T) -> Result<(), DataError>,
) -> Result<Vec<String>, DataError> {
    let mut skipped = Vec::new();
    let mut done = 0;
    for chunk in items.chunks(256) {
        let results: Vec<Result<T, DataError>> = chunk.par_iter().map(|(p, _)| work(p)).collect();
        for ((path, label), r) in chunk.iter().zip(results) {
            match r {
                Ok(v) => sink(path, *label, v)?,
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

/// Encodes `items` for the cache ([`encode_file`]) and streams them into `packer`.
pub fn pack_files<W: Write>(
    packer: &mut Packer<W>,
    items: &[(PathBuf, u32)],
    how: StoredAs,
    on_bad: OnBadImage,
    on_progress: &(dyn Fn(usize) + Sync),
) -> Result<Vec<String>, DataError> {
    each_file(items, on_bad, on_progress, &|p| encode_file(p, how), &mut |path, label, (record, pixels)| {
        packer.push_record(record, &pixels, label).map_err(|e| DataError::io(path, e))
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

/// About the bytes of a packed file of `images`, each at most `size × size`, given their files'
/// lengths: an image keeps its file's bytes or fewer, or is re-encoded at `size` (rarely more
/// than the file it came from), and never takes more than `size²·3` (plus the index, labels,
/// mean image and a generous allowance for the metadata).
pub fn packed_bytes(file_lens: &[u64], size: usize, classes: usize) -> u64 {
    let img = (size as u64).saturating_mul(size as u64).saturating_mul(3);
    let images = file_lens.iter().fold(0u64, |t, &l| t.saturating_add(l.min(img)).saturating_add(ENTRY_LEN as u64 + 4));
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
    how: StoredAs,
    origin: Origin<'_>,
    on_bad: OnBadImage,
    on_progress: &(dyn Fn(usize) + Sync),
) -> Result<PackReport, DataError> {
    use std::os::unix::fs::PermissionsExt;
    let size = how.size;
    if !(1..=100).contains(&how.quality) {
        return Err(DataError::Cache {
            path: out.into(),
            problem: format!("JPEG quality {} outside 1..=100", how.quality),
        });
    }
    let t0 = std::time::Instant::now();
    let max = crate::model::plan::limits::MAX_STORED;
    if size == 0 || size > max {
        return Err(DataError::Cache { path: out.into(), problem: format!("stored size {size} outside 1..={max}") });
    }
    let dir = out.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    crate::files::check_writable(out).map_err(|e| DataError::io(out, e))?;
    let lens: Vec<u64> = items.par_iter().map(|(p, _)| std::fs::metadata(p).map_or(0, |m| m.len())).collect();
    let needed = packed_bytes(&lens, size, classes.len());
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
    let skipped = pack_files(&mut packer, items, how, on_bad, on_progress)?;
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
    pack_files(&mut packer, items, StoredAs::at(size), on_bad, &|_| {})?;
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
