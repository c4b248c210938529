//! The shared cache of packed image folders: one file per folder and stored size, found again by
//! every later run, `eval`, `bench --mode loader` and `prepare`, so that only the first command
//! on a folder decodes it.
//!
//! A cache file is named by the folder's canonical path and the stored size
//! (`<dir>/<folder name>-<size>-<16 hex digits>.bin`) and holds the *key* of the folder's
//! contents it was packed from (every image's relative path, length, modification time and
//! label, the classes, the stored size and the format version). A folder whose key no longer
//! matches (an image added, removed, replaced or touched) is re-packed, never used stale.
//! Packing happens under an exclusive lock on `<file>.lock`, and the new file replaces the old
//! one by a rename: two runs packing the same folder at once pack it once, and a run still
//! reading the old file keeps its (unlinked) copy until it ends.

use super::{ClassInfo, DataError};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Bumped whenever the packed bytes of a given image would change, so old caches are re-packed.
const FORMAT: &str = "alexnet-packed-v1";

/// The directory holding the shared caches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheStore {
    pub dir: PathBuf,
}

impl CacheStore {
    /// `explicit` (`--cache-dir`) if given; else `.alexnet-cache` beside the data (in the folder
    /// holding `data`) when that can be written; else the user's cache directory
    /// (`$XDG_CACHE_HOME/alexnet`, `~/.cache/alexnet`); else the system's temporary directory.
    pub fn resolve(explicit: Option<&Path>, data: &Path) -> Self {
        if let Some(d) = explicit {
            return Self { dir: d.into() };
        }
        let beside = std::fs::canonicalize(data).ok().and_then(|d| d.parent().map(|p| p.join(".alexnet-cache")));
        let user = std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".cache")))
            .map(|c| c.join("alexnet"));
        let dir = [beside, user].into_iter().flatten().find(|d| writable_dir(d));
        Self { dir: dir.unwrap_or_else(|| std::env::temp_dir().join("alexnet-cache")) }
    }

    /// The cache file of the folder `root` at `size × size`.
    pub fn file_for(&self, root: &Path, size: usize) -> PathBuf {
        let canonical = std::fs::canonicalize(root).unwrap_or_else(|_| root.into());
        let name: String = canonical
            .file_name()
            .map(|n| {
                n.to_string_lossy().chars().map(|c| if c.is_alphanumeric() || c == '-' { c } else { '_' }).collect()
            })
            .unwrap_or_else(|| "root".into());
        let hash = Sha256::digest(canonical.as_os_str().as_encoded_bytes());
        self.dir.join(format!("{name}-{size}-{}.bin", hex(&hash[..8])))
    }
}

/// True when `dir` exists or can be made, and a file can be created in it.
fn writable_dir(dir: &Path) -> bool {
    std::fs::create_dir_all(dir).is_ok() && tempfile::tempfile_in(dir).is_ok()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The key of a folder's contents: SHA-256 over the format version, the stored size, the
/// classes, and every image's path relative to `root`, length, modification time (ns) and label.
/// Costs one `stat` per image (a few seconds for ImageNet's 1.28M), against the minutes or hours
/// of decoding that a stale or missed cache costs.
pub fn content_key(
    root: &Path,
    items: &[(PathBuf, u32)],
    classes: &[ClassInfo],
    size: usize,
) -> Result<String, DataError> {
    use rayon::prelude::*;
    let mut h = Sha256::new();
    h.update(FORMAT.as_bytes());
    h.update((size as u64).to_le_bytes());
    for c in classes {
        for s in [&c.id, &c.name] {
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        }
    }
    let entries: Vec<Vec<u8>> = items
        .par_iter()
        .map(|(p, label)| {
            let m = std::fs::metadata(p).map_err(|e| DataError::io(p, e))?;
            let mtime = m.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
            let rel = p.strip_prefix(root).unwrap_or(p).as_os_str().as_encoded_bytes();
            let mut e = Vec::with_capacity(rel.len() + 36);
            e.extend((rel.len() as u64).to_le_bytes());
            e.extend(rel);
            e.extend(m.len().to_le_bytes());
            e.extend(mtime.map_or(u128::MAX, |d| d.as_nanos()).to_le_bytes());
            e.extend(label.to_le_bytes());
            Ok(e)
        })
        .collect::<Result<_, DataError>>()?;
    entries.iter().for_each(|e| h.update(e));
    Ok(hex(&h.finalize()))
}

/// An exclusive lock on `<file>.lock`, held until dropped. `flock` locks an open file
/// description, so it also excludes a second open of the same file within one process.
pub struct PackLock {
    _file: std::fs::File,
}

impl PackLock {
    pub fn acquire(file: &Path) -> Result<Self, DataError> {
        use std::os::fd::AsRawFd;
        let path = file.with_extension("lock");
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
        }
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| DataError::io(&path, e))?;
        loop {
            // SAFETY: flock on a descriptor this function owns; no memory is involved.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(Self { _file: f });
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(DataError::io(&path, e));
            }
        }
    }
}

/// Bytes free for an unprivileged user on the file system holding `dir`, if the system says.
pub fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct we pass and reads the NUL-terminated path.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    (unsafe { libc::statvfs(c.as_ptr(), &mut s) } == 0).then(|| s.f_bavail as u64 * s.f_frsize as u64)
}

/// Refuses to start writing `needed` bytes at `out` when only `free` are available (with a
/// margin of 1%, at least 64 MiB, for the rest of the system), naming both in GB.
pub fn check_room(out: &Path, needed: u64, free: Option<u64>) -> Result<(), DataError> {
    let Some(free) = free else { return Ok(()) };
    let margin = (free / 100).max(64 << 20);
    if needed.saturating_add(margin) > free {
        let gb = |b: u64| b as f64 / 1e9;
        return Err(DataError::Cache {
            path: out.into(),
            problem: format!(
                "the packed images need {:.2} GB and the disk has {:.2} GB free: free some space, or give \
                 --cache-dir on a disk with room",
                gb(needed),
                gb(free)
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_dir_wins_and_file_names_depend_on_folder_and_size() {
        let s = CacheStore::resolve(Some(Path::new("/some/where")), Path::new("/data/train"));
        assert_eq!(s.dir, Path::new("/some/where"));
        let a = s.file_for(Path::new("/data/train"), 256);
        assert!(a.file_name().unwrap().to_str().unwrap().starts_with("train-256-"), "{a:?}");
        assert_ne!(a, s.file_for(Path::new("/data/train"), 32));
        assert_ne!(a, s.file_for(Path::new("/other/train"), 256));
        assert_eq!(a, s.file_for(Path::new("/data/train"), 256));
    }

    #[test]
    fn check_room_refuses_with_both_sizes() {
        let p = Path::new("/c/x.bin");
        assert!(check_room(p, 1 << 30, Some(10 << 30)).is_ok());
        assert!(check_room(p, 1 << 30, None).is_ok());
        let e = check_room(p, 5_000_000_000, Some(2_000_000_000)).unwrap_err().to_string();
        assert!(e.contains("5.00 GB") && e.contains("2.00 GB free") && e.contains("--cache-dir"), "{e}");
    }
}
