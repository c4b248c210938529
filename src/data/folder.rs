//! Image folders: `ROOT/<class>/<image>`, classes in sorted order of their folder names, with
//! optional human names from a `wnid<TAB>name` file (as ILSVRC's class list).

use super::{ClassInfo, DataError};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct ImageFolder {
    pub root: PathBuf,
    pub classes: Vec<ClassInfo>,
    /// Every file under a class folder, with its class index, in (class, file name) order.
    pub items: Vec<(PathBuf, u32)>,
}

/// Parses `wnid<TAB>name` lines in order; blank lines and `#` comments are skipped. `path`
/// names the text in errors.
pub fn parse_class_list(text: &str, path: &Path) -> Result<Vec<ClassInfo>, DataError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (id, name) = line
            .split_once('\t')
            .ok_or_else(|| DataError::layout(path, format!("line {}: expected `id<TAB>name`, got {line:?}", i + 1)))?;
        out.push(ClassInfo { id: id.trim().to_string(), name: name.trim().to_string() });
    }
    Ok(out)
}

/// Reads a class list file (see [`parse_class_list`]), in its line order.
pub fn read_class_list(path: &Path) -> Result<Vec<ClassInfo>, DataError> {
    let bytes = crate::files::read_regular(path, crate::files::MAX_TEXT_BYTES).map_err(|e| DataError::io(path, e))?;
    let text = String::from_utf8(bytes).map_err(|_| DataError::layout(path, "not UTF-8 text"))?;
    parse_class_list(&text, path)
}

/// A class list file as a map from id to name.
pub fn read_class_names(path: &Path) -> Result<HashMap<String, String>, DataError> {
    Ok(read_class_list(path)?.into_iter().map(|c| (c.id, c.name)).collect())
}

fn hidden(p: &Path) -> bool {
    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'))
}

/// A folder name as a class id: UTF-8 as it is (a backslash doubled), invalid bytes as
/// `\xNN`, so that two names differing only in invalid bytes stay two classes.
pub fn class_id(name: &std::ffi::OsStr) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for chunk in name.as_bytes().utf8_chunks() {
        // A literal backslash is doubled, so `x\\xff` (text) and `x` + 0xFF (a byte) differ.
        out.push_str(&chunk.valid().replace('\\', "\\\\"));
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Whether a class folder's entry is an image file to read; anything else is skipped with a
/// warning saying why (never opened: a FIFO would block the run).
pub(crate) fn is_image_candidate(p: &Path) -> bool {
    if hidden(p) {
        return false;
    }
    match std::fs::metadata(p) {
        Ok(m) if m.is_file() => true,
        Ok(m) if m.is_dir() => {
            eprintln!("warning: skipping {}: a folder inside a class folder", p.display());
            false
        }
        Ok(_) => {
            eprintln!("warning: skipping {}: not a regular file (FIFO, socket or device)", p.display());
            false
        }
        Err(e) => {
            let why = if p.is_symlink() { "a symbolic link to nothing (dangling, or a loop)" } else { "unreadable" };
            eprintln!("warning: skipping {}: {why}: {e}", p.display());
            false
        }
    }
}

impl ImageFolder {
    /// Scans `root`. Hidden entries (`.DS_Store`, ...) are ignored; everything else in a class
    /// folder is taken as an image and checked when decoded.
    pub fn scan(root: &Path, class_names: Option<&Path>) -> Result<Self, DataError> {
        let names = class_names.map(read_class_names).transpose()?;
        let mut dirs: Vec<PathBuf> = Vec::new();
        let mut stray = Vec::new();
        for e in std::fs::read_dir(root).map_err(|e| DataError::io(root, e))? {
            let p = e.map_err(|e| DataError::io(root, e))?.path();
            if hidden(&p) {
                continue;
            }
            if p.is_dir() {
                dirs.push(p);
            } else {
                stray.push(p);
            }
        }
        if dirs.is_empty() {
            let hint = if stray.is_empty() {
                "it is empty"
            } else {
                "it holds files but no class folders (a flat validation folder, as ILSVRC-2012's ships, \
                 needs its labels file: `train --val-labels FILE`, `eval --labels FILE`)"
            };
            return Err(DataError::layout(
                root,
                format!("expected one folder per class (ROOT/<class>/<image>); {hint}"),
            ));
        }
        dirs.sort();
        let mut classes = Vec::new();
        let mut items = Vec::new();
        for (ci, dir) in dirs.iter().enumerate() {
            let id = dir.file_name().map(class_id).unwrap_or_default();
            let name = names.as_ref().and_then(|m| m.get(&id).cloned()).unwrap_or_else(|| id.clone());
            classes.push(ClassInfo { id, name });
            let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(|e| DataError::io(dir, e))?
                .map(|e| e.map(|e| e.path()).map_err(|e| DataError::io(dir, e)))
                .collect::<Result<_, _>>()?;
            files.retain(|p| is_image_candidate(p));
            if files.is_empty() {
                return Err(DataError::layout(dir, "class folder holds no images"));
            }
            files.sort();
            items.extend(files.into_iter().map(|p| (p, ci as u32)));
        }
        Ok(Self { root: root.into(), classes, items })
    }
}
