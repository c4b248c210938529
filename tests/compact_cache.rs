//! The compact cache (format 2): images at or below the stored size keep their own bytes and
//! come back exactly as a direct decode gives them; larger ones are stored as JPEGs at the
//! stored size (or raw when smaller), with statistics of exactly the pixels read back; damage
//! is an error naming the image; format-1 files still open; and the loader's batches do not
//! depend on its number of threads.

use alexnet::data::cache::{self, Kind, OnBadImage, Origin};
use alexnet::data::image::load_square;
use alexnet::data::stats::StatsAccumulator;
use alexnet::data::{
    Augment, AugmentOptions, ClassInfo, DataSpec, ImageFolder, LoaderOptions, PackedImages, TrainInput,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("alexnet-compact-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Every 25th real photo (32x32 JPEG) of the embedded validation set, with labels.
fn photos() -> (Vec<(PathBuf, u32)>, Vec<ClassInfo>) {
    let f = ImageFolder::scan(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/data/cifar10-mini/val")), None).unwrap();
    (f.items.iter().step_by(25).cloned().collect(), f.classes)
}

fn pack(dir: &Path, items: &[(PathBuf, u32)], classes: &[ClassInfo], size: usize) -> (PathBuf, PackedImages) {
    let out = dir.join(format!("set-{size}.bin"));
    let origin = Origin { source: "test", key: "" };
    cache::write_cache(&out, items, classes.to_vec(), cache::StoredAs::at(size), origin, OnBadImage::Fail, &|_| {})
        .unwrap();
    let p = PackedImages::open(&out).unwrap();
    (out, p)
}

/// The statistics of exactly what the set gives back, image by image.
fn stats_of_reads(p: &PackedImages) {
    let mut acc = StatsAccumulator::new(p.size);
    (0..p.count).for_each(|i| acc.add(&p.image(i).unwrap()));
    assert_eq!(acc.finish(), p.stats, "statistics are those of the pixels read back");
}

#[test]
fn smaller_images_keep_their_files_and_come_back_exactly() {
    let d = tmpdir("small");
    let (items, classes) = photos();
    for size in [32, 64] {
        let (_, p) = pack(&d, &items, &classes, size);
        assert_eq!(p.kinds(), [0, items.len(), 0], "each photo kept as its own JPEG at {size}");
        let files: u64 = items.iter().map(|(f, _)| std::fs::metadata(f).unwrap().len()).sum();
        assert_eq!(p.stored_bytes(), files, "nothing stored upscaled");
        for (i, (path, label)) in items.iter().enumerate() {
            assert_eq!(&p.image(i).unwrap()[..], &load_square(path, size).unwrap()[..], "image {i} at {size}");
            assert_eq!(p.labels[i], *label);
        }
        stats_of_reads(&p);
    }
}

#[test]
fn larger_images_are_stored_at_the_stored_size() {
    let d = tmpdir("large");
    let (items, classes) = photos();
    let (_, p) = pack(&d, &items, &classes, 24);
    let raw = 24 * 24 * 3;
    for (i, (path, _)) in items.iter().enumerate() {
        let (kind, len) = p.stored_as(i).unwrap();
        assert!(matches!(kind, Kind::Encoded | Kind::Raw) && len <= raw as u64, "image {i}: {kind:?} {len} bytes");
        let got = p.image(i).unwrap();
        let want = load_square(path, 24).unwrap();
        assert_eq!(got.len(), raw);
        // A JPEG of quality 90: close to the direct resize, not equal.
        let mean_abs = got.iter().zip(&want).map(|(&a, &b)| (a as f64 - b as f64).abs()).sum::<f64>() / raw as f64;
        assert!(mean_abs < 4.0, "image {i}: mean absolute difference {mean_abs:.2} from the direct resize");
    }
    assert!(p.kinds()[1] > 0, "some photos stored as JPEG: {:?}", p.kinds());
    assert!(p.stored_bytes() < (items.len() * raw) as u64);
    stats_of_reads(&p);
}

#[test]
fn quality_and_reencoding_as_asked() {
    let d = tmpdir("quality");
    let (items, classes) = photos();
    let origin = Origin { source: "test", key: "" };
    let mut sizes = Vec::new();
    for quality in [50, 95] {
        let out = d.join(format!("q{quality}.bin"));
        let how = cache::StoredAs { size: 32, quality, reencode: true };
        cache::write_cache(&out, &items, classes.clone(), how, origin, OnBadImage::Fail, &|_| {}).unwrap();
        let p = PackedImages::open(&out).unwrap();
        // Every photo re-encoded at the stored size (or raw where that is smaller), none kept.
        assert!((0..p.count).all(|i| p.stored_as(i).unwrap().0 != Kind::RawNative), "{:?}", p.kinds());
        assert!(p.kinds()[1] > 0);
        stats_of_reads(&p);
        sizes.push(p.stored_bytes());
    }
    assert!(sizes[0] < sizes[1], "quality 50 is smaller than 95: {sizes:?}");
    let how = cache::StoredAs { size: 32, quality: 0, reencode: false };
    let e = cache::write_cache(&d.join("q0.bin"), &items, classes, how, origin, OnBadImage::Fail, &|_| {});
    assert!(e.err().unwrap().to_string().contains("JPEG quality 0"));
}

#[test]
fn incompressible_images_are_stored_raw() {
    let d = tmpdir("noise");
    let root = d.join("images/noise");
    std::fs::create_dir_all(&root).unwrap();
    let mut s = 12345u64;
    let mut noise = |w: u32, h: u32| {
        image::RgbImage::from_fn(w, h, |_, _| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            image::Rgb([(s >> 33) as u8, (s >> 41) as u8, (s >> 49) as u8])
        })
    };
    // A long noise PNG below the stored size: its central square, raw, is smaller than the file.
    noise(60, 20).save(root.join("wide.png")).unwrap();
    // Noise above the stored size: a JPEG of it is larger than the raw pixels.
    noise(16, 16).save(root.join("big.png")).unwrap();
    let items: Vec<(PathBuf, u32)> = vec![(root.join("wide.png"), 0), (root.join("big.png"), 0)];
    let classes = vec![ClassInfo { id: "noise".into(), name: "noise".into() }];
    let (_, p) = pack(&d, &items, &classes, 8);
    assert_eq!(p.stored_as(1).unwrap(), (Kind::Raw, 8 * 8 * 3));
    assert_eq!(&p.image(1).unwrap()[..], &load_square(&items[1].0, 8).unwrap()[..]);
    let (_, p) = pack(&d, &items, &classes, 24);
    assert_eq!(p.stored_as(0).unwrap(), (Kind::RawNative, 20 * 20 * 3));
    assert_eq!(
        &p.image(0).unwrap()[..],
        &load_square(&items[0].0, 24).unwrap()[..],
        "the square gives the same pixels"
    );
    stats_of_reads(&p);
}

#[test]
fn damage_is_an_error_naming_the_file_and_image() {
    let d = tmpdir("damage");
    let (items, classes) = photos();
    let (out, p) = pack(&d, &items, &classes, 32);
    // A flipped bit in the middle of image 9's JPEG data (past the images whose decoded pixels
    // are checked when the file is opened: for those, opening fails).
    let k = 9;
    let start: u64 = 64 + (0..k).map(|i| p.stored_as(i).unwrap().1).sum::<u64>();
    let mut bytes = std::fs::read(&out).unwrap();
    bytes[(start + p.stored_as(k).unwrap().1 / 2) as usize] ^= 0x10;
    let bad = d.join("bad.bin");
    std::fs::write(&bad, &bytes).unwrap();
    let p = PackedImages::open(&bad).unwrap();
    assert!(p.image(k - 1).is_ok());
    let e = p.image(k).unwrap_err().to_string();
    assert!(e.contains("bad.bin") && e.contains("image 9") && e.contains("damaged"), "{e}");
    // The loader hands the error over in its place, and stops.
    let input = train_input(&p);
    let opts = LoaderOptions { keep_last: true, workers: 2, ..LoaderOptions::new(2) };
    let got: Vec<_> = opts.spawn(Arc::new(p), (0..items.len() as u32).collect(), &input, 0).collect();
    assert_eq!(got.len(), 5, "batches 0-3, then batch 4 (images 8 and 9): its error, then nothing");
    assert!(got[..4].iter().all(|b| b.is_ok()));
    assert!(got[4].as_ref().err().unwrap().to_string().contains("image 9"));
    // A damaged probed image is refused when the file is opened.
    let mut bytes = std::fs::read(&out).unwrap();
    bytes[64 + 10] ^= 0x10;
    std::fs::write(&bad, &bytes).unwrap();
    let e = PackedImages::open(&bad).err().unwrap().to_string();
    assert!(e.contains("bad.bin") && e.contains("image 0") && e.contains("damaged"), "{e}");
    // An index entry pointing past the images is refused when the file is opened.
    let mut bytes = std::fs::read(&out).unwrap();
    let n = bytes.len();
    let json_off = u64::from_le_bytes(bytes[n - 32..n - 24].try_into().unwrap()) as usize;
    let index_off = json_off - 32 * 32 * 3 * 4 - items.len() * (32 + 4);
    bytes[index_off..index_off + 8].copy_from_slice(&(n as u64).to_le_bytes());
    std::fs::write(&bad, &bytes).unwrap();
    let e = PackedImages::open(&bad).err().unwrap().to_string();
    assert!(e.contains("bad.bin") && e.contains("image 0") && e.contains("does not fit"), "{e}");
    // An entry claiming a record wider than the stored size (a huge read on every access).
    let mut bytes = std::fs::read(&out).unwrap();
    bytes[index_off + 20..index_off + 24].copy_from_slice(&u32::MAX.to_le_bytes());
    bytes[index_off + 24..index_off + 28].copy_from_slice(&u32::MAX.to_le_bytes());
    std::fs::write(&bad, &bytes).unwrap();
    let e = PackedImages::open(&bad).err().unwrap().to_string();
    assert!(e.contains("image 0") && e.contains("does not fit"), "{e}");
    // Pixels recorded at packing time that this build's decoder does not give: refused at open.
    let bytes = std::fs::read(&out).unwrap();
    let meta = String::from_utf8_lossy(&bytes[json_off..n - 32]).into_owned();
    let at = meta.find("\"probes\":[[0,").expect("probes recorded") + "\"probes\":[[0,".len();
    let mut edited = bytes.clone();
    let d = &mut edited[json_off + at];
    *d = if *d == b'1' { b'2' } else { b'1' };
    std::fs::write(&bad, &edited).unwrap();
    let e = PackedImages::open(&bad).err().unwrap().to_string();
    assert!(e.contains("image 0") && e.contains("decodes to other pixels"), "{e}");
}

#[test]
fn format_1_files_still_open() {
    // Format 1 is format 2 without the index: every image raw, in order, from byte 64.
    let (size, n) = (4usize, 3usize);
    let images: Vec<Vec<u8>> = (0..n).map(|i| (0..size * size * 3).map(|j| (i * 50 + j) as u8).collect()).collect();
    let classes: Vec<ClassInfo> = (0..2).map(|i| ClassInfo { id: i.to_string(), name: i.to_string() }).collect();
    let v2 = cache::pack_raw(&images, &[1, 0, 1], classes.clone(), size, "t");
    let mut packer = cache::Packer::new(Vec::new(), size).unwrap();
    images.iter().zip([1, 0, 1]).for_each(|(img, l)| packer.push(img, l).unwrap());
    let (b, _) = packer.finish(classes, "t").unwrap();
    let len = b.len();
    let json_off = u64::from_le_bytes(b[len - 32..len - 24].try_into().unwrap()) as usize;
    let index_off = 64 + n * size * size * 3;
    let mut v1 = b[..index_off].to_vec();
    v1.extend(&b[index_off + 32 * n..len - 32]);
    v1.extend(((json_off - 32 * n) as u64).to_le_bytes());
    v1.extend(&b[len - 24..]);
    v1[15] = 1;
    let last = v1.len() - 1;
    v1[last] = 1;
    let p = PackedImages::from_bytes(v1).unwrap();
    assert_eq!((p.count, p.labels.clone(), p.stats.clone()), (n, vec![1, 0, 1], v2.stats.clone()));
    (0..n).for_each(|i| assert_eq!(&p.image(i).unwrap()[..], &images[i][..]));
}

fn train_input(p: &PackedImages) -> Arc<TrainInput> {
    let spec = DataSpec { stored: p.size, pad: 0, normalize: alexnet::data::Normalize::PerChannel };
    let augment = Augment::new(&AugmentOptions::default(), &p.stats);
    Arc::new(TrainInput::new(&spec, &p.stats, augment, p.size - 4, 7))
}

#[test]
fn batches_do_not_depend_on_the_loader_threads() {
    let (items, classes) = photos();
    let p = Arc::new(cache::pack_in_memory(&items, classes, 32, "t", OnBadImage::Fail).unwrap());
    let input = train_input(&p);
    let order: Vec<u32> = (0..p.count as u32).rev().collect();
    let serve = |workers: usize, start_batch: usize| -> Vec<(usize, Vec<usize>, Vec<f32>)> {
        let opts = LoaderOptions { workers, start_batch, keep_last: true, ..LoaderOptions::new(3) };
        opts.spawn(p.clone(), order.clone(), &input, 5).map(|b| b.unwrap()).map(|b| (b.index, b.labels, b.x)).collect()
    };
    let one = serve(1, 0);
    assert_eq!(one.len(), p.count.div_ceil(3));
    assert!(one.iter().enumerate().all(|(i, b)| b.0 == i), "in order");
    for workers in [2, 3, 7] {
        assert!(serve(workers, 0) == one, "{workers} workers");
        assert!(serve(workers, 2) == one[2..], "{workers} workers from batch 2 (a resume)");
    }
    // Without keep_last the short last batch is dropped whichever worker holds it.
    let full = LoaderOptions { workers: 3, ..LoaderOptions::new(3) }.spawn(p.clone(), order.clone(), &input, 5).count();
    assert_eq!(full, p.count / 3);
}
