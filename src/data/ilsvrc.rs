//! ILSVRC-2012's validation set as it ships: one flat folder of 50,000 files
//! (`ILSVRC2012_val_00000001.JPEG` ...) whose classes are in a separate labels file, rather than
//! one folder per class.
//!
//! Labels files read:
//! - `LOC_val_solution.csv` (the Kaggle ImageNet layout): a header `ImageId,PredictionString`,
//!   then `ILSVRC2012_val_00008726,n02119789 255 142 454 329 ...`: the image's name without its
//!   extension, then boxes as `wnid x0 y0 x1 y1` groups; the class is the first group's wnid.
//! - Plain text, one `FILE WNID` pair a line (space, tab or comma between; FILE with or without
//!   its extension), which any other layout converts to in one line of shell.
//!
//! - The devkit's `ILSVRC2012_validation_ground_truth.txt`: one ILSVRC2012_ID a line, line N
//!   for `ILSVRC2012_val_N` (eight digits). The IDs follow the devkit's `meta.mat`, not the
//!   sorted wnids of the usual class index, so they are mapped through the `meta.mat` beside the
//!   file (the devkit's `data/` folder holds both), never through a guessed order.

use super::folder::{ImageFolder, class_id, is_image_candidate, read_class_names};
use super::{ClassInfo, DataError};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

/// Reads a labels file (see the module doc) into image name (without extension) -> wnid.
pub fn read_val_labels(path: &Path) -> Result<HashMap<String, String>, DataError> {
    let bytes = crate::files::read_regular(path, crate::files::MAX_TEXT_BYTES).map_err(|e| DataError::io(path, e))?;
    let text = String::from_utf8(bytes).map_err(|_| DataError::layout(path, "not UTF-8 text"))?;
    // A byte-order mark, as Windows editors write: not part of the first line.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let bad = |line: usize, why: &str| DataError::layout(path, format!("line {line}: {why}"));
    let mut out = HashMap::new();
    let content = || text.lines().map(|l| l.trim()).filter(|l| !l.is_empty());
    if content().next().is_some() && content().all(|l| l.parse::<u32>().is_ok()) {
        return ground_truth(text, path);
    }
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim_end_matches('\r'))).peekable();
    let csv = lines.peek().is_some_and(|(_, l)| l.trim() == "ImageId,PredictionString");
    if csv {
        lines.next();
    }
    for (n, line) in lines {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, wnid) = if csv {
            let (id, prediction) = line.split_once(',').ok_or_else(|| bad(n, "expected `ImageId,PredictionString`"))?;
            let wnid = prediction.split_whitespace().next().ok_or_else(|| bad(n, "no class after the image name"))?;
            (id.trim(), wnid)
        } else {
            let mut parts = line.split(|c: char| c.is_whitespace() || c == ',').filter(|s| !s.is_empty());
            match (parts.next(), parts.next(), parts.next()) {
                (Some(f), Some(w), None) => (f, w),
                _ => return Err(bad(n, &format!("expected `FILE WNID`, got {line:?}"))),
            }
        };
        let stem = Path::new(name).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        if stem.is_empty() {
            return Err(bad(n, "empty image name"));
        }
        if let Some(prev) = out.insert(stem.clone(), wnid.to_string())
            && prev != wnid
        {
            return Err(bad(n, &format!("{stem} labelled twice, {prev} and {wnid}")));
        }
    }
    if out.is_empty() {
        return Err(DataError::layout(path, "no labels in the file"));
    }
    Ok(out)
}

/// The devkit's ground truth: line N's ILSVRC2012_ID is the class of `ILSVRC2012_val_N`,
/// mapped to its wnid through `meta.mat` in the same folder.
fn ground_truth(text: &str, path: &Path) -> Result<HashMap<String, String>, DataError> {
    let meta = path.with_file_name("meta.mat");
    if !meta.is_file() {
        return Err(DataError::layout(
            path,
            format!(
                "holds ILSVRC2012_IDs, which only the devkit's meta.mat maps to classes; expected it at {}",
                meta.display()
            ),
        ));
    }
    let wnid_of = super::matfile::ilsvrc_ids(&meta)?;
    let mut out = HashMap::new();
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let last = lines.iter().rposition(|l| !l.is_empty()).unwrap_or(0);
    for (i, line) in lines[..=last].iter().enumerate() {
        // Line N is image N: a blank line inside would shift every label after it.
        let id: u32 =
            line.parse().map_err(|_| DataError::layout(path, format!("line {}: expected an ILSVRC2012_ID", i + 1)))?;
        let wnid = wnid_of.get(&id).ok_or_else(|| {
            DataError::layout(
                path,
                format!("line {}: ILSVRC2012_ID {id} is not a leaf synset of {}", i + 1, meta.display()),
            )
        })?;
        out.insert(format!("ILSVRC2012_val_{:08}", i + 1), wnid.clone());
    }
    Ok(out)
}

impl ImageFolder {
    /// A folder of class folders ([`ImageFolder::scan`]) or, given its `labels` file, a flat
    /// folder of images ([`ImageFolder::scan_flat`]).
    pub fn scan_labelled(root: &Path, labels: Option<&Path>, class_names: Option<&Path>) -> Result<Self, DataError> {
        match labels {
            Some(labels) => Self::scan_flat(root, labels, class_names),
            None => Self::scan(root, class_names),
        }
    }

    /// A flat folder of images labelled by `labels` (see [`read_val_labels`]). Classes are the
    /// labels' distinct wnids in sorted order (as class folders would be), named from
    /// `class_names` when given. Every image in the folder needs a label; labels of images not
    /// in the folder are ignored (a partial copy of the set is allowed).
    pub fn scan_flat(root: &Path, labels: &Path, class_names: Option<&Path>) -> Result<Self, DataError> {
        let label_of = read_val_labels(labels)?;
        let names = class_names.map(read_class_names).transpose()?;
        let mut files: Vec<_> = std::fs::read_dir(root)
            .map_err(|e| DataError::io(root, e))?
            .map(|e| e.map(|e| e.path()).map_err(|e| DataError::io(root, e)))
            .collect::<Result<_, _>>()?;
        files.retain(|p| !p.is_dir() && is_image_candidate(p));
        if files.is_empty() {
            return Err(DataError::layout(root, "holds no image files"));
        }
        files.sort();
        // Labels are looked up by name without extension: two files sharing it are ambiguous.
        let mut seen = std::collections::HashSet::new();
        for f in &files {
            if !seen.insert(f.file_stem().map(|s| s.to_owned())) {
                return Err(DataError::layout(
                    f,
                    "shares its name without extension with another file: which label is whose?",
                ));
            }
        }
        let mut wnids = Vec::with_capacity(files.len());
        for f in &files {
            let stem = f.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let wnid = label_of.get(&stem).ok_or_else(|| {
                DataError::layout(f, format!("has no label in {} (looked for `{stem}`)", labels.display()))
            })?;
            wnids.push(class_id(std::ffi::OsStr::new(wnid)));
        }
        let ids: Vec<String> = wnids.iter().cloned().collect::<BTreeSet<_>>().into_iter().collect();
        let index: HashMap<&str, u32> = ids.iter().enumerate().map(|(i, id)| (id.as_str(), i as u32)).collect();
        let items = files.into_iter().zip(&wnids).map(|(f, w)| (f, index[w.as_str()])).collect();
        let classes = ids
            .iter()
            .map(|id| ClassInfo {
                id: id.clone(),
                name: names.as_ref().and_then(|m| m.get(id).cloned()).unwrap_or_else(|| id.clone()),
            })
            .collect();
        Ok(Self { root: root.into(), classes, items })
    }
}
