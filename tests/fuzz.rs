//! A fixed-seed mutation fuzzer over every parser of files from strangers: image decoding
//! (JPEG, PNG), IDX (plain and gzipped), plain safetensors, our checkpoints, `.pth` (zip and
//! legacy) and the pickle interpreter. Mutations: bit flips, truncation, insertion,
//! duplication, length fields set to 0 / max / random, bytes set to 0x00 / 0xFF / 0x80.
//!
//! For every case: no panic escapes the parser, the process does not abort (the whole test
//! runs under a 3 GiB address-space limit, so a runaway allocation fails the run), and the
//! answer comes within a time bound. This file holds one test so the limit binds only it.

mod common;

use alexnet::Checkpoint;
use alexnet::data::{idx, image};
use alexnet::interop::{pickle, torch};
use alexnet::model::{ModelConfig, ModelFormat};
use std::io::{Read, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const CASES_PER_SEED: usize = 5_000;
const TIME_BOUND: Duration = Duration::from_secs(5);
const ADDRESS_SPACE: u64 = 3 << 30;

/// SplitMix64: a fixed seed gives the same cases on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        alexnet::rng::splitmix64({
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            self.0
        })
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(r: &mut Rng, seed: &[u8]) -> (Vec<u8>, &'static str) {
    let mut b = seed.to_vec();
    let mut last = "none";
    for _ in 0..1 + r.below(3) {
        let i = r.below(b.len());
        last = match r.below(6) {
            0 if !b.is_empty() => {
                for _ in 0..1 + r.below(8) {
                    let j = r.below(b.len());
                    b[j] ^= 1 << r.below(8);
                }
                "bit flips"
            }
            1 => {
                b.truncate(r.below(b.len() + 1));
                "truncation"
            }
            2 => {
                let n = 1 + r.below(64);
                let bytes: Vec<u8> = (0..n).map(|_| r.next() as u8).collect();
                b.splice(i.min(b.len())..i.min(b.len()), bytes);
                "insertion"
            }
            3 if !b.is_empty() => {
                let (from, n) = (r.below(b.len()), 1 + r.below(256));
                let slice = b[from..(from + n).min(b.len())].to_vec();
                let at = r.below(b.len() + 1);
                b.splice(at..at, slice);
                "duplication"
            }
            4 => {
                // A length field: at a header offset or anywhere, 4 or 8 bytes, either endianness.
                let at = if r.below(3) == 0 { [0, 4, 8, 12][r.below(4)] } else { i };
                let v: u64 = [0, 1, 0x7fff_ffff, u32::MAX as u64, u64::MAX, r.next()][r.below(6)];
                let bytes = match r.below(4) {
                    0 => (v as u32).to_le_bytes().to_vec(),
                    1 => (v as u32).to_be_bytes().to_vec(),
                    2 => v.to_le_bytes().to_vec(),
                    _ => v.to_be_bytes().to_vec(),
                };
                for (k, x) in bytes.into_iter().enumerate() {
                    if let Some(y) = b.get_mut(at + k) {
                        *y = x;
                    }
                }
                "length field"
            }
            _ if !b.is_empty() => {
                b[i] = [0x00, 0xFF, 0x80, r.next() as u8][r.below(4)];
                "byte set"
            }
            _ => last,
        };
    }
    (b, last)
}

/// A parser under test: bytes in, Ok or a clean error out.
type Parser = fn(&[u8]) -> bool;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn seeds() -> Vec<(&'static str, Vec<u8>, Parser)> {
    let fx = |p: &str| std::fs::read(root().join("tests/fixtures").join(p)).unwrap();
    let jpeg = std::fs::read(root().join("data/cifar10-mini/val/ship/4950.jpg")).unwrap();
    let decode: Parser = |b| image::decode_rgb(b, Path::new("fuzz")).is_ok();
    let idx_parse: Parser = |b| idx::parse_u8(b.to_vec(), Path::new("fuzz")).is_ok();
    let pth: Parser = |b| torch::read_tensors_from_bytes(b).is_ok();
    let pkl: Parser = |b| pickle::load(b).is_ok();
    let ck: Parser = |b| Checkpoint::from_bytes(b, Path::new("fuzz")).is_ok();
    let mut idx_file = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 4, 0, 0, 0, 4];
    idx_file.extend((0..32).map(|i| i as u8 * 7));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&idx_file).unwrap();
    let idx_gz = gz.finish().unwrap();
    let zip = fx("tiny_alexnet_zip.pth");
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(&zip)).unwrap();
    let mut data_pkl = Vec::new();
    for i in 0..archive.len() {
        let mut f = archive.by_index(i).unwrap();
        if f.name().is_ok_and(|n| n.ends_with("data.pkl")) {
            f.read_to_end(&mut data_pkl).unwrap();
        }
    }
    vec![
        ("jpeg", jpeg, decode),
        ("cmyk jpeg", fx("images/cmyk.jpg"), decode),
        ("png", fx("images/rgba.png"), decode),
        ("idx", idx_file, idx_parse),
        ("idx.gz", idx_gz, idx_parse),
        ("safetensors", torchvision_safetensors(), pth),
        ("checkpoint", small_checkpoint(), ck),
        // Version 1 has no checksums: its mutations reach the config, plan and shape checks.
        ("checkpoint v1", unsigned(&small_checkpoint()), ck),
        ("packed cache", packed_cache(), |b| alexnet::data::PackedImages::from_bytes(b.to_vec()).is_ok()),
        ("pth zip", zip, pth),
        ("pth legacy", fx("tiny_alexnet_legacy.pth"), pth),
        ("pickle", data_pkl, pkl),
        // A model file is untrusted too: parsed, then planned (every size checked, nothing allocated).
        ("model toml", std::fs::read(root().join("models/paper.toml")).unwrap(), |b| model_file(b, ModelFormat::Toml)),
        ("model json", serde_json::to_vec(&ModelConfig::paper()).unwrap(), |b| model_file(b, ModelFormat::Json)),
        ("meta.mat", common::meta_mat(false), |b| {
            alexnet::data::matfile::parse(b, Path::new("fuzz"), "synsets").is_ok()
        }),
        ("meta.mat zlib", common::meta_mat(true), |b| {
            alexnet::data::matfile::parse(b, Path::new("fuzz"), "synsets").is_ok()
        }),
    ]
}

/// A model file's text parsed and planned.
fn model_file(bytes: &[u8], format: ModelFormat) -> bool {
    let Ok(text) = std::str::from_utf8(bytes) else { return false };
    ModelConfig::parse(text, format).is_ok_and(|c| alexnet::model::plan(&c).is_ok())
}

/// The tiny reference net's weights as safetensors with torchvision's key names.
fn torchvision_safetensors() -> Vec<u8> {
    let ck = alexnet::interop::import(&root().join("tests/fixtures/tiny_alexnet_zip.pth"), &Default::default(), None)
        .unwrap();
    let path = std::env::temp_dir().join(format!("alexnet-fuzz-tv-{}.safetensors", std::process::id()));
    let named = alexnet::interop::torchvision_named(&ck).unwrap();
    alexnet::interop::plain::write_plain(&path, &named, Default::default()).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    bytes
}

/// `ck` rewritten as format version 1: the same tensors and metadata, no checksums.
fn unsigned(ck: &[u8]) -> Vec<u8> {
    use safetensors::SafeTensors;
    let st = SafeTensors::deserialize(ck).unwrap();
    let (_, meta) = SafeTensors::read_metadata(ck).unwrap();
    let mut meta = meta.metadata().clone().unwrap();
    meta.retain(|k, _| !k.starts_with("sha256"));
    meta.insert("format".into(), "alexnet-checkpoint-1".into());
    safetensors::serialize(st.tensors(), Some(meta)).unwrap()
}

/// A packed image set of three 8x8 images, as `alexnet prepare` writes them.
fn packed_cache() -> Vec<u8> {
    let images: Vec<Vec<u8>> =
        (0..3).map(|k| (0..8 * 8 * 3).map(|i| ((i * 7 + k * 31) % 256) as u8).collect()).collect();
    let classes: Vec<_> = (0..2).map(|i| alexnet::data::ClassInfo { id: i.to_string(), name: i.to_string() }).collect();
    let dir = std::env::temp_dir().join(format!("alexnet-fuzz-cache-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let items: Vec<(PathBuf, u32)> = images
        .iter()
        .enumerate()
        .map(|(k, img)| {
            let p = dir.join(format!("{k}.png"));
            ::image::RgbImage::from_raw(8, 8, img.clone()).unwrap().save(&p).unwrap();
            (p, (k % 2) as u32)
        })
        .collect();
    let out = dir.join("cache.bin");
    let bad = alexnet::data::cache::OnBadImage::Fail;
    alexnet::data::cache::write_cache(
        &out,
        &items,
        classes,
        alexnet::data::cache::StoredAs::at(8),
        alexnet::data::cache::Origin { source: "fuzz", key: "" },
        bad,
        &|_| {},
    )
    .unwrap();
    let bytes = std::fs::read(&out).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    bytes
}

/// Our checkpoint of a network with every layer kind and few parameters (fast to hash).
fn small_checkpoint() -> Vec<u8> {
    use alexnet::model::{Init, LayerSpec::*, ModelConfig};
    let cfg = ModelConfig {
        name: "fuzz".into(),
        input: [3, 8, 8],
        layers: vec![
            Conv { name: "conv1".into(), out: 4, kernel: 3, stride: 1, pad: 1, groups: 1, bias_init: 0.0 },
            Relu,
            Lrn(alexnet::kernels::lrn::LrnParams::paper()),
            MaxPool { kernel: 2, stride: 2, pad: 0 },
            Flatten,
            Dropout { p: 0.5 },
            Linear { name: "fc".into(), out: 3, bias_init: 0.0 },
        ],
        init: Init::He,
        dropout_mode: Default::default(),
        data: alexnet::data::DataSpec { stored: 8, pad: 0, normalize: alexnet::data::Normalize::PerPixelMean },
    };
    let net = alexnet::Network::new(cfg, 1).unwrap();
    let classes: Vec<_> = (0..3).map(|i| alexnet::data::ClassInfo { id: i.to_string(), name: i.to_string() }).collect();
    let stats = alexnet::data::DataStats {
        count: 1,
        size: 8,
        mean_image: vec![1.0; 8 * 8 * 3],
        channel_mean: [0.0; 3],
        channel_std: [1.0; 3],
        eigval: [0.0; 3],
        eigvec: [[0.0; 3]; 3],
    };
    let path = std::env::temp_dir().join(format!("alexnet-fuzz-{}.safetensors", std::process::id()));
    Checkpoint::capture(&net, &classes, &stats, None, None).save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    bytes
}

fn limit_address_space() {
    let lim = libc::rlimit { rlim_cur: ADDRESS_SPACE, rlim_max: ADDRESS_SPACE };
    // SAFETY: setrlimit reads the struct we pass; lowering our own limit needs no privilege.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_AS, &lim) };
    assert_eq!(rc, 0, "setrlimit(RLIMIT_AS) failed");
}

#[test]
fn every_parser_survives_mutated_files() {
    let seeds = seeds();
    for (name, seed, parse) in &seeds {
        assert!(parse(seed), "{name}: the unmutated seed must parse");
    }
    limit_address_space();
    // Panics caught inside the library (the image decoder's safety net) are counted, not shown.
    let caught = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = caught.clone();
    std::panic::set_hook(Box::new(move |_| {
        c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }));
    // A case that hangs never returns to be timed: a watchdog ends the run instead.
    let started = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let clock = Instant::now();
    let watched = started.clone();
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_millis(500));
            let t = watched.load(std::sync::atomic::Ordering::Relaxed);
            if t > 0 && clock.elapsed().as_millis() as u64 > t + 6 * TIME_BOUND.as_millis() as u64 {
                eprintln!("a fuzz case has run for over {}s: hung", 6 * TIME_BOUND.as_secs());
                std::process::exit(101);
            }
        }
    });
    let mut r = Rng(0x5eed_a1e8_2012);
    let (mut cases, mut accepted, mut failures) = (0usize, 0usize, Vec::new());
    let t_all = Instant::now();
    for (name, seed, parse) in &seeds {
        for k in 0..CASES_PER_SEED {
            let (bytes, how) = mutate(&mut r, seed);
            let t0 = Instant::now();
            started.store(clock.elapsed().as_millis() as u64 + 1, std::sync::atomic::Ordering::Relaxed);
            match catch_unwind(AssertUnwindSafe(|| parse(&bytes))) {
                Ok(ok) => accepted += ok as usize,
                Err(_) => failures.push(format!("{name} case {k} ({how}): panicked")),
            }
            if t0.elapsed() > TIME_BOUND {
                failures.push(format!("{name} case {k} ({how}): {:.1}s", t0.elapsed().as_secs_f64()));
            }
            cases += 1;
        }
    }
    let _ = std::panic::take_hook();
    eprintln!(
        "{cases} cases over {} seeds in {:.1}s: {accepted} parsed, {} rejected; {} decoder panics caught inside the library",
        seeds.len(),
        t_all.elapsed().as_secs_f64(),
        cases - accepted,
        caught.load(std::sync::atomic::Ordering::Relaxed)
    );
    assert!(cases >= 20_000, "{cases} cases");
    assert!(failures.is_empty(), "{} failures, first: {:?}", failures.len(), &failures[..failures.len().min(10)]);
}
