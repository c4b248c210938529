//! Turning what the user names (`--data PATH`) into a packed image set: a cache file made by
//! `alexnet prepare`, an IDX images file, or an image folder (packed into a cache on first use).

use super::cache::{self, OnBadImage, PackedImages};
use super::store::{self, CacheStore, PackLock};
use super::{ClassInfo, DataError, folder::ImageFolder, idx};
use std::path::{Path, PathBuf};

/// How to report packing progress: called with (done, total).
pub type Progress<'a> = &'a (dyn Fn(usize, usize) + Sync);

/// True when `path` starts with the cache magic.
pub fn is_cache_file(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 14];
    path.is_file()
        && std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok()
        && &magic == b"ALEXNET-PACKED"
}

/// How [`open`] packs a folder.
#[derive(Clone, Copy, Debug)]
pub struct Packing<'a> {
    /// Stored image side.
    pub size: usize,
    /// Class names, `wnid<TAB>name` per line.
    pub class_names: Option<&'a Path>,
    /// The labels of a flat folder (ILSVRC-2012's validation set; [`super::ilsvrc`]): `None`
    /// for a folder of class folders.
    pub labels: Option<&'a Path>,
    pub on_bad: OnBadImage,
    /// Where folders' caches live, shared between runs.
    pub store: &'a CacheStore,
    /// A cache packed before the shared store (a run folder's own `cache/NAME-SIZE.bin`), used
    /// while it matches the folder (same source, size, count and classes) so that resuming an
    /// old run reads exactly the pixels it started with.
    pub legacy: Option<&'a Path>,
}

/// Opens `path` at `how.size × how.size`. A folder is packed into the shared cache on first use
/// and found there again while its contents' key matches (see [`super::store`]).
pub fn open(path: &Path, how: &Packing<'_>, progress: Progress<'_>) -> Result<PackedImages, DataError> {
    let size = how.size;
    if !path.exists() {
        return Err(DataError::layout(path, "no such file or folder"));
    }
    if let Some(labels) = how.labels
        && !path.is_dir()
    {
        return Err(DataError::layout(
            path,
            format!("{} labels a flat folder of images; this is not a folder", labels.display()),
        ));
    }
    if is_cache_file(path) {
        let p = PackedImages::open(path)?;
        if p.size != size {
            return Err(DataError::Cache {
                path: path.into(),
                problem: format!(
                    "images are {0}x{0}, the model needs {size}x{size}: prepare it with --size {size}",
                    p.size
                ),
            });
        }
        return Ok(p);
    }
    if idx::is_idx_images(path) {
        return open_idx(path, size, how.class_names);
    }
    if path.is_file() {
        return Err(DataError::layout(
            path,
            "expected an image folder (ROOT/<class>/<image>), a file made by `alexnet prepare`, or an IDX images file",
        ));
    }
    open_folder(path, how, progress)
}

/// [`open`] for a folder: its shared cache, found fresh or packed now.
fn open_folder(path: &Path, how: &Packing<'_>, progress: Progress<'_>) -> Result<PackedImages, DataError> {
    let size = how.size;
    let folder = ImageFolder::scan_labelled(path, how.labels, how.class_names)?;
    let source = std::fs::canonicalize(path).unwrap_or_else(|_| path.into()).display().to_string();
    if let Some(legacy) = how.legacy
        && let Ok(c) = PackedImages::open(legacy)
        && c.size == size
        && c.source == source
        && c.count + count_skipped(legacy) == folder.items.len()
        && c.classes == folder.classes
    {
        return Ok(c);
    }
    let file = how.store.file_for(path, size);
    let key = store::content_key(path, &folder.items, &folder.classes, size)?;
    // A cache made with --skip-bad lacks the bad files: a run that would stop on them does not
    // take it, but packs again and stops on the first, naming it.
    let fresh =
        |c: &PackedImages| c.size == size && c.key == key && (how.on_bad == OnBadImage::Skip || c.skipped.is_empty());
    // The names come from this command's `--classes` (the key holds only the ids).
    let named = |mut c: PackedImages| {
        c.classes = folder.classes.clone();
        c
    };
    // Files appear at `file` only whole (by rename), so one found fresh is read without the
    // lock, which a read-only cache folder could not give.
    if let Ok(c) = PackedImages::open(&file)
        && fresh(&c)
    {
        return Ok(named(c));
    }
    // Under the lock: a second run packing the same folder waits, then finds the first's file.
    let _lock = PackLock::acquire(&file)?;
    if let Ok(c) = PackedImages::open(&file)
        && fresh(&c)
    {
        return Ok(named(c));
    }
    store::remove_stale_partials(&file);
    let total = folder.items.len();
    let origin = cache::Origin { source: &source, key: &key };
    cache::write_cache(
        &file,
        &folder.items,
        folder.classes.clone(),
        cache::StoredAs::at(size),
        origin,
        how.on_bad,
        &|d| progress(d, total),
    )?;
    PackedImages::open(&file).map(named)
}

/// The shared cache file [`open`] uses for the folder `path`; `None` for a file (a prepared
/// cache or IDX images, read as they are).
pub fn cache_file(path: &Path, how: &Packing<'_>) -> Option<PathBuf> {
    path.is_dir().then(|| how.store.file_for(path, how.size))
}

/// Images skipped when a run's own cache was packed, before the shared cache kept that list in
/// the file: the run's `cache/NAME-SIZE.skipped.txt`.
fn count_skipped(cache_path: &Path) -> usize {
    std::fs::read_to_string(cache_path.with_extension("skipped.txt")).map(|s| s.lines().count()).unwrap_or(0)
}

/// Greyscale IDX images, resized to `size` and replicated to RGB, packed in memory.
pub fn open_idx(path: &Path, size: usize, class_names: Option<&Path>) -> Result<PackedImages, DataError> {
    let (n, side, pixels, labels) = idx::read_set(path)?;
    // Packed in memory: every image becomes size²·3 bytes, whatever its side in the file.
    const MAX_IN_MEMORY: usize = 8 << 30;
    if n.checked_mul(size * size * 3).is_none_or(|b| b > MAX_IN_MEMORY) {
        return Err(DataError::Idx {
            path: path.into(),
            problem: format!("{n} images at {size}x{size} would need more than 8 GiB of memory"),
        });
    }
    let classes_n = labels.iter().map(|&l| l as usize + 1).max().unwrap_or(0);
    let names = class_names.map(super::folder::read_class_names).transpose()?;
    let fashion = path.to_string_lossy().to_lowercase().contains("fashion");
    let classes: Vec<ClassInfo> = (0..classes_n)
        .map(|i| {
            let id = i.to_string();
            let name = names
                .as_ref()
                .and_then(|m| m.get(&id).cloned())
                .or_else(|| (fashion && i < 10).then(|| idx::FASHION_MNIST_CLASSES[i].to_string()))
                .unwrap_or_else(|| id.clone());
            ClassInfo { id, name }
        })
        .collect();
    let images: Vec<Vec<u8>> = pixels
        .chunks_exact(side * side)
        .take(n)
        .map(|g| {
            let rgb = image::RgbImage::from_fn(side as u32, side as u32, |x, y| {
                let v = g[y as usize * side + x as usize];
                image::Rgb([v, v, v])
            });
            super::image::resize_center_square(&rgb, size)
        })
        .collect();
    let labels: Vec<u32> = labels.iter().map(|&l| l as u32).collect();
    Ok(cache::pack_raw(&images, &labels, classes, size, &path.display().to_string()))
}

/// The file of each image that [`open`] packed from the folder `root`, in packing order, or
/// `None` when they cannot be told exactly (not a folder, or images were skipped or the folder
/// changed since: the counts differ).
pub fn packed_files(root: &Path, class_names: Option<&Path>, packed: &PackedImages) -> Option<Vec<PathBuf>> {
    if !root.is_dir() {
        return None;
    }
    let folder = ImageFolder::scan(root, class_names).ok()?;
    let same = folder.items.len() == packed.count
        && folder.items.iter().zip(&packed.labels).all(|((_, l), &p)| *l == p)
        && folder.classes == packed.classes;
    same.then(|| folder.items.into_iter().map(|(p, _)| p).collect())
}

/// The size of the images a data source holds, from a sample: what the default model is
/// chosen by.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageSides {
    /// The median shorter side of the images sampled, in pixels.
    pub median_short: usize,
    /// Images looked at (headers read, for a folder; all, for a cache or IDX file).
    pub sampled: usize,
}

/// The images' shorter side in `path` (a folder, a cache file or an IDX images file): every
/// image of a cache or IDX file (they share one size), or the headers of up to `sample` images
/// of a folder spread evenly over its classes. Unreadable images are left out; `None` when no
/// image could be read.
pub fn image_sides(path: &Path, sample: usize) -> Result<Option<ImageSides>, DataError> {
    if is_cache_file(path) {
        let p = PackedImages::open(path)?;
        return Ok(Some(ImageSides { median_short: p.size, sampled: p.count }));
    }
    if idx::is_idx_images(path) {
        let (dims, _) = idx::read_u8(path)?;
        // [count, rows, cols]: every image has the same shorter side.
        return Ok(dims.get(1..3).map(|hw| ImageSides { median_short: hw[0].min(hw[1]), sampled: dims[0] }));
    }
    let folder = ImageFolder::scan(path, None)?;
    let n = folder.items.len();
    let step = n.div_ceil(sample.max(1)).max(1);
    let mut sides: Vec<usize> = folder
        .items
        .iter()
        .step_by(step)
        .filter_map(|(p, _)| image::ImageReader::open(p).ok()?.with_guessed_format().ok()?.into_dimensions().ok())
        .map(|(w, h)| w.min(h) as usize)
        .collect();
    if sides.is_empty() {
        return Ok(None);
    }
    sides.sort_unstable();
    Ok(Some(ImageSides { median_short: sides[sides.len() / 2], sampled: sides.len() }))
}
