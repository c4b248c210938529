//! Hostile and damaged inputs (images, IDX files, checkpoints, folders, output paths): each gets
//! a clear error naming the file and the problem, never a panic, a hang or a silent wrong answer.
//! Every file is crafted here; PyTorch files are in `hostile_interop.rs`.

use alexnet::Checkpoint;
use alexnet::checkpoint::CheckpointError;
use alexnet::data::idx;
use alexnet::data::image::decode_rgb;
use alexnet::model::ModelConfig;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{png_claiming, tiny_checkpoint};

fn tmpdir(name: &str) -> PathBuf {
    // Below a folder of this process's own: a data folder's shared cache then goes beside it,
    // not into ~/.cache (/tmp is open to everyone).
    let d = std::env::temp_dir().join(format!("alexnet-hostile-{}", std::process::id())).join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images").join(name)
}

fn embedded(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/cifar10-mini").join(rel)
}

fn alexnet(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_alexnet")).args(args).output().expect("run alexnet");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// A real JPEG whose frame header is edited to claim `w × h`.
fn jpeg_claiming(w: u16, h: u16) -> Vec<u8> {
    let mut b = std::fs::read(embedded("val/cat").read_dir().unwrap().next().unwrap().unwrap().path()).unwrap();
    let sof = b.windows(2).position(|x| x == [0xFF, 0xC0] || x == [0xFF, 0xC2]).expect("a frame header");
    b[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    b[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    b
}

#[test]
fn decompression_bombs_are_refused_before_decoding() {
    for (name, bytes) in [("bomb.png", png_claiming(65_500, 65_500)), ("bomb.jpg", jpeg_claiming(65_500, 65_500))] {
        let e = decode_rgb(&bytes, Path::new(name)).unwrap_err().to_string();
        assert!(e.contains(name) && e.contains("65500x65500") && e.contains("megapixels"), "{e}");
    }
    // Through the commands, with and without --skip-bad, and the limit as an option.
    let root = tmpdir("bombs");
    for c in ["cat", "dog"] {
        std::fs::create_dir_all(root.join(c)).unwrap();
        for f in embedded(&format!("val/{c}")).read_dir().unwrap().take(20) {
            let f = f.unwrap().path();
            std::fs::copy(&f, root.join(c).join(f.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(root.join("dog/bomb.png"), png_claiming(65_500, 65_500)).unwrap();
    let cache = root.with_extension("bin");
    let (cache_s, root_s) = (cache.to_str().unwrap(), root.to_str().unwrap());
    let (ok, _, err) = alexnet(&["prepare", "--data", root_s, "--out", cache_s, "--size", "32"]);
    assert!(!ok && err.contains("bomb.png") && err.contains("megapixels") && !err.contains("panicked"), "{err}");
    let (ok, out, err) =
        alexnet(&["prepare", "--data", root_s, "--out", cache_s, "--size", "32", "--skip-bad", "--json"]);
    assert!(ok && err.contains("warning: skipping") && err.contains("bomb.png"), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["images"], 40);
    let (ok, _, err) = alexnet(&[
        "prepare",
        "--data",
        root_s,
        "--out",
        cache_s,
        "--size",
        "32",
        "--skip-bad",
        "--max-megapixels",
        "0.0005",
        "--json",
    ]);
    // 32x32 = 0.001 MP > 0.0005: every image is refused, so nothing is left to pack.
    assert!(!ok && err.contains("no image could be decoded"), "{err}");
    // predict and eval: an error naming the file, or skipped with --skip-bad.
    let weights = weights_in(&root.with_extension("w"));
    let (bomb, good) = (root.join("dog/bomb.png"), embedded("val/ship/4950.jpg"));
    let (ok, _, err) = alexnet(&["predict", "--weights", &weights, bomb.to_str().unwrap()]);
    assert!(!ok && err.contains("bomb.png") && err.contains("megapixels"), "{err}");
    let (ok, out, err) = alexnet(&[
        "predict",
        "--weights",
        &weights,
        "--skip-bad",
        "--json",
        bomb.to_str().unwrap(),
        good.to_str().unwrap(),
    ]);
    assert!(ok && err.contains("warning: skipping"), "{err}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out).unwrap()["predictions"].as_array().unwrap().len(), 1);
    let (ok, _, err) = alexnet(&["eval", "--weights", &weights, "--data", root_s]);
    assert!(!ok && err.contains("bomb.png"), "{err}");
}

#[test]
fn truncated_images_are_errors() {
    let full = std::fs::read(embedded("val/ship/4950.jpg")).unwrap();
    for cut in [full.len() / 2, full.len() - 2, 700.min(full.len() - 3)] {
        let e = decode_rgb(&full[..cut], Path::new("cut.jpg")).unwrap_err().to_string();
        assert!(e.contains("cut.jpg") && e.contains("truncated"), "{cut} bytes: {e}");
    }
    assert!(decode_rgb(&full, Path::new("whole.jpg")).is_ok());
    let png = std::fs::read(fixture("rgb.png")).unwrap();
    assert!(decode_rgb(&png[..png.len() - 20], Path::new("cut.png")).is_err());
    // predict names the file.
    let d = tmpdir("truncated");
    std::fs::write(d.join("cut.jpg"), &full[..full.len() / 2]).unwrap();
    let (ok, _, err) = alexnet(&["predict", "--weights", &weights_in(&d), d.join("cut.jpg").to_str().unwrap()]);
    assert!(!ok && err.contains("cut.jpg") && err.contains("truncated") && !err.contains("panicked"), "{err}");
}

/// A saved cifar-model checkpoint in `dir`, for commands that must get past loading weights.
fn weights_in(dir: &Path) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join("weights.safetensors");
    tiny_checkpoint().save(&p).unwrap();
    p.display().to_string()
}

#[test]
fn nan_weights_are_refused_and_never_score() {
    let d = tmpdir("nan");
    let mut ck = tiny_checkpoint();
    ck.params.iter_mut().find(|p| p.name == "fc8.weight").unwrap().data[17] = f32::NAN;
    let path = d.join("nan.safetensors");
    ck.save(&path).unwrap();
    let e = Checkpoint::load(&path).unwrap_err().to_string();
    assert!(e.contains("nan.safetensors") && e.contains("param.fc8.weight") && e.contains("index 17"), "{e}");
    let (ok, _, err) =
        alexnet(&["eval", "--weights", path.to_str().unwrap(), "--data", embedded("val").to_str().unwrap()]);
    assert!(!ok && err.contains("fc8.weight"), "{err}");
    // Whatever produced them, NaN scores rank last.
    assert!(!alexnet::eval::in_top_k(&[f32::NAN, 0.1, 0.2], 0, 1));
    assert!(alexnet::eval::in_top_k(&[0.1, f32::NAN, f32::NAN], 0, 1));
    let classes: Vec<_> = (0..3).map(|i| alexnet::data::ClassInfo { id: i.to_string(), name: i.to_string() }).collect();
    let top = alexnet::eval::top_k(&[f32::NAN, 0.1, 0.7], &classes, 3);
    assert_eq!(top[0].iter().map(|c| c.index).collect::<Vec<_>>(), [2, 1, 0]);
}

#[test]
fn checkpoint_configs_cannot_request_any_allocation() {
    let d = tmpdir("alloc");
    let base = tiny_checkpoint();
    type Edit = (&'static str, fn(&mut ModelConfig));
    let edits: [Edit; 3] = [
        ("fc8 of 2^31 outputs", |c| *c = c.clone().with_classes(1 << 31)),
        ("conv1 of 2^40 outputs", |c| {
            if let alexnet::model::LayerSpec::Conv { out, .. } = &mut c.layers[0] {
                *out = 1 << 40;
            }
        }),
        ("input of 2^20 pixels a side", |c| c.input = [3, 1 << 20, 1 << 20]),
    ];
    for (what, edit) in edits {
        let mut ck = Checkpoint {
            config: base.config.clone(),
            classes: base.classes.clone(),
            stats: base.stats.clone(),
            params: base.params.clone(),
            velocity: None,
            sgd: None,
            train_state: None,
        };
        edit(&mut ck.config);
        let path = d.join("big.safetensors");
        ck.save(&path).unwrap();
        let e = Checkpoint::load(&path).unwrap_err().to_string();
        assert!(
            e.contains("big.safetensors") && (e.contains("too large") || e.contains("beyond the limit")),
            "{what}: {e}"
        );
    }
}

#[test]
fn damaged_checkpoints_are_detected() {
    let d = tmpdir("damaged");
    let path = d.join("last.safetensors");
    tiny_checkpoint().save(&path).unwrap();
    let good = std::fs::read(&path).unwrap();
    // A flipped bit in the last tensor's data (the end of the file).
    let mut flipped = good.clone();
    let n = flipped.len();
    flipped[n - 5] ^= 0x10;
    std::fs::write(&path, &flipped).unwrap();
    let e = Checkpoint::load(&path).unwrap_err();
    assert!(matches!(e, CheckpointError::Corrupt { .. }), "{e}");
    let e = e.to_string();
    assert!(e.contains("last.safetensors") && e.contains("checksum") && e.contains("last.prev.safetensors"), "{e}");
    // An edited number in the metadata (the stats' count, same length).
    let key = b"\\\"count\\\":1";
    let at = good.windows(key.len()).position(|w| w == key).expect("stats count in the header");
    let mut edited = good.clone();
    edited[at + 10] = b'7';
    std::fs::write(&path, &edited).unwrap();
    let e = Checkpoint::load(&path).unwrap_err().to_string();
    assert!(e.contains("metadata") && e.contains("checksum"), "{e}");
    std::fs::write(&path, &good).unwrap();
    assert!(Checkpoint::load(&path).is_ok());
}

#[test]
fn a_full_disk_leaves_nothing_behind_and_says_so() {
    let mnt = tmpdir("full");
    let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"]).arg(&mnt).status();
    if !mounted.is_ok_and(|s| s.success()) {
        eprintln!("skipped: cannot mount a 1 MB tmpfs here (not root?)");
        return;
    }
    let path = mnt.join("last.safetensors");
    let e = tiny_checkpoint().save(&path).unwrap_err();
    let listing: Vec<_> = std::fs::read_dir(&mnt).unwrap().map(|e| e.unwrap().file_name()).collect();
    let _ = Command::new("umount").arg(&mnt).status();
    assert!(matches!(e, CheckpointError::DiskFull { .. }), "{e}");
    assert!(e.to_string().contains("no space left"), "{e}");
    assert!(listing.is_empty(), "left behind: {listing:?}");
}

fn write_idx(path: &Path, dims: &[u32], data: &[u8]) {
    let mut b = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(data);
    std::fs::write(path, b).unwrap();
}

#[test]
fn bad_idx_files_are_errors() {
    let d = tmpdir("idx");
    let images = d.join("t-images-idx3-ubyte");
    let labels = d.join("t-labels-idx1-ubyte");
    for (dims, what) in
        [([3u32, 0, 0], "no images"), ([0, 28, 28], "no images"), ([u32::MAX, u32::MAX, u32::MAX], "overflow")]
    {
        write_idx(&images, &dims, &[]);
        write_idx(&labels, &[dims[0]], &[]);
        let e = idx::read_set(&images).unwrap_err().to_string();
        assert!(e.contains("t-images-idx3-ubyte") && (e.contains(what) || e.contains("announces")), "{dims:?}: {e}");
        let (ok, _, err) = alexnet(&["eval", "--weights", &weights_in(&d), "--data", images.to_str().unwrap()]);
        assert!(!ok && err.contains("t-images-idx3-ubyte") && !err.contains("panicked"), "{err}");
    }
}

#[test]
fn folders_with_fifos_links_and_odd_names() {
    use std::os::unix::ffi::OsStrExt;
    let root = tmpdir("odd-folder");
    let cat = root.join("cat");
    std::fs::create_dir_all(&cat).unwrap();
    for f in embedded("val/cat").read_dir().unwrap().take(3) {
        let f = f.unwrap().path();
        std::fs::copy(&f, cat.join(f.file_name().unwrap())).unwrap();
    }
    assert!(Command::new("mkfifo").arg(cat.join("pipe.jpg")).status().unwrap().success());
    std::os::unix::fs::symlink(root.join("nowhere.jpg"), cat.join("dangling.jpg")).unwrap();
    std::os::unix::fs::symlink(cat.join("loop.jpg"), cat.join("loop.jpg")).unwrap();
    // Two class folders whose names differ only in invalid UTF-8.
    for b in [0xFFu8, 0xFE] {
        let dir = root.join(std::ffi::OsStr::from_bytes(&[b'x', b]));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(embedded("val/ship/4950.jpg"), dir.join("a.jpg")).unwrap();
    }
    let t0 = std::time::Instant::now();
    let cache = root.with_extension("bin");
    let (ok, out, err) = alexnet(&[
        "prepare",
        "--data",
        root.to_str().unwrap(),
        "--out",
        cache.to_str().unwrap(),
        "--size",
        "32",
        "--json",
    ]);
    assert!(ok, "{err}");
    assert!(t0.elapsed().as_secs() < 60, "a FIFO must never be opened");
    for name in ["pipe.jpg", "dangling.jpg", "loop.jpg"] {
        assert!(err.contains(&format!("skipping {}", cat.join(name).display())), "{name}: {err}");
    }
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((v["images"].as_u64(), v["classes"].as_u64()), (Some(5), Some(3)), "{v}");
    // predict refuses a FIFO at once rather than blocking on it.
    let weights = weights_in(&root.with_extension("w"));
    let (ok, _, err) = alexnet(&["predict", "--weights", &weights, cat.join("pipe.jpg").to_str().unwrap()]);
    assert!(!ok && err.contains("pipe.jpg") && err.contains("not a regular file"), "{err}");
    // Nor is a FIFO read as weights or a class list.
    let pipe = cat.join("pipe.jpg");
    let (ok, _, err) =
        alexnet(&["predict", "--weights", pipe.to_str().unwrap(), embedded("val/ship/4950.jpg").to_str().unwrap()]);
    assert!(!ok && err.contains("not a regular file"), "{err}");
    let e = alexnet::data::folder::read_class_list(&pipe).unwrap_err().to_string();
    assert!(e.contains("not a regular file"), "{e}");
    let e = alexnet::data::image::load_rgb(&cat.join("pipe.jpg")).unwrap_err().to_string();
    assert!(e.contains("pipe.jpg") && e.contains("not a regular file"), "{e}");
}

#[test]
fn outputs_never_replace_links_or_devices() {
    let d = tmpdir("outputs");
    let target = d.join("precious.txt");
    std::fs::write(&target, "keep me").unwrap();
    let link = d.join("link.safetensors");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let ck = d.join("ck.safetensors");
    tiny_checkpoint().save(&ck).unwrap();
    let (ok, _, err) = alexnet(&["export", "--weights", ck.to_str().unwrap(), "--safetensors", link.to_str().unwrap()]);
    assert!(!ok && err.contains("symbolic link"), "{err}");
    let (ok, _, err) = alexnet(&[
        "prepare",
        "--data",
        embedded("val").to_str().unwrap(),
        "--out",
        link.to_str().unwrap(),
        "--size",
        "32",
    ]);
    assert!(!ok && err.contains("symbolic link"), "{err}");
    let (ok, _, err) = alexnet(&["export", "--weights", ck.to_str().unwrap(), "--onnx", "/dev/null"]);
    assert!(!ok && err.contains("device"), "{err}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
}
