//! Where we write: a regular file or nothing yet, never through a symbolic link or onto a
//! device (`--out /dev/sda`, or a link planted where a run folder's file will go).

use std::path::Path;

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
