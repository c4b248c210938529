//! Files from and for strangers. Reading: regular files only (a FIFO would block forever, a
//! device never ends), and no larger than the caller's limit, checked before reading. Writing:
//! a regular file or nothing yet, never through a symbolic link or onto a device (`--out
//! /dev/sda`, or a link planted where a run folder's file will go).

use std::path::Path;

/// The bytes of `path`, if it is a regular file of at most `max_bytes`. The file is opened
/// without blocking and checked through the open handle, so a FIFO swapped in is never read.
pub fn read_regular(path: &Path, max_bytes: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file (a folder, FIFO, socket or device)"));
    }
    if meta.len() > max_bytes {
        return Err(std::io::Error::other(format!(
            "{} bytes, more than the {max_bytes} read from such a file",
            meta.len()
        )));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    f.by_ref().take(max_bytes).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// A new file at `path` for a temporary write: whatever was there (a stale file, or a link
/// planted to redirect the write) is removed, and the file is created exclusively, so the
/// write never follows a link.
pub fn create_fresh(path: &Path) -> std::io::Result<std::fs::File> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    std::fs::OpenOptions::new().write(true).create_new(true).open(path)
}

/// Writes `bytes` to `path` whole or not at all: into a fresh `path.tmp` (see
/// [`create_fresh`]), then renamed over `path`; the temporary file is removed on failure.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let written = create_fresh(&tmp)
        .and_then(|mut f| std::io::Write::write_all(&mut f, bytes))
        .and_then(|_| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Whether an error means the disk (or the user's quota) is full.
pub fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
}

/// The most bytes read from a weights file (checkpoint, `.pth`, safetensors): 64 GiB.
pub const MAX_WEIGHTS_BYTES: u64 = 64 << 30;
/// The most bytes read from a small text file (class list, config).
pub const MAX_TEXT_BYTES: u64 = 64 << 20;

/// Ok if `path` does not exist or is a regular file (not a symbolic link); else an error
/// saying what it is.
pub fn check_writable(path: &Path) -> std::io::Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return Ok(()) };
    let what = if meta.file_type().is_symlink() {
        "a symbolic link"
    } else if meta.is_dir() {
        "a folder"
    } else if !meta.is_file() {
        "a device, FIFO or socket"
    } else {
        return Ok(());
    };
    Err(std::io::Error::other(format!("is {what}; refusing to write over it (remove it or choose another path)")))
}
