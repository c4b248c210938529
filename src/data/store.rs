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

/// Bumped whenever the packed bytes of a given image would change, so old caches are re-packed
/// (v2: images kept compact, JPEGs of quality [`super::cache::JPEG_QUALITY`] above the stored size);
/// the crate's version is part of the key as well, so a release that decodes or resizes
/// differently never reads another's pixels.
const FORMAT: &str = concat!("alexnet-packed-v2 ", env!("CARGO_PKG_VERSION"));

/// The directory holding the shared caches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheStore {
    pub dir: PathBuf,
}

impl CacheStore {
    /// `explicit` (`--cache-dir`) if given; else `.alexnet-cache` beside the data (in the folder
    /// holding `data`, symbolic links resolved) when this user can write there and others cannot
    /// (not `/tmp`: another user could plant a cache there); else the user's cache directory
    /// (`$XDG_CACHE_HOME/alexnet`, `~/.cache/alexnet`); else `alexnet-cache-UID` in the system's
    /// temporary directory, made private to this user when first packed into. Nothing is
    /// created here: a command that packs nothing leaves no trace.
    pub fn resolve(explicit: Option<&Path>, data: &Path) -> Self {
        if let Some(d) = explicit {
            return Self { dir: std::path::absolute(d).unwrap_or_else(|_| d.into()) };
        }
        let beside = std::fs::canonicalize(data)
            .ok()
            .and_then(|d| d.parent().map(Path::to_path_buf))
            .filter(|p| private_writable(p))
            .map(|p| p.join(".alexnet-cache"));
        let user = std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".cache")))
            .map(|c| c.join("alexnet"));
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        let dir = beside.or(user).unwrap_or_else(|| std::env::temp_dir().join(format!("alexnet-cache-{uid}")));
        Self { dir }
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

/// True when this user can create files in the existing folder `dir`, its owner has not made
/// it read-only (root can write into a `r-xr-xr-x` folder, but should not: it says "leave
/// this alone", as a shared dataset folder does), and it is not writable by everyone (the
/// sticky `/tmp`, a shared scratch folder).
fn private_writable(dir: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Ok(mode) = std::fs::metadata(dir).map(|m| m.permissions().mode()) else { return false };
    mode & 0o200 != 0 && mode & 0o002 == 0 && tempfile::tempfile_in(dir).is_ok()
}

/// Creates the cache folder `dir` if needed. The temporary-directory fallback
/// (`alexnet-cache-UID`) is made mode 0700 and must belong to this user: in a folder every user
/// can write to, someone else could have made it first.
pub fn ensure_dir(dir: &Path) -> Result<(), DataError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let shared_tmp = dir.parent() == Some(std::env::temp_dir().as_path());
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    if shared_tmp {
        b.mode(0o700);
    }
    b.create(dir).map_err(|e| DataError::io(dir, e))?;
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let m = std::fs::symlink_metadata(dir).map_err(|e| DataError::io(dir, e))?;
    if shared_tmp && (!m.is_dir() || m.uid() != uid) {
        return Err(DataError::Cache {
            path: dir.into(),
            problem: "belongs to another user or is not a folder: give --cache-dir".into(),
        });
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The key of a folder's contents: SHA-256 over the format version, the stored size, the class
/// ids (not their display names: `--classes` may name them or not, the pixels are the same),
/// and every image's path relative to `root`, length, modification and change times (ns),
/// inode and label. The change time cannot be set back by `touch`, `cp -p` or `rsync -t`, so
/// a file rewritten in place with its old length and modification time is still noticed.
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
        h.update((c.id.len() as u64).to_le_bytes());
        h.update(c.id.as_bytes());
    }
    let entries: Vec<Vec<u8>> = items
        .par_iter()
        .map(|(p, label)| {
            use std::os::unix::fs::MetadataExt;
            let m = std::fs::metadata(p).map_err(|e| DataError::io(p, e))?;
            let mtime = m.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
            let rel = p.strip_prefix(root).unwrap_or(p).as_os_str().as_encoded_bytes();
            let mut e = Vec::with_capacity(rel.len() + 60);
            e.extend((rel.len() as u64).to_le_bytes());
            e.extend(rel);
            e.extend(m.len().to_le_bytes());
            e.extend(mtime.map_or(u128::MAX, |d| d.as_nanos()).to_le_bytes());
            e.extend(m.ctime().to_le_bytes());
            e.extend(m.ctime_nsec().to_le_bytes());
            e.extend(m.ino().to_le_bytes());
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
    /// Takes the lock of `file` (in its folder, created if needed), saying on stderr when it
    /// waits for another process. The lock file is never followed through a symbolic link.
    pub fn acquire(file: &Path) -> Result<Self, DataError> {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::OpenOptionsExt;
        let path = file.with_extension("lock");
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            ensure_dir(dir)?;
        }
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| DataError::io(&path, e))?;
        let mut how = libc::LOCK_EX | libc::LOCK_NB;
        loop {
            // SAFETY: flock on a descriptor this function owns; no memory is involved.
            if unsafe { libc::flock(f.as_raw_fd(), how) } == 0 {
                return Ok(Self { _file: f });
            }
            let e = std::io::Error::last_os_error();
            match e.kind() {
                std::io::ErrorKind::Interrupted => {}
                std::io::ErrorKind::WouldBlock if how & libc::LOCK_NB != 0 => {
                    eprintln!("waiting for another process packing {}", file.display());
                    how = libc::LOCK_EX;
                }
                _ => return Err(DataError::io(&path, e)),
            }
        }
    }
}

/// Removes the temporary files (`FILE.*.partial`) an earlier pack of `file` left when it was
/// killed before it could clean up. Call with the lock held: then no pack of `file` is running.
pub fn remove_stale_partials(file: &Path) {
    let (Some(dir), Some(name)) = (file.parent(), file.file_name().and_then(|n| n.to_str())) else { return };
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let n = e.file_name();
        if n.to_str().is_some_and(|n| n.starts_with(&format!("{name}.")) && n.ends_with(".partial")) {
            let _ = std::fs::remove_file(e.path());
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
        assert!(!Path::new("/some").exists(), "resolving creates nothing");
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
