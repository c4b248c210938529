//! Shared test helpers: fixture loading and finite differences.
#![allow(dead_code)]

use safetensors::{Dtype, SafeTensors};
use std::path::PathBuf;

pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// All tensors of a fixture file as f32 (int64 converted), by name, with shapes.
pub struct Fixture {
    bytes: Vec<u8>,
}

impl Fixture {
    pub fn load(name: &str) -> Self {
        let p = fixture_path(name);
        Self { bytes: std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())) }
    }
    pub fn get(&self, name: &str) -> (Vec<usize>, Vec<f32>) {
        let st = SafeTensors::deserialize(&self.bytes).expect("valid safetensors");
        let t = st.tensor(name).unwrap_or_else(|e| panic!("fixture tensor {name}: {e}"));
        let data = match t.dtype() {
            Dtype::F32 => t.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect(),
            Dtype::I64 => t.data().chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f32).collect(),
            d => panic!("unexpected dtype {d:?}"),
        };
        (t.shape().to_vec(), data)
    }
    pub fn f32(&self, name: &str) -> Vec<f32> {
        self.get(name).1
    }
}

/// `Σ f(x)·r` in f64: the scalar whose gradient w.r.t. `x` is the backward of `f` applied to `r`.
pub fn dot(y: &[f32], r: &[f32]) -> f64 {
    y.iter().zip(r).map(|(&a, &b)| a as f64 * b as f64).sum()
}

/// Central finite differences of `x ↦ Σ f(x)·r` at every element of `x`.
pub fn numeric_grad(x: &[f32], r: &[f32], eps: f32, f: impl Fn(&[f32]) -> Vec<f32>) -> Vec<f32> {
    let mut xp = x.to_vec();
    (0..x.len())
        .map(|i| {
            let orig = xp[i];
            xp[i] = orig + eps;
            let lp = dot(&f(&xp), r);
            xp[i] = orig - eps;
            let lm = dot(&f(&xp), r);
            xp[i] = orig;
            ((lp - lm) / (2.0 * eps as f64)) as f32
        })
        .collect()
}

pub fn assert_close(what: &str, ours: &[f32], reference: &[f32], tol: f64) {
    assert_eq!(ours.len(), reference.len(), "{what}: length {} vs {}", ours.len(), reference.len());
    let e = alexnet::tensor::rel_err(ours, reference);
    assert!(e <= tol, "{what}: relative error {e:.3e} > {tol:.0e}");
}

/// The ILSVRC test tree's classes (tests/ilsvrc.rs), and a miniature devkit meta.mat for them.
pub const WNIDS: [&str; 3] = ["n01440764", "n02102040", "n02979186"];
/// Their ILSVRC2012_IDs in the fake devkit: not in wnid order, as in the real one.
pub const ID_OF: [u32; 3] = [3, 1, 2];

/// A level-5 MAT data element: tag, data, padding to 8 bytes.
pub fn element(ty: u32, data: &[u8]) -> Vec<u8> {
    let mut e = [ty.to_le_bytes(), (data.len() as u32).to_le_bytes()].concat();
    e.extend(data);
    e.resize(e.len().div_ceil(8) * 8, 0);
    e
}

/// An array element: flags (class), dimensions, name, then `body`.
pub fn matrix(class: u8, dims: &[i32], name: &str, body: &[u8]) -> Vec<u8> {
    let mut c = element(6, &[class, 0, 0, 0, 0, 0, 0, 0]);
    c.extend(element(5, &dims.iter().flat_map(|d| d.to_le_bytes()).collect::<Vec<_>>()));
    c.extend(element(1, name.as_bytes()));
    c.extend(body);
    element(14, &c)
}

/// The devkit's meta.mat in miniature: `synsets`, a 4x1 struct array (three leaves, one inner
/// node), numbers stored as MATLAB stores small doubles (uint8, uint16), wnids as UTF-16.
pub fn meta_mat(compressed: bool) -> Vec<u8> {
    let number = |v: f64| {
        let stored = if v < 256.0 { element(2, &[v as u8]) } else { element(4, &(v as u16).to_le_bytes()) };
        matrix(6, &[1, 1], "", &stored)
    };
    let text = |t: &str| {
        let utf16: Vec<u8> = t.encode_utf16().flat_map(|c| c.to_le_bytes()).collect();
        matrix(4, &[1, t.len() as i32], "", &element(4, &utf16))
    };
    let fields = ["ILSVRC2012_ID", "WNID", "words", "num_children"];
    let mut body = [(4u32 << 16 | 5).to_le_bytes(), 32u32.to_le_bytes()].concat();
    body.extend(element(
        1,
        &fields
            .iter()
            .flat_map(|f| {
                let mut b = f.as_bytes().to_vec();
                b.resize(32, 0);
                b
            })
            .collect::<Vec<_>>(),
    ));
    let mut synsets: Vec<(u32, &str, u32)> = (0..3).map(|c| (ID_OF[c], WNIDS[c], 0)).collect();
    synsets.sort();
    synsets.push((1001, "n00001740", 2));
    for (id, wnid, children) in &synsets {
        body.extend(number(*id as f64));
        body.extend(text(wnid));
        body.extend(text("some words"));
        body.extend(number(*children as f64));
    }
    let array = matrix(2, &[synsets.len() as i32, 1], "synsets", &body);
    let mut header = mat_header();
    if compressed {
        use std::io::Write;
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&array).unwrap();
        let z = z.finish().unwrap();
        header.extend(15u32.to_le_bytes());
        header.extend((z.len() as u32).to_le_bytes());
        header.extend(z);
    } else {
        header.extend(array);
    }
    header
}

/// The 128-byte header of a little-endian level-5 MAT file.
pub fn mat_header() -> Vec<u8> {
    let mut header = b"MATLAB 5.0 MAT-file, written by the alexnet tests".to_vec();
    header.resize(116, b' ');
    header.extend([0u8; 8]);
    header.extend([0x00, 0x01, b'I', b'M']);
    header
}

/// Removes the scratch folders (`$TMPDIR/alexnet-<test>-<pid>`) of test processes that are no
/// longer running: a test killed, or one that kept its runs' checkpoints, would otherwise
/// leave gigabytes behind on every run of the suite. Only this suite's own names are touched
/// (never `alexnet-cache-<uid>`, the shared cache's fallback folder).
pub fn sweep_dead_scratch() {
    const OURS: &[&str] = &[
        "cli-json",
        "compact",
        "compare",
        "compare-bad",
        "features",
        "fuzz",
        "fuzz-cache",
        "fuzz-tv",
        "hostile",
        "ilsvrc",
        "io",
        "pinned",
        "pinned-hand",
        "store",
        "test",
        "train",
    ];
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("alexnet-") else { continue };
        // `<test>-<pid>`, or `<test>-<name>-<pid>` for the helpers that add a name.
        let Some((head, pid)) = rest.rsplit_once('-') else { continue };
        let Ok(pid) = pid.parse::<u32>() else { continue };
        let ours = OURS.iter().any(|t| head == *t || head.starts_with(&format!("{t}-")));
        if ours && pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// A PNG chunk: length, type, data, CRC-32 of type and data.
pub fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    let mut c = (data.len() as u32).to_be_bytes().to_vec();
    c.extend_from_slice(kind);
    c.extend_from_slice(data);
    c.extend_from_slice(&crc.sum().to_be_bytes());
    c
}

/// A PNG whose header claims `w × h` RGB pixels, with one tiny (wrong-sized) IDAT.
pub fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(png_chunk(b"IHDR", &ihdr));
    png.extend(png_chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]));
    png.extend(png_chunk(b"IEND", &[]));
    png
}

/// The cifar variant, freshly initialised (seed 1), classes named "0".."9", no mean image: a
/// checkpoint for tests of the commands around the network.
pub fn tiny_checkpoint() -> alexnet::Checkpoint {
    cifar_checkpoint(1, 0.0, 1.0)
}

/// The cifar variant initialised from `seed`, classes named "0".."9", per-channel statistics
/// `mean` and `std` in every channel and no mean image.
pub fn cifar_checkpoint(seed: u64, mean: f32, std: f32) -> alexnet::Checkpoint {
    let cfg = alexnet::ModelConfig::variant("cifar").unwrap();
    let net = alexnet::Network::new(cfg, seed).unwrap();
    let classes =
        (0..10).map(|i| alexnet::data::ClassInfo { id: i.to_string(), name: i.to_string() }).collect::<Vec<_>>();
    let stats = alexnet::data::DataStats {
        count: 1,
        size: 32,
        mean_image: vec![],
        channel_mean: [mean; 3],
        channel_std: [std; 3],
        eigval: [0.; 3],
        eigvec: [[0.; 3]; 3],
    };
    alexnet::Checkpoint::capture(&net, &classes, &stats, None, None)
}
