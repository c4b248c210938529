//! The shared cache of packed folders: found again unchanged, re-packed when the folder changes,
//! packed once by concurrent openers, an old run's own cache still used, and `prepare` /
//! `train` from the command line finding it.

use alexnet::data::cache::OnBadImage;
use alexnet::data::source::{self, Packing};
use alexnet::data::{CacheStore, PackedImages};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("alexnet-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A folder of `per_class` real photos in each of two classes, copied from the embedded set.
fn photo_folder(dir: &Path, per_class: usize) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/cifar10-mini/train");
    let root = dir.join("images");
    for class in ["airplane", "bird"] {
        std::fs::create_dir_all(root.join(class)).unwrap();
        let mut files: Vec<_> = std::fs::read_dir(src.join(class)).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        for f in files.iter().take(per_class) {
            std::fs::copy(f, root.join(class).join(f.file_name().unwrap())).unwrap();
        }
    }
    root
}

/// Opens `root` through the store in `store_dir`; returns the set and how many images were decoded.
fn open(root: &Path, store_dir: &Path, legacy: Option<&Path>) -> (PackedImages, usize) {
    try_open(root, store_dir, legacy, OnBadImage::Fail).unwrap()
}

fn try_open(
    root: &Path,
    store_dir: &Path,
    legacy: Option<&Path>,
    on_bad: OnBadImage,
) -> Result<(PackedImages, usize), alexnet::data::DataError> {
    let store = CacheStore { dir: store_dir.into() };
    let how = Packing { size: 32, class_names: None, labels: None, on_bad, store: &store, legacy };
    let decoded = AtomicUsize::new(0);
    let p = source::open(root, &how, &|d, _| {
        decoded.fetch_max(d, Ordering::Relaxed);
    })?;
    Ok((p, decoded.into_inner()))
}

fn set_mtime(p: &Path, t: std::time::SystemTime) {
    std::fs::File::options().write(true).open(p).unwrap().set_modified(t).unwrap();
}

#[test]
fn a_second_open_decodes_nothing_and_a_changed_folder_is_repacked() {
    let dir = tmpdir("reuse");
    let root = photo_folder(&dir, 6);
    let store = dir.join("store");
    let (a, decoded) = open(&root, &store, None);
    assert_eq!((a.count, decoded), (12, 12));
    let (b, decoded) = open(&root, &store, None);
    assert_eq!((b.count, decoded), (12, 0), "the second open must find the cache");
    assert_eq!(b.key, a.key);
    assert_eq!(b.image(5).unwrap(), a.image(5).unwrap());
    // One cache file for the folder (plus its lock), none left half-written.
    let names: Vec<_> = std::fs::read_dir(&store).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.iter().filter(|n| n.to_string_lossy().ends_with(".bin")).count(), 1, "{names:?}");
    assert!(!names.iter().any(|n| n.to_string_lossy().contains("partial")), "{names:?}");

    let a_pixels: Vec<Vec<u8>> = (0..a.count).map(|i| a.image(i).unwrap().to_vec()).collect();

    // Touched only (same bytes, a new modification time): packed again.
    let victim = std::fs::read_dir(root.join("bird")).unwrap().next().unwrap().unwrap().path();
    let t0 = std::fs::metadata(&victim).unwrap().modified().unwrap();
    set_mtime(&victim, t0 + std::time::Duration::from_secs(5));
    let (t, decoded) = open(&root, &store, None);
    assert_eq!(decoded, 12, "a touched file re-packs");
    assert_ne!(t.key, a.key);

    // Rewritten in place, its length kept and its modification time set back (as `cp -p` or
    // `rsync -t` leave a file whose bytes changed): the change time still differs, packed again.
    let bytes = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &bytes).unwrap();
    set_mtime(&victim, t0 + std::time::Duration::from_secs(5));
    let (_, decoded) = open(&root, &store, None);
    assert_eq!(decoded, 12, "a same-length rewrite with its old mtime re-packs");

    // An image replaced by another of the same name and class (same count, same labels):
    // packed again with the new pixels, while `a`, mapped before, still reads the old file.
    let other = std::fs::read_dir(root.join("airplane")).unwrap().next().unwrap().unwrap().path();
    std::fs::copy(&other, &victim).unwrap();
    let (c, decoded) = open(&root, &store, None);
    assert_eq!((c.count, decoded), (12, 12));
    assert_ne!(c.key, a.key);
    let i = (0..c.count)
        .find(|&i| c.image(i).unwrap() != a_pixels[i].as_slice())
        .expect("the replaced image's pixels changed");
    assert_eq!(c.labels[i], 1, "the changed image is the bird");
    assert!(
        (0..a.count).all(|i| a.image(i).unwrap() == a_pixels[i].as_slice()),
        "a reader of the old file is undisturbed"
    );

    // An image added: packed again, with it.
    std::fs::copy(&other, root.join("airplane/added.png")).unwrap();
    let (d, decoded) = open(&root, &store, None);
    assert_eq!((d.count, decoded), (13, 13));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn concurrent_openers_pack_once_and_agree() {
    let dir = tmpdir("concurrent");
    let root = photo_folder(&dir, 8);
    let store = dir.join("store");
    let results: Vec<(PackedImages, usize)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..3).map(|_| s.spawn(|| open(&root, &store, None))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let packs = results.iter().filter(|(_, d)| *d > 0).count();
    assert_eq!(packs, 1, "one opener packs, the others wait for it and reuse its file");
    for (p, _) in &results {
        assert_eq!(p.count, 16);
        assert_eq!(p.image(15).unwrap(), results[0].0.image(15).unwrap());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_old_runs_own_cache_is_used_while_it_matches() {
    let dir = tmpdir("legacy");
    let root = photo_folder(&dir, 4);
    // A run's cache from before the shared store: packed into the run folder, no key.
    let (fresh, _) = open(&root, &dir.join("first"), None);
    let legacy = dir.join("run/cache/train-32.bin");
    std::fs::create_dir_all(legacy.parent().unwrap()).unwrap();
    std::fs::copy(CacheStore { dir: dir.join("first") }.file_for(&root, 32), &legacy).unwrap();
    let (p, decoded) = open(&root, &dir.join("store"), Some(&legacy));
    assert_eq!((p.count, decoded), (8, 0));
    assert_eq!(p.image(7).unwrap(), fresh.image(7).unwrap());
    assert!(!dir.join("store").exists(), "nothing packed into the store");
    // A folder that no longer matches it goes to the store instead.
    std::fs::remove_file(std::fs::read_dir(root.join("bird")).unwrap().next().unwrap().unwrap().path()).unwrap();
    let (p, decoded) = open(&root, &dir.join("store"), Some(&legacy));
    assert_eq!((p.count, decoded), (7, 7));
    let _ = std::fs::remove_dir_all(&dir);
}

fn alexnet(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_alexnet")).args(args).output().unwrap();
    (o.status.success(), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

#[test]
fn prepare_then_train_and_eval_find_the_shared_cache() {
    let dir = tmpdir("cli");
    let root = photo_folder(&dir, 10);
    let r = root.to_str().unwrap();
    let json = |out: &str| serde_json::from_str::<serde_json::Value>(out.trim()).unwrap();
    let (ok, out, err) = alexnet(&["prepare", "--data", r, "--size", "32", "--json"]);
    assert!(ok, "{err}");
    let first = json(&out);
    assert_eq!((first["packed"].as_bool(), first["images"].as_u64()), (Some(true), Some(20)));
    // The default store is beside the data folder.
    let file = PathBuf::from(first["out"].as_str().unwrap());
    assert_eq!(file.parent().unwrap(), std::fs::canonicalize(&dir).unwrap().join(".alexnet-cache"));
    let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    let before = inode(&file);
    let (ok, out, err) = alexnet(&["prepare", "--data", r, "--size", "32", "--json"]);
    assert!(ok, "{err}");
    assert_eq!(json(&out)["packed"].as_bool(), Some(false), "{out}");

    // A training run on the folder opens that file rather than packing its own.
    let run = dir.join("run");
    let args = ["train", "--data", r, "--model", "cifar-4layer", "--epochs", "1", "--batch", "4", "--quiet"];
    let (ok, _, err) = alexnet(&[&args[..], &["--out", run.to_str().unwrap(), "--threads", "1"]].concat());
    assert!(ok, "{err}");
    assert!(!run.join("cache").exists(), "no per-run cache");
    assert_eq!(inode(&file), before, "the shared cache was not re-packed");
    let weights = run.join("last.safetensors");
    let (ok, _, err) = alexnet(&["eval", "--weights", weights.to_str().unwrap(), "--data", r, "--json"]);
    assert!(ok, "{err}");
    assert_eq!(inode(&file), before, "eval found it too");
    // eval with a cache folder of its own packs there once, then finds it.
    let own = dir.join("eval-cache");
    let eval_own = || {
        alexnet(&["eval", "--weights", weights.to_str().unwrap(), "--data", r, "--cache-dir", own.to_str().unwrap()])
    };
    assert!(eval_own().0);
    let packed: Vec<_> = std::fs::read_dir(&own)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "bin"))
        .collect();
    assert_eq!(packed.len(), 1, "{packed:?}");
    let first = inode(&packed[0]);
    assert!(eval_own().0);
    assert_eq!(inode(&packed[0]), first, "the second eval decoded nothing");
    // prepare packs folders only.
    let (ok, _, err) = alexnet(&["prepare", "--data", file.to_str().unwrap(), "--size", "32"]);
    assert!(!ok && err.contains("prepare packs an image folder"), "{err}");

    // --cache-dir moves it; --cache-dir with --out is refused as a no-op.
    let elsewhere = dir.join("elsewhere");
    let (ok, out, err) =
        alexnet(&["prepare", "--data", r, "--size", "32", "--cache-dir", elsewhere.to_str().unwrap(), "--json"]);
    assert!(ok, "{err}");
    assert!(json(&out)["out"].as_str().unwrap().starts_with(elsewhere.to_str().unwrap()), "{out}");
    let (ok, _, err) = alexnet(&["prepare", "--data", r, "--out", "x.bin", "--cache-dir", "y"]);
    assert!(!ok && err.contains("--cache-dir would change nothing"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_cache_made_with_skip_bad_is_not_taken_by_a_run_that_stops_on_bad_files() {
    let dir = tmpdir("skip-bad");
    let root = photo_folder(&dir, 4);
    std::fs::write(root.join("bird/broken.jpg"), b"\xff\xd8 not really a jpeg").unwrap();
    let store = dir.join("store");
    let (p, decoded) = try_open(&root, &store, None, OnBadImage::Skip).unwrap();
    assert_eq!((p.count, decoded), (8, 9));
    assert_eq!(p.skipped.len(), 1);
    assert!(p.skipped[0].ends_with("broken.jpg"));
    let (_, decoded) = try_open(&root, &store, None, OnBadImage::Skip).unwrap();
    assert_eq!(decoded, 0, "a --skip-bad run takes it");
    let e = try_open(&root, &store, None, OnBadImage::Fail).err().unwrap().to_string();
    assert!(e.contains("broken.jpg"), "a run without --skip-bad stops on the bad file: {e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_killed_packs_partial_file_is_removed_by_the_next_pack() {
    let dir = tmpdir("partial");
    let root = photo_folder(&dir, 2);
    let store = dir.join("store");
    let file = CacheStore { dir: store.clone() }.file_for(&root, 32);
    std::fs::create_dir_all(&store).unwrap();
    let leftover = store.join(format!("{}.abc123.partial", file.file_name().unwrap().to_str().unwrap()));
    std::fs::write(&leftover, vec![0u8; 4096]).unwrap();
    let (_, decoded) = open(&root, &store, None);
    assert_eq!(decoded, 4);
    assert!(!leftover.exists());
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o644, "readable by other users of a shared cache");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_default_store_is_beside_the_data_only_where_the_owner_allows_writing() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tmpdir("where");
    let root = photo_folder(&dir, 1);
    let beside = std::fs::canonicalize(&dir).unwrap().join(".alexnet-cache");
    assert_eq!(CacheStore::resolve(None, &root).dir, beside);
    // A dataset folder made read-only by its owner: not written into, even by root.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    assert_ne!(CacheStore::resolve(None, &root).dir, beside);
    // One every user can write to, like /tmp: not either.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    assert_ne!(CacheStore::resolve(None, &root).dir, beside);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(!beside.exists(), "resolving creates nothing");
    let _ = std::fs::remove_dir_all(&dir);
}
