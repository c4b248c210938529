//! The data pipeline: decoding odd files, bad input, IDX, the packed cache, augmentation and
//! the ten-crop average.

mod common;
use alexnet::data::augment::{Augment, Normalizer, crop_into, five_origins, ten_crop, train_sample};
use alexnet::data::cache::{self, OnBadImage, PackedImages};
use alexnet::data::image::{load_rgb, load_square};
use alexnet::data::{DataError, DataSpec, ImageFolder, Normalize, idx, source};
use alexnet::eval::Classifier;
use alexnet::kernels::loss::softmax;
use alexnet::model::{Mode, ModelConfig, Network};
use std::path::{Path, PathBuf};

fn img(name: &str) -> PathBuf {
    common::fixture_path("images").join(name)
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("alexnet-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The test card: left half red, right half blue, a green band on top; 40x24.
fn check_card(rgb: &image::RgbImage, what: &str) {
    assert_eq!(rgb.dimensions(), (40, 24), "{what}");
    let p = |x, y| rgb.get_pixel(x, y).0;
    let (l, r, top) = (p(5, 15), p(35, 15), p(20, 1));
    assert!(l[0] > 150 && l[2] < 90, "{what}: left {l:?}");
    assert!(r[2] > 150 && r[0] < 90, "{what}: right {r:?}");
    assert!(top[1] > 150 && top[0] < 90, "{what}: top {top:?}");
}

#[test]
fn decodes_png_cmyk_alpha_and_exif_rotated_files_to_rgb() {
    check_card(&load_rgb(&img("rgb.png")).unwrap(), "png");
    check_card(&load_rgb(&img("rgba.png")).unwrap(), "rgba png");
    check_card(&load_rgb(&img("cmyk.jpg")).unwrap(), "cmyk jpeg");
    // Stored rotated (24x40) with EXIF orientation 6: must come out upright.
    check_card(&load_rgb(&img("exif_rot6.jpg")).unwrap(), "exif-rotated jpeg");
    let g = load_rgb(&img("grey.jpg")).unwrap();
    assert_eq!(g.dimensions(), (40, 24));
    assert!(g.pixels().all(|p| p[0] == p[1] && p[1] == p[2]), "grey replicated to RGB");
}

#[test]
fn shorter_side_then_centre_square() {
    let s = load_square(&img("rgb.png"), 12).unwrap();
    assert_eq!(s.len(), 12 * 12 * 3);
    // The central 24x24 of the 40x24 card spans both halves: red on the left, blue on the right.
    let px = |x: usize, y: usize| &s[(y * 12 + x) * 3..(y * 12 + x) * 3 + 3];
    assert!(px(1, 8)[0] > 150 && px(10, 8)[2] > 150);
}

#[test]
fn bad_files_are_errors_naming_the_file() {
    for (name, want) in [("empty.jpg", "empty file"), ("notes.txt", "not an image"), ("truncated.jpg", "cannot decode")]
    {
        let e = load_rgb(&img(name)).unwrap_err().to_string();
        assert!(e.contains(name), "{name}: {e}");
        assert!(e.contains(want), "{name}: {e}");
    }
}

fn folder_with(files: &[(&str, &Path)]) -> PathBuf {
    let root = tmpdir(&format!("folder{}", files.len()));
    for (dst, src) in files {
        let d = root.join(dst);
        std::fs::create_dir_all(d.parent().unwrap()).unwrap();
        std::fs::copy(src, d).unwrap();
    }
    root
}

#[test]
fn folder_errors_and_skipping() {
    let root =
        folder_with(&[("a/1.png", &img("rgb.png")), ("b/2.jpg", &img("grey.jpg")), ("b/3.jpg", &img("truncated.jpg"))]);
    std::fs::write(root.join("b/.DS_Store"), "junk").unwrap();
    let f = ImageFolder::scan(&root, None).unwrap();
    assert_eq!(f.classes.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(f.items.len(), 3, "hidden files are ignored");
    let e = cache::pack_in_memory(&f.items, f.classes.clone(), 8, "t", OnBadImage::Fail).err().unwrap().to_string();
    assert!(e.contains("3.jpg"), "{e}");
    let p = cache::pack_in_memory(&f.items, f.classes.clone(), 8, "t", OnBadImage::Skip).unwrap();
    assert_eq!((p.count, p.labels.clone()), (2, vec![0, 1]));

    let empty = tmpdir("empty-root");
    assert!(ImageFolder::scan(&empty, None).unwrap_err().to_string().contains("one folder per class"));
    std::fs::create_dir_all(empty.join("cls")).unwrap();
    let e = ImageFolder::scan(&empty, None).unwrap_err().to_string();
    assert!(e.contains("cls") && e.contains("no images"), "{e}");
    assert!(matches!(ImageFolder::scan(&empty.join("missing"), None), Err(DataError::Io { .. })));
}

#[test]
fn class_names_file() {
    let root = folder_with(&[("n01/1.png", &img("rgb.png")), ("n02/1.png", &img("rgb.png"))]);
    let names = root.join("names.tsv");
    std::fs::write(&names, "n01\ttench\nn02\tEnglish springer\n").unwrap();
    let f = ImageFolder::scan(&root, Some(&names)).unwrap();
    assert_eq!(f.classes[1].name, "English springer");
    std::fs::write(&names, "n01 tench\n").unwrap();
    let e = ImageFolder::scan(&root, Some(&names)).unwrap_err().to_string();
    assert!(e.contains("names.tsv") && e.contains("line 1"), "{e}");
}

fn write_idx(path: &Path, dims: &[u32], data: &[u8], gz: bool) {
    let mut b = vec![0u8, 0, 8, dims.len() as u8];
    for d in dims {
        b.extend(d.to_be_bytes());
    }
    b.extend(data);
    if gz {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&b).unwrap();
        b = e.finish().unwrap();
    }
    std::fs::write(path, b).unwrap();
}

#[test]
fn idx_files_plain_and_gzipped() {
    let d = tmpdir("idx");
    let pixels: Vec<u8> = (0..3 * 4 * 4).map(|i| (i * 5) as u8).collect();
    for gz in [false, true] {
        let ext = if gz { ".gz" } else { "" };
        let im = d.join(format!("train-images-idx3-ubyte{ext}"));
        write_idx(&im, &[3, 4, 4], &pixels, gz);
        write_idx(&d.join(format!("train-labels-idx1-ubyte{ext}")), &[3], &[2, 0, 1], gz);
        let p = source::open_idx(&im, 4, None).unwrap();
        assert_eq!((p.count, p.labels.clone(), p.classes.len()), (3, vec![2, 0, 1], 3));
        // Grey replicated to RGB, no resize at the native size.
        assert_eq!(&p.image(1).unwrap()[..6], &[80, 80, 80, 85, 85, 85]);
    }
    write_idx(&d.join("train-labels-idx1-ubyte"), &[2], &[0, 1], false);
    let e = source::open_idx(&d.join("train-images-idx3-ubyte"), 4, None).err().unwrap().to_string();
    assert!(e.contains("labels-idx1") && e.contains("3 images"), "{e}");
    write_idx(&d.join("train-images-idx3-ubyte"), &[3, 4, 4], &pixels[..10], false);
    let e = idx::read_u8(&d.join("train-images-idx3-ubyte")).unwrap_err().to_string();
    assert!(e.contains("announces"), "{e}");
}

#[test]
fn fashion_mnist_from_debian_when_installed() {
    let p = Path::new("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz");
    if !p.exists() {
        eprintln!("skipped: dataset-fashion-mnist not installed");
        return;
    }
    let s = source::open_idx(p, 32, None).unwrap();
    assert_eq!((s.count, s.classes.len(), s.size), (10_000, 10, 32));
    assert_eq!(s.classes[9].name, "Ankle boot");
}

#[test]
fn cache_file_round_trip_and_damage() {
    let d = tmpdir("cache");
    let f = ImageFolder::scan(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/data/cifar10-mini/val")), None).unwrap();
    let items: Vec<_> = f.items.iter().step_by(50).cloned().collect();
    let out = d.join("val.bin");
    let r = cache::write_cache(
        &out,
        &items,
        f.classes.clone(),
        cache::StoredAs::at(32),
        cache::Origin { source: "src", key: "" },
        OnBadImage::Fail,
        &|_| {},
    )
    .unwrap();
    assert_eq!(r.images, items.len());
    let p = PackedImages::open(&out).unwrap();
    assert_eq!(p.count, items.len());
    for (i, (path, label)) in items.iter().enumerate() {
        assert_eq!(&p.image(i).unwrap()[..], load_square(path, 32).unwrap().as_slice());
        assert_eq!(p.labels[i], *label);
    }
    assert_eq!(p.stats.mean_image.len(), 32 * 32 * 3);
    assert!(p.stats.eigval[0] > p.stats.eigval[1] && p.stats.eigval[2] > 0.0);
    // Most of the set: its statistics from the file's sums minus the rest's, exactly those of
    // reading the subset itself.
    let subset: Vec<u32> = (0..p.count as u32).filter(|i| i % 7 != 3).collect();
    let mut direct = alexnet::data::stats::StatsAccumulator::new(32);
    subset.iter().for_each(|&i| direct.add(&p.image(i as usize).unwrap()));
    assert_eq!(p.stats_of(&subset).unwrap(), direct.finish());
    assert_eq!(p.stats_of(&(0..p.count as u32).collect::<Vec<_>>()).unwrap(), p.stats);
    // Cut short, as an interrupted write would be.
    let bytes = std::fs::read(&out).unwrap();
    let cut = d.join("cut.bin");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = PackedImages::open(&cut).err().unwrap().to_string();
    assert!(e.contains("cut.bin") && e.contains("incomplete"), "{e}");
    std::fs::write(&cut, b"hello").unwrap();
    assert!(PackedImages::open(&cut).err().unwrap().to_string().contains("not an alexnet"));
}

fn stats_of(images: &[Vec<u8>], size: usize) -> alexnet::data::DataStats {
    let labels = vec![0; images.len()];
    let classes = vec![alexnet::data::ClassInfo { id: "a".into(), name: "a".into() }];
    cache::pack_raw(images, &labels, classes, size, "t").stats
}

#[test]
fn augmentation_flip_pca_and_determinism() {
    let s = 8;
    let image: Vec<u8> = (0..s * s * 3).map(|i| (i * 7 % 251) as u8).collect();
    let stats = stats_of(std::slice::from_ref(&image), s);
    let spec = DataSpec { stored: s, pad: 0, normalize: Normalize::PerPixelMean };
    let norm = Normalizer::new(&spec, &stats);
    let crop = 6;
    let (mut a, mut b) = (vec![0.0; 3 * crop * crop], vec![0.0; 3 * crop * crop]);
    crop_into(&image, &norm, crop, 0, (1, 2), false, [0.0; 3], &mut a);
    crop_into(&image, &norm, crop, 0, (1, 2), true, [0.0; 3], &mut b);
    for c in 0..3 {
        for y in 0..crop {
            for x in 0..crop {
                assert_eq!(a[(c * crop + y) * crop + x], b[(c * crop + y) * crop + crop - 1 - x]);
            }
        }
    }
    // The mean image of a one-image set is the image: every normalised value is the shift.
    crop_into(&image, &norm, crop, 0, (0, 0), false, [1.0, 2.0, 3.0], &mut a);
    assert!(a[..36].iter().all(|&v| v == 1.0) && a[72..].iter().all(|&v| v == 3.0));
    // Same seed, same sample; PCA noise moves every pixel of a channel by the same amount.
    let aug = Augment {
        random_crop: true,
        flip: true,
        pca_std: 0.1,
        eigval: [0.2, 0.02, 0.005],
        eigvec: [[0.58, 0.7, 0.4], [0.58, 0.0, -0.8], [0.58, -0.7, 0.4]],
    };
    train_sample(&image, &norm, &aug, crop, 0, 42, &mut a);
    train_sample(&image, &norm, &aug, crop, 0, 42, &mut b);
    assert_eq!(a, b);
    let shifts: Vec<f32> = (0..200)
        .map(|seed| {
            let mut o = vec![0.0; 3 * crop * crop];
            let no_crop = Augment { random_crop: false, flip: false, ..aug.clone() };
            train_sample(&image, &norm, &no_crop, crop, 0, seed, &mut o);
            o[0]
        })
        .collect();
    let std = (shifts.iter().map(|v| v * v).sum::<f32>() / shifts.len() as f32).sqrt();
    // Channel 0 shift: 255·Σ p₀ᵢ αᵢ λᵢ, σ ≈ 255·0.1·sqrt(Σ (p₀ᵢ λᵢ)²) ≈ 3.0
    assert!((std - 3.0).abs() < 0.6, "pca shift std {std}");
}

#[test]
fn cifar_pad_and_crop_pads_with_zeros_after_normalisation() {
    let s = 4;
    let image = vec![100u8; s * s * 3];
    let stats = stats_of(&[image.clone(), vec![50u8; s * s * 3]], s);
    let norm = Normalizer::new(&DataSpec { stored: s, pad: 2, normalize: Normalize::PerChannel }, &stats);
    let mut o = vec![0.0; 3 * 16];
    crop_into(&image, &norm, 4, 2, (0, 0), false, [0.0; 3], &mut o);
    // Top-left 2x2 is padding (0); bottom-right 2x2 is the image: (100 - 75) / 25 = 1.
    assert_eq!(o[0], 0.0);
    assert!((o[15] - 1.0).abs() < 1e-5, "{}", o[15]);
}

#[test]
fn ten_crop_equals_the_ten_crops_by_hand() {
    let mut cfg = ModelConfig::variant("cifar").unwrap();
    cfg.input = [3, 24, 24]; // crops smaller than the stored 32 so the ten windows differ
    cfg.layers.retain(|l| !matches!(l, alexnet::model::LayerSpec::Dropout { .. }));
    let size = 32;
    let images: Vec<Vec<u8>> =
        (0..3).map(|k| (0..size * size * 3).map(|i| ((i * 13 + k * 71) % 256) as u8).collect()).collect();
    let stats = stats_of(&images, size);
    let norm = Normalizer::new(&cfg.data, &stats);
    let mut net = Network::new(cfg, 5).unwrap();
    let mut member = Classifier::new(&mut net, &norm);
    let refs: Vec<&[u8]> = images.iter().map(|v| v.as_slice()).collect();
    let got = member.probabilities(&refs, true, 7); // batch 7: crops split across calls
    let n = 3 * 24 * 24;
    for (k, im) in images.iter().enumerate() {
        let mut avg = vec![0.0f32; 10];
        for flip in [false, true] {
            for o in five_origins(size, 24) {
                let mut x = vec![0.0; n];
                crop_into(im, &norm, 24, 0, o, flip, [0.0; 3], &mut x);
                let logits = member.net.forward(&x, 1, Mode::Eval).to_vec();
                softmax(&logits, 10).iter().zip(&mut avg).for_each(|(p, a)| *a += p / 10.0);
            }
        }
        common::assert_close(&format!("image {k}"), &got[k * 10..(k + 1) * 10], &avg, 1e-5);
        // And ten_crop lays the crops out in that order.
        let mut all = vec![0.0; 10 * n];
        ten_crop(im, &norm, 24, &mut all);
        let mut fifth = vec![0.0; n];
        crop_into(im, &norm, 24, 0, five_origins(size, 24)[4], true, [0.0; 3], &mut fifth);
        assert_eq!(&all[9 * n..], &fifth[..]);
    }
}
