//! ILSVRC-2012's layouts, made by the test from real photos: `train/<wnid>/<wnid>_N.JPEG` and a
//! flat `val/ILSVRC2012_val_000000NN.JPEG` folder labelled by `LOC_val_solution.csv` or a
//! `FILE WNID` list; the devkit's bare-ID ground truth refused with the reason.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{ID_OF, WNIDS, element, mat_header, matrix, meta_mat};

/// The tree, with `per_class` training photos and 2 validation photos per class (the val files
/// numbered across classes in an interleaved order, as the real set is not sorted by class).
fn ilsvrc_tree(name: &str, per_class: usize) -> PathBuf {
    let root = std::env::temp_dir().join(format!("alexnet-ilsvrc-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let photos = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/cifar10-mini/train");
    let sources = ["airplane", "bird", "ship"];
    std::fs::create_dir_all(root.join("val")).unwrap();
    let mut csv = String::from("ImageId,PredictionString\n");
    for (c, (wnid, src)) in WNIDS.iter().zip(sources).enumerate() {
        let dir = root.join("train").join(wnid);
        std::fs::create_dir_all(&dir).unwrap();
        for k in 0..per_class {
            std::fs::copy(photos.join(src).join(format!("{k:04}.jpg")), dir.join(format!("{wnid}_{k}.JPEG"))).unwrap();
        }
        for v in 0..2 {
            let id = 1 + v * WNIDS.len() + c;
            let file = format!("ILSVRC2012_val_{id:08}");
            std::fs::copy(
                photos.join(src).join(format!("{:04}.jpg", 50 + v)),
                root.join("val").join(format!("{file}.JPEG")),
            )
            .unwrap();
            // Two boxes, as the real file has for many images.
            csv.push_str(&format!("{file},{wnid} 10 20 30 40 {wnid} 1 2 3 4 \r\n"));
        }
    }
    std::fs::write(root.join("LOC_val_solution.csv"), csv).unwrap();
    root
}

fn alexnet(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_alexnet")).args(args).output().unwrap();
    (o.status.success(), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn flat_val_folder_labels_each_file_by_its_name() {
    let root = ilsvrc_tree("scan", 2);
    let f = alexnet::data::ImageFolder::scan_flat(&root.join("val"), &root.join("LOC_val_solution.csv"), None).unwrap();
    let ids: Vec<_> = f.classes.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, WNIDS);
    // Sorted by file name: ids 1, 2, 3 are one of each class, then 4, 5, 6 again.
    let labels: Vec<u32> = f.items.iter().map(|(_, l)| *l).collect();
    assert_eq!(labels, [0, 1, 2, 0, 1, 2]);
    assert!(f.items[4].0.ends_with("ILSVRC2012_val_00000005.JPEG"));

    // The same labels as `FILE WNID` lines (with extensions, a comment, tabs).
    let list = root.join("labels.txt");
    let text: String = f
        .items
        .iter()
        .map(|(p, l)| format!("{}\t{}\n", p.file_name().unwrap().to_str().unwrap(), WNIDS[*l as usize]))
        .collect();
    std::fs::write(&list, format!("# file wnid\n{text}")).unwrap();
    let g = alexnet::data::ImageFolder::scan_flat(&root.join("val"), &list, None).unwrap();
    assert_eq!(g.items, f.items);

    // The devkit's bare ILSVRC2012_IDs need its meta.mat beside them.
    let devkit = root.join("devkit/data");
    std::fs::create_dir_all(&devkit).unwrap();
    let gt = devkit.join("ILSVRC2012_validation_ground_truth.txt");
    let ids: String = f.items.iter().map(|(_, l)| format!("{}\n", ID_OF[*l as usize])).collect();
    std::fs::write(&gt, &ids).unwrap();
    let e = alexnet::data::ImageFolder::scan_flat(&root.join("val"), &gt, None).unwrap_err().to_string();
    assert!(e.contains("ILSVRC2012_IDs") && e.contains("meta.mat"), "{e}");
    for compressed in [false, true] {
        std::fs::write(devkit.join("meta.mat"), meta_mat(compressed)).unwrap();
        let g = alexnet::data::ImageFolder::scan_flat(&root.join("val"), &gt, None).unwrap();
        assert_eq!(g.items, f.items, "compressed {compressed}");
        assert_eq!(g.classes, f.classes);
    }
    // An ID that is not a leaf synset (1001 has children), and a damaged meta.mat: errors.
    std::fs::write(&gt, format!("{ids}1001\n")).unwrap();
    let e = alexnet::data::ImageFolder::scan_flat(&root.join("val"), &gt, None).unwrap_err().to_string();
    assert!(e.contains("line 7") && e.contains("1001"), "{e}");
    std::fs::write(&gt, &ids).unwrap();
    let whole = meta_mat(false);
    for cut in [130, whole.len() / 2, whole.len() - 3] {
        std::fs::write(devkit.join("meta.mat"), &whole[..cut]).unwrap();
        let e = alexnet::data::ImageFolder::scan_flat(&root.join("val"), &gt, None).unwrap_err().to_string();
        assert!(e.contains("meta.mat"), "cut at {cut}: {e}");
    }
    std::fs::write(devkit.join("meta.mat"), &whole).unwrap();

    // A byte-order mark before the CSV header is not part of it.
    let bom = root.join("bom.csv");
    std::fs::write(
        &bom,
        [b"\xef\xbb\xbf".as_slice(), &std::fs::read(root.join("LOC_val_solution.csv")).unwrap()].concat(),
    )
    .unwrap();
    assert_eq!(alexnet::data::ImageFolder::scan_flat(&root.join("val"), &bom, None).unwrap().items, f.items);
    // A blank line inside the ground truth would shift every later label: refused.
    std::fs::write(&gt, ids.replacen('\n', "\n\n", 1)).unwrap();
    let e = alexnet::data::ImageFolder::scan_flat(&root.join("val"), &gt, None).unwrap_err().to_string();
    assert!(e.contains("line 2: expected an ILSVRC2012_ID"), "{e}");
    std::fs::write(&gt, &ids).unwrap();
    // Two files with one name but for the extension: whose label is it?
    let twin = root.join("val/ILSVRC2012_val_00000001.png");
    std::fs::copy(root.join("val/ILSVRC2012_val_00000001.JPEG"), &twin).unwrap();
    let e = alexnet::data::ImageFolder::scan_flat(&root.join("val"), &root.join("LOC_val_solution.csv"), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("ILSVRC2012_val_00000001") && e.contains("shares its name"), "{e}");
    std::fs::remove_file(&twin).unwrap();
    // A file without a label is named; so is a label file that contradicts itself.
    std::fs::copy(root.join("val/ILSVRC2012_val_00000001.JPEG"), root.join("val/ILSVRC2012_val_00000099.JPEG"))
        .unwrap();
    let e = alexnet::data::ImageFolder::scan_flat(&root.join("val"), &root.join("LOC_val_solution.csv"), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("ILSVRC2012_val_00000099.JPEG") && e.contains("has no label"), "{e}");
    std::fs::write(&list, "a.JPEG n01440764\na.JPEG n02102040\n").unwrap();
    let e = alexnet::data::ImageFolder::scan_flat(&root.join("val"), &list, None).unwrap_err().to_string();
    assert!(e.contains("line 2") && e.contains("labelled twice"), "{e}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn train_and_eval_read_the_shipped_layout() {
    let root = ilsvrc_tree("cli", 6);
    let (train, val, csv) = (root.join("train"), root.join("val"), root.join("LOC_val_solution.csv"));
    let run = root.join("run");
    let (ok, out, err) = alexnet(&[
        "train",
        "--data",
        s(&train),
        "--val",
        s(&val),
        "--val-labels",
        s(&csv),
        "--model",
        "cifar-4layer",
        "--epochs",
        "1",
        "--batch",
        "6",
        "--threads",
        "1",
        "--out",
        s(&run),
        "--quiet",
        "--json",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("\"val_top1_error\""), "{out}");
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["val_labels"].as_str(), Some(s(&std::fs::canonicalize(&csv).unwrap())));
    // Every validation image was evaluated, with the labels of the file.
    let (ok, out, err) = alexnet(&[
        "eval",
        "--weights",
        s(&run.join("last.safetensors")),
        "--data",
        s(&val),
        "--labels",
        s(&csv),
        "--json",
    ]);
    assert!(ok, "{err}");
    let r: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(r["images"].as_u64(), Some(6), "{out}");

    // Without its labels the flat folder is refused with the flag to give; labels for a
    // non-folder are refused too.
    let (ok, _, err) = alexnet(&["eval", "--weights", s(&run.join("last.safetensors")), "--data", s(&val)]);
    assert!(!ok && err.contains("no class folders") && err.contains("--labels FILE"), "{err}");
    let (ok, _, err) =
        alexnet(&["eval", "--weights", s(&run.join("last.safetensors")), "--data", s(&csv), "--labels", s(&csv)]);
    assert!(!ok && err.contains("not a folder"), "{err}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn hostile_mat_files_are_refused_before_they_cost_memory() {
    let parse = |body: &[u8]| {
        let file = [mat_header(), body.to_vec()].concat();
        alexnet::data::matfile::parse(&file, Path::new("meta.mat"), "synsets").map(|_| ()).unwrap_err().to_string()
    };
    // A 1x1 double whose data holds 4 MB of uint8: its values must number what its dimensions say.
    let e = parse(&matrix(6, &[1, 1], "synsets", &element(2, &vec![7u8; 4 << 20])));
    assert!(e.contains("do not number"), "{e}");
    // A struct of ten million elements in a few bytes: more than the bytes left could hold.
    let mut body = [(4u32 << 16 | 5).to_le_bytes(), 8u32.to_le_bytes()].concat();
    body.extend(element(1, b"WNID\0\0\0\0"));
    let e = parse(&matrix(2, &[10_000_000, 1], "synsets", &body));
    assert!(e.contains("bytes left"), "{e}");
    // ... and with no fields at all.
    let mut body = [(4u32 << 16 | 5).to_le_bytes(), 8u32.to_le_bytes()].concat();
    body.extend(element(1, b""));
    let e = parse(&matrix(2, &[10_000_000, 1], "synsets", &body));
    assert!(e.contains("field names"), "{e}");
    // A zlib bomb: 100 MB of zeros inflated from ~100 kB.
    use std::io::Write;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&vec![0u8; 100 << 20]).unwrap();
    let z = z.finish().unwrap();
    let e = parse(&[15u32.to_le_bytes().to_vec(), (z.len() as u32).to_le_bytes().to_vec(), z].concat());
    assert!(e.contains("64 MB"), "{e}");
}
