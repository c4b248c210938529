//! `alexnet features` and `alexnet neighbors` (the paper's Figure 4): shapes, distances against
//! a direct computation, the grid, and errors on bad input.

mod common;

use safetensors::SafeTensors;
use std::path::{Path, PathBuf};
use std::process::Command;

fn alexnet(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_alexnet")).args(args).output().expect("run alexnet");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// Two classes of 8 real CIFAR images, and a cifar-model checkpoint for 10 classes.
fn setup(name: &str) -> (PathBuf, String) {
    let d = std::env::temp_dir().join(format!("alexnet-features-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    let embedded = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/cifar10-mini/val");
    for c in ["cat", "ship"] {
        std::fs::create_dir_all(d.join("data").join(c)).unwrap();
        let mut files: Vec<_> = std::fs::read_dir(embedded.join(c)).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        for f in files.into_iter().take(8) {
            std::fs::copy(&f, d.join("data").join(c).join(f.file_name().unwrap())).unwrap();
        }
    }
    let w = d.join("w.safetensors");
    common::cifar_checkpoint(3, 120.0, 60.0).save(&w).unwrap();
    (d, w.display().to_string())
}

fn read_features(path: &Path) -> (Vec<usize>, Vec<f32>, Vec<String>) {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor("features").unwrap();
    let data = t.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let files: Vec<String> = serde_json::from_str(&meta.metadata().as_ref().unwrap()["files"]).unwrap();
    (t.shape().to_vec(), data, files)
}

#[test]
fn features_have_one_row_of_fc7_per_image() {
    let (d, w) = setup("shape");
    let out = d.join("f.safetensors");
    let data = d.join("data");
    let (ok, stdout, err) = alexnet(&[
        "features",
        "--weights",
        &w,
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!((v["images"].as_u64(), v["dims"].as_u64()), (Some(16), Some(512)), "{v}");
    let (shape, f, files) = read_features(&out);
    // The cifar net's fc7 is 512 wide, after its ReLU: no negative activations.
    assert_eq!(shape, [16, 512]);
    assert_eq!(files.len(), 16);
    assert!(f.iter().all(|&x| x >= 0.0) && f.iter().any(|&x| x > 0.0));
    assert!(files[0].contains("cat") && files[15].contains("ship"));
}

#[test]
fn features_record_labels_and_refuse_bad_input() {
    let (d, w) = setup("features-bad");
    let out = d.join("f.safetensors");
    let data = d.join("data");
    let run = |args: &[&str]| alexnet(&[&["features"], args].concat());
    let (ok, _, err) = run(&["--weights", &w, "--data", data.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(ok, "{err}");
    // The labels and classes beside the files: the first 8 are cats (class 0), the rest ships.
    let bytes = std::fs::read(&out).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().as_ref().unwrap();
    let labels: Vec<u32> = serde_json::from_str(&meta["labels"]).unwrap();
    assert_eq!(labels, [[0; 8], [1; 8]].concat());
    let classes: serde_json::Value = serde_json::from_str(&meta["classes"]).unwrap();
    assert_eq!((classes[0]["id"].as_str(), classes[1]["id"].as_str()), (Some("cat"), Some("ship")));
    // No such folder; weights that are not a checkpoint; an output that cannot be written.
    let missing = d.join("nowhere");
    let (ok, _, err) = run(&["--weights", &w, "--data", missing.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(!ok && err.contains("nowhere"), "{err}");
    let junk = d.join("junk.safetensors");
    std::fs::write(&junk, b"not a checkpoint").unwrap();
    let (ok, _, err) =
        run(&["--weights", junk.to_str().unwrap(), "--data", data.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(!ok && err.contains("junk.safetensors"), "{err}");
    let unwritable = d.join("no-such-dir/f.safetensors");
    let (ok, _, err) = run(&["--weights", &w, "--data", data.to_str().unwrap(), "--out", unwritable.to_str().unwrap()]);
    assert!(!ok && err.contains("no-such-dir"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn neighbors_are_the_nearest_by_a_direct_computation() {
    let (d, w) = setup("nearest");
    let data = d.join("data");
    let feats = d.join("f.safetensors");
    assert!(
        alexnet(&["features", "--weights", &w, "--data", data.to_str().unwrap(), "--out", feats.to_str().unwrap()]).0
    );
    let (_, f, files) = read_features(&feats);
    let query = files[3].clone();
    let grid = d.join("grid.png");
    let (ok, stdout, err) = alexnet(&[
        "neighbors",
        "--weights",
        &w,
        "--data",
        data.to_str().unwrap(),
        "--query",
        &query,
        "--k",
        "5",
        "--out",
        grid.to_str().unwrap(),
        "--cell",
        "32",
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let got = v["queries"][0]["neighbors"].as_array().unwrap();
    assert_eq!(got.len(), 5);
    // Direct: distances from the query's row to every row, sorted.
    let row = |i: usize| &f[i * 512..(i + 1) * 512];
    let dist = |i: usize| row(i).iter().zip(row(3)).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum::<f64>().sqrt();
    let mut all: Vec<(usize, f64)> = (0..16).map(|i| (i, dist(i))).collect();
    all.sort_by(|a, b| a.1.total_cmp(&b.1));
    let scale = all[15].1.max(1e-9);
    // The query is in the data at distance 0: it is left out of its own neighbours.
    assert_eq!(all[0], (3, 0.0));
    assert!(got.iter().all(|n| n["file"] != query.as_str()), "the query is listed as its own neighbour");
    for (n, (i, want)) in got.iter().zip(&all[1..]) {
        let d = n["distance"].as_f64().unwrap();
        assert!((d - want).abs() <= 1e-4 * scale, "{} at {d}, direct {want} ({})", n["file"], files[*i]);
    }
    let png = image::open(&grid).unwrap();
    let (cell, gap) = (32, 2);
    assert_eq!((png.width(), png.height()), (2 * gap + 6 * (cell + gap), gap + (cell + gap)));
}

#[test]
fn held_out_neighbors_ask_the_held_out_images_and_search_the_training_ones() {
    let (d, _) = setup("held-out");
    let data = d.join("data");
    let run = d.join("run");
    // A quarter of the 16 images held out: 4 queries, 12 training images to search.
    let (ok, _, err) = alexnet(&[
        "train",
        "--model",
        "cifar",
        "--epochs",
        "1",
        "--batch",
        "8",
        "--val-split",
        "0.25",
        "--quiet",
        "--data",
        data.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let w = run.join("last.safetensors");
    let feats = d.join("f.safetensors");
    let w_s = w.to_str().unwrap();
    assert!(
        alexnet(&["features", "--weights", w_s, "--data", data.to_str().unwrap(), "--out", feats.to_str().unwrap()]).0
    );
    let (_, f, files) = read_features(&feats);
    let grid = d.join("grid.png");
    let (ok, stdout, err) = alexnet(&[
        "neighbors",
        "--weights",
        w_s,
        "--held-out",
        run.to_str().unwrap(),
        "--queries",
        "4",
        "--k",
        "3",
        "--out",
        grid.to_str().unwrap(),
        "--cell",
        "32",
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let qs = v["queries"].as_array().unwrap();
    let row_of =
        |name: &str| files.iter().position(|f| f == name).unwrap_or_else(|| panic!("{name} is not a file of the data"));
    let held: Vec<usize> = qs.iter().map(|q| row_of(q["image"].as_str().unwrap())).collect();
    // The queries are the images the run held out (packed in the folder's order, as `features`).
    let cfg = alexnet::train::TrainConfig::of_run(&run).unwrap();
    let held_out =
        alexnet::train::open_splits(&cfg, alexnet::train::SplitUse::Evaluate, true).unwrap().val.unwrap().indices;
    let mut sorted = held.clone();
    sorted.sort();
    assert_eq!(sorted, held_out.iter().map(|&i| i as usize).collect::<Vec<_>>(), "queries {held:?}");
    let row = |i: usize| &f[i * 512..(i + 1) * 512];
    let dist = |i: usize, j: usize| {
        row(i).iter().zip(row(j)).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum::<f64>().sqrt()
    };
    for (q, &qi) in qs.iter().zip(&held) {
        // Direct: the 3 nearest of the 12 training images (never a held-out one).
        let mut all: Vec<(usize, f64)> = (0..16).filter(|i| !held.contains(i)).map(|i| (i, dist(qi, i))).collect();
        all.sort_by(|a, b| a.1.total_cmp(&b.1));
        let scale = all.last().unwrap().1.max(1e-9);
        let got = q["neighbors"].as_array().unwrap();
        assert_eq!(got.len(), 3);
        assert!(files[qi].contains(q["class"].as_str().unwrap()), "{q}");
        for (n, &(i, want)) in got.iter().zip(&all) {
            let j = row_of(n["file"].as_str().unwrap());
            assert!(!held.contains(&j), "held-out image {} found among the training images", files[j]);
            let d = n["distance"].as_f64().unwrap();
            assert!((d - want).abs() <= 1e-4 * scale, "{} at {d}, direct {want} ({})", n["file"], files[i]);
            // The named file is the one at that distance.
            assert!((dist(qi, j) - d).abs() <= 1e-4 * scale, "{} is at {}, reported {d}", files[j], dist(qi, j));
        }
    }
    let png = image::open(&grid).unwrap();
    assert_eq!((png.width(), png.height()), (2 * 2 + 4 * 34, 2 + 4 * 34));
    // A run that held nothing out, and a query count of 0, are errors.
    let (ok, _, err) = alexnet(&["neighbors", "--weights", w_s, "--held-out", run.to_str().unwrap(), "--queries", "0"]);
    assert!(!ok && err.contains("--queries must be at least 1"), "{err}");
    let none = d.join("none");
    let none_s = none.to_str().unwrap();
    let args = ["--model", "cifar", "--epochs", "1", "--batch", "8", "--val-split", "0", "--quiet", "--out", none_s];
    let (ok, stdout, err) = alexnet(&[&["train", "--data", data.to_str().unwrap()][..], &args].concat());
    // Without validation the summary gives the training error, not the loss as an "error".
    assert!(ok && stdout.contains("no validation; last epoch's training top-1 error"), "{stdout}{err}");
    assert!(!stdout.contains("best validation"), "{stdout}");
    let (ok, _, err) = alexnet(&["neighbors", "--weights", w_s, "--held-out", none.to_str().unwrap()]);
    assert!(!ok && err.contains("held out no images") && !err.contains("panicked"), "{err}");
}

#[test]
fn bad_neighbor_requests_are_errors() {
    let (d, w) = setup("bad");
    let data = d.join("data");
    let q = data.join("cat").read_dir().unwrap().next().unwrap().unwrap().path();
    let (data_s, q_s) = (data.to_str().unwrap(), q.to_str().unwrap());
    let notes = d.join("notes.jpg");
    std::fs::write(&notes, "not an image").unwrap();
    for (args, want) in [
        (vec!["--k", "0", "--query", q_s, "--data", data_s], "--k must be at least 1"),
        (vec!["--k", "17", "--query", q_s, "--data", data_s], "are only 16"),
        (vec!["--query", notes.to_str().unwrap(), "--data", data_s], "notes.jpg"),
        (vec!["--query", q_s, "--data", "/nonexistent/folder"], "/nonexistent/folder"),
    ] {
        let mut all = vec!["neighbors", "--weights", w.as_str()];
        all.extend(args.iter().copied());
        let (ok, _, err) = alexnet(&all);
        assert!(!ok && err.contains(want) && !err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn nearest_matches_brute_force() {
    let d = 3;
    let f: Vec<f32> = (0..30).map(|i| ((i * 37) % 11) as f32).collect();
    let q = [4.0, 2.0, 7.0];
    let got = alexnet::features::nearest(&f, d, &q, 4);
    let mut want: Vec<(usize, f64)> =
        (0..10).map(|i| (i, alexnet::features::distance(&f[i * d..(i + 1) * d], &q))).collect();
    want.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    assert_eq!(got, want[..4]);
}

#[test]
fn chromatic_fraction_separates_grey_from_colour() {
    use alexnet::plot::{chromatic_fraction, tower_chromatic};
    let k = 3;
    let grey: Vec<f32> = (0..3).flat_map(|_| (0..9).map(|i| i as f32 - 4.0)).collect();
    assert!(chromatic_fraction(&grey, k).abs() < 1e-12);
    // Red minus green: no grey component at all.
    let opponent: Vec<f32> = [1.0f32, -1.0, 0.0].iter().flat_map(|&c| std::iter::repeat_n(c, 9)).collect();
    assert!((chromatic_fraction(&opponent, k) - 1.0).abs() < 1e-12);
    // Random kernels: 2 of 3 dimensions are off the grey axis.
    let w = alexnet::rng::uniform_vec(2000 * 27, 5); // uniform in [-1, 1), mean 0
    let t = tower_chromatic(&w, 2000, k, 2);
    assert!(t.iter().all(|c| (c - 2.0 / 3.0).abs() < 0.02), "{t:?}");
    // A grey tower and a colour tower.
    let both: Vec<f32> = [grey.clone(), grey, opponent.clone(), opponent].concat();
    assert_eq!(tower_chromatic(&both, 4, k, 2).iter().map(|c| c.round()).collect::<Vec<_>>(), [0.0, 1.0]);
}
