//! Hostile inputs to the importers: `.pth` files from the internet are the normal input, so every
//! crafted file must give a clear error (naming the problem), never a crash, a hang or an
//! out-of-memory. Every input is built here, from bytes or from the tiny fixtures.

mod common;
use alexnet::interop::pickle::{self, Value};
use alexnet::interop::plain::write_plain;
use alexnet::interop::torch::{self, FileKind};
use alexnet::interop::{import, torchvision_named};
use alexnet::tensor::NamedTensor;
use std::io::{Cursor, Read, Write};
use std::path::PathBuf;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("alexnet-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// The process's peak resident memory in MiB (Linux), to check no input blew it up.
fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? / 1024)
}

fn assert_memory_reasonable() {
    if let Some(mib) = peak_rss_mib() {
        assert!(mib < 2048, "peak memory {mib} MiB");
    }
}

/// `\x80\x02 body .`
fn pkl(body: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, 2];
    p.extend_from_slice(body);
    p.push(b'.');
    p
}

fn load_err(bytes: &[u8]) -> String {
    match pickle::load(bytes) {
        Ok((v, _)) => panic!("loaded {}", v.describe()),
        Err(e) => e.to_string(),
    }
}

// ---- 1. the pickle reader's resources -------------------------------------------------------

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    const N: usize = 1 << 20;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        // ] ] ] ... a a a: lists appended into lists.
        ("lists", [vec![b']'; N / 2], vec![b'a'; N / 2 - 1]].concat()),
        // ( ( ( ... ) t t t: tuples through MARKs.
        ("tuples", [vec![b'('; N / 2], vec![b')'], vec![b't'; N / 2]].concat()),
        // ) 0x85 0x85 ...: one-tuples without any MARK.
        ("TUPLE1", [vec![b')'], vec![0x85; N]].concat()),
        // } K0 } K0 } ... s s s: dicts set into dicts.
        ("dicts", [b"}".to_vec(), b"K\x00}".repeat(N / 3), vec![b's'; N / 3]].concat()),
        // only MARKs
        ("MARKs", vec![b'('; N]),
    ];
    for (what, body) in cases {
        let e = load_err(&pkl(&body));
        assert!(e.contains("nests deeper than 1000"), "{what}: {e}");
    }
    // Just inside the limit: built, copied through the memo, compared and dropped without trouble.
    let d = pickle::MAX_DEPTH - 1;
    let body = [vec![b']'; d], vec![b'a'; d - 1], b"q\x00h\x00\x86".to_vec()].concat();
    let (v, _) = pickle::load(&pkl(&body)).unwrap();
    let Value::Tuple(t) = &v else { panic!("{}", v.describe()) };
    assert_eq!(t[0], t[1]);
    drop(v);
}

#[test]
fn memo_doubling_is_bounded() {
    // ] q0, then ( h0 h0 e q0 over and over: each round triples the list held by memo 0.
    let mut body = b"]q\x00".to_vec();
    while body.len() < 400 {
        body.extend_from_slice(b"(h\x00h\x00eq\x00");
    }
    let start = std::time::Instant::now();
    let e = load_err(&pkl(&body));
    assert!(e.contains("more than 10000000 values"), "{e}");
    // The same with APPEND of the list to itself through BINGET, and with long memo indices.
    let mut body = b"]r\x07\x00\x00\x00".to_vec();
    while body.len() < 400 {
        body.extend_from_slice(b"j\x07\x00\x00\x00ar\x07\x00\x00\x00j\x07\x00\x00\x00a");
    }
    let e = load_err(&pkl(&body));
    assert!(e.contains("more than 10000000 values"), "{e}");
    // A big string copied through a list in the memo: bounded by bytes, not only by values.
    let mut body = b"]X\x00\x00\x10\x00".to_vec();
    body.extend(std::iter::repeat_n(b'x', 1 << 20));
    body.extend_from_slice(b"aq\x01");
    for _ in 0..40 {
        body.extend_from_slice(b"(h\x01h\x01eq\x01");
    }
    let e = load_err(&pkl(&body));
    assert!(e.contains("bytes of strings"), "{e}");
    eprintln!("bombs refused in {:?}, peak memory {:?} MiB", start.elapsed(), peak_rss_mib());
    assert_memory_reasonable();
}

#[test]
fn huge_lengths_do_not_wrap_or_allocate() {
    let max = u64::MAX.to_le_bytes();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("BINUNICODE8", [&[0x8d][..], &max, b"abc"].concat()),
        ("BINBYTES8", [&[0x8e][..], &max, b"abc"].concat()),
        ("BINUNICODE8 2^63", [&[0x8d][..], &(1u64 << 63).to_le_bytes(), b"abc"].concat()),
        ("BINUNICODE", [&[b'X'][..], &u32::MAX.to_le_bytes(), b"abc"].concat()),
        ("BINBYTES", [&[b'B'][..], &u32::MAX.to_le_bytes(), b"abc"].concat()),
        ("one past the end", [&[0x8d][..], &4u64.to_le_bytes(), b"abc"].concat()),
    ];
    for (what, body) in cases {
        let e = load_err(&[&[0x80, 4][..], &body].concat());
        assert!(e.contains("is beyond the 3 bytes left"), "{what}: {e}");
    }
    for (what, body) in
        [("SHORT_BINUNICODE", &b"\x8c\xffab"[..]), ("LONG1", b"\x8a\xffab"), ("SHORT_BINBYTES", b"C\xffab")]
    {
        let e = load_err(&[&[0x80, 4][..], body].concat());
        assert!(e.contains("pickle ends early: 255 bytes wanted"), "{what}: {e}");
    }
    // Truncated at every byte, the fixture's state-dict pickle is an error, never a panic.
    let pkl = data_pkl(&fixture("tiny_alexnet_zip.pth"));
    for n in 0..pkl.len() {
        assert!(pickle::load(&pkl[..n]).is_err(), "truncated at {n}");
    }
    assert!(pickle::load(&pkl).is_ok());
}

// ---- 2. globals ------------------------------------------------------------------------------

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(common::fixture_path(name)).unwrap()
}

/// The entries of a zip archive, in order.
fn unzip(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut z = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
    (0..z.len())
        .map(|i| {
            let mut f = z.by_index(i).unwrap();
            let mut b = Vec::new();
            f.read_to_end(&mut b).unwrap();
            (f.name().unwrap().into_owned(), b)
        })
        .collect()
}

fn zip_of(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, b) in entries {
        w.start_file(name.as_str(), opts).unwrap();
        w.write_all(b).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn data_pkl(zip: &[u8]) -> Vec<u8> {
    unzip(zip).into_iter().find(|(n, _)| n.ends_with("data.pkl")).unwrap().1
}

/// The fixture's zip `.pth` with its data.pkl edited.
fn edited_zip(edit: impl Fn(&mut Vec<u8>)) -> Vec<u8> {
    let mut entries = unzip(&fixture("tiny_alexnet_zip.pth"));
    for (name, b) in &mut entries {
        if name.ends_with("data.pkl") {
            edit(b);
        }
    }
    zip_of(&entries)
}

/// Inserts `entry` (a key and a value) before the state dict's final `SETITEMS` and `STOP`.
fn insert_entry(pkl: &mut Vec<u8>, entry: &[u8]) {
    assert!(pkl.ends_with(b"u."), "the fixture's pickle ends with SETITEMS, STOP");
    let at = pkl.len() - 2;
    pkl.splice(at..at, entry.iter().copied());
}

fn short_str(s: &str) -> Vec<u8> {
    [&[0x8c, s.len() as u8][..], s.as_bytes()].concat()
}

#[test]
fn globals_outside_the_state_dict_types_are_refused() {
    // The rewritten archive itself reads (the edit is what fails below).
    let (t, _) = torch::read_tensors_from_bytes(&edited_zip(|_| {})).unwrap();
    assert_eq!(t.len(), 16);
    // As is a state dict carrying `_metadata` (an OrderedDict set by BUILD), as torchvision's do.
    let metadata = [b"}".to_vec(), short_str("_metadata"), b"ccollections\nOrderedDict\n)Rsb".to_vec()].concat();
    let with_metadata = edited_zip(|p| {
        let at = p.len() - 1;
        p.splice(at..at, metadata.iter().copied());
    });
    assert_eq!(torch::read_tensors_from_bytes(&with_metadata).unwrap().0, t);
    // An extra entry `evil: os.system('echo hi')`, by GLOBAL and by STACK_GLOBAL.
    let call = [short_str("echo hi"), b"\x85R".to_vec()].concat();
    let by_global = [short_str("evil"), b"cos\nsystem\n".to_vec(), call.clone()].concat();
    let by_stack_global = [short_str("evil"), short_str("os"), short_str("system"), vec![0x93], call].concat();
    for entry in [by_global, by_stack_global] {
        let bytes = edited_zip(|p| insert_entry(p, &entry));
        let e = torch::read_tensors_from_bytes(&bytes).unwrap_err().to_string();
        assert_eq!(e, "refusing pickle global os.system: only torch.save's state-dict types are read");
        // Also through import, from a file.
        let path = tmp("os_system.pth");
        std::fs::write(&path, &bytes).unwrap();
        let e = import(&path, &Default::default(), None).unwrap_err().to_string();
        assert!(e.contains("refusing pickle global os.system"), "{e}");
    }
    // The legacy format: the same entry in its state-dict pickle (the 4th).
    let mut legacy = fixture("tiny_alexnet_legacy.pth");
    let mut pos = 0;
    for _ in 0..4 {
        pos += pickle::load(&legacy[pos..]).unwrap().1;
    }
    assert_eq!(&legacy[pos - 2..pos], b"u.");
    legacy.splice(pos - 2..pos - 2, [short_str("x"), b"cbuiltins\neval\n".to_vec()].concat());
    let e = torch::read_tensors_from_bytes(&legacy).unwrap_err().to_string();
    assert!(e.contains("refusing pickle global builtins.eval"), "{e}");
    // Any module, including torch's own non-state-dict names, and names with odd characters.
    for g in ["torch\nload", "torch.storage\n_load_from_bytes", "__builtin__\ngetattr", "torch\nFloat\x1bStorage"] {
        let e = load_err(&pkl(&[b"c", g.as_bytes(), b"\n"].concat()));
        assert!(e.starts_with("refusing pickle global ") && !e.contains('\x1b'), "{e}");
    }
}

// ---- 3. shapes, strides, offsets -------------------------------------------------------------

fn long(p: &mut Vec<u8>, v: u64) {
    p.extend_from_slice(&[0x8a, 8]);
    p.extend_from_slice(&v.to_le_bytes());
}

fn tuple(p: &mut Vec<u8>, vals: &[u64]) {
    p.push(b'(');
    for &v in vals {
        long(p, v);
    }
    p.push(b't');
}

/// A zip `.pth` holding one tensor `key` of f32 storage `0` (`data` bytes), as torch.save writes it.
fn one_tensor_zip(key: &str, numel: u64, offset: u64, shape: &[u64], stride: &[u64], data: usize) -> Vec<u8> {
    let mut p = b"\x80\x02ccollections\nOrderedDict\n)R(".to_vec();
    p.extend(short_str(key));
    p.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n((");
    p.extend(short_str("storage"));
    p.extend_from_slice(b"ctorch\nFloatStorage\n");
    p.extend(short_str("0"));
    p.extend(short_str("cpu"));
    long(&mut p, numel);
    p.extend_from_slice(b"tQ");
    long(&mut p, offset);
    tuple(&mut p, shape);
    tuple(&mut p, stride);
    p.extend_from_slice(b"\x89ccollections\nOrderedDict\n)RtRu.");
    let floats: Vec<u8> = (0..data).flat_map(|i| (i as f32).to_le_bytes()).collect();
    zip_of(&[("archive/data.pkl".into(), p), ("archive/data/0".into(), floats)])
}

#[test]
fn wrapping_shapes_strides_and_offsets_are_errors() {
    // The crafted archive reads when it is sound.
    let (t, _) = torch::read_tensors_from_bytes(&one_tensor_zip("w", 6, 2, &[2, 2], &[2, 1], 6)).unwrap();
    assert_eq!((t[0].shape.clone(), t[0].data.clone()), (vec![2, 2], vec![2.0, 3.0, 4.0, 5.0]));
    let huge = 1u64 << 62;
    let cases: [(&str, Vec<u8>, &str); 6] = [
        ("shape product wraps", one_tensor_zip("w", 6, 0, &[huge, 8], &[8, 1], 6), "more elements than"),
        ("shape product wraps to 0", one_tensor_zip("w", 6, 0, &[huge, 4, 4], &[16, 4, 1], 6), "more elements than"),
        ("storage bytes wrap", one_tensor_zip("w", huge, 0, &[2], &[1], 6), "overflow"),
        ("storage larger than the file", one_tensor_zip("w", 1 << 40, 0, &[2], &[1], 6), "more than the whole file"),
        ("offset wraps", one_tensor_zip("w", 6, u64::MAX >> 1, &[4], &[1], 6), "outside its storage"),
        ("view past the storage", one_tensor_zip("w", 6, 4, &[2, 2], &[2, 1], 6), "outside its storage"),
    ];
    for (what, bytes, msg) in cases {
        let e = torch::read_tensors_from_bytes(&bytes).unwrap_err().to_string();
        assert!(e.contains(msg), "{what}: {e}");
    }
    let e = torch::read_tensors_from_bytes(&one_tensor_zip("w", 6, 0, &[2, 2], &[1], 6)).unwrap_err().to_string();
    assert!(e.contains("1 strides for the 2 dimensions"), "{e}");
    let e = torch::read_tensors_from_bytes(&one_tensor_zip("w", 6, 0, &[2, 2], &[1, 2], 6)).unwrap_err().to_string();
    assert!(e.contains("non-contiguous"), "{e}");
    // A shape whose product wraps, imported as fc8: an error, not a capacity overflow.
    let path = tmp("wrapping.pth");
    std::fs::write(&path, one_tensor_zip("classifier.6.weight", 6, 0, &[huge, 8], &[8, 1], 6)).unwrap();
    let e = import(&path, &Default::default(), None).unwrap_err().to_string();
    assert!(e.contains("classifier.6.weight") && e.contains("more elements than"), "{e}");
    assert_memory_reasonable();
}

/// The tiny fixture's tensors under torchvision's names, edited, as a plain safetensors file.
fn tiny_with(name: &str, edit: impl Fn(&mut Vec<NamedTensor>), meta: Vec<(String, String)>) -> PathBuf {
    let a = import(&common::fixture_path("tiny_alexnet_zip.pth"), &Default::default(), None).unwrap();
    let mut named = torchvision_named(&a).unwrap();
    edit(&mut named);
    let path = tmp(name);
    write_plain(&path, &named, meta.into_iter().collect()).unwrap();
    path
}

fn reshape(n: &mut [NamedTensor], name: &str, shape: Vec<usize>) {
    let t = n.iter_mut().find(|t| t.name == name).unwrap();
    let len = shape.iter().product();
    t.data.resize(len, 0.5);
    t.shape = shape;
}

#[test]
fn weights_of_the_wrong_rank_are_named() {
    let cases: [(&str, Vec<usize>, &str); 6] = [
        ("classifier.6.weight", vec![], "`fc8.weight` has shape []"),
        ("classifier.6.weight", vec![10], "`fc8.weight` has shape [10]"),
        ("classifier.1.weight", vec![7], "`fc6.weight` has shape [7]"),
        ("classifier.4.weight", vec![], "`fc7.weight` has shape []"),
        ("features.0.weight", vec![], "`conv1.weight` has shape []"),
        ("features.10.weight", vec![16, 24], "`conv5.weight` has shape [16, 24]"),
    ];
    for (key, shape, msg) in cases {
        let path = tiny_with("rank.safetensors", |n| reshape(n, key, shape.clone()), vec![]);
        let e = import(&path, &Default::default(), None).unwrap_err().to_string();
        assert!(e.contains(msg), "{key} {shape:?}: {e}");
    }
    // Empty dimensions would give widths that no data backs.
    let path = tiny_with("empty_dim.safetensors", |n| reshape(n, "features.0.weight", vec![1 << 40, 3, 0, 11]), vec![]);
    let e = import(&path, &Default::default(), None).unwrap_err().to_string();
    assert!(e.contains("features.0.weight") && e.contains("empty dimension"), "{e}");
    // With our config in the metadata the shapes are not inferred, but fc8's is still read.
    let a = import(&common::fixture_path("tiny_alexnet_zip.pth"), &Default::default(), None).unwrap();
    let meta = vec![("alexnet.config".to_string(), serde_json::to_string(&a.config).unwrap())];
    let path = tiny_with("rank_meta.safetensors", |n| reshape(n, "classifier.6.weight", vec![]), meta);
    let e = import(&path, &Default::default(), None).unwrap_err().to_string();
    assert!(e.contains("`fc8.weight` has shape []"), "{e}");
}

// ---- 4. format detection ---------------------------------------------------------------------

/// Pads a safetensors file's JSON header with spaces until its length's low byte is 0x80.
fn pad_header_to_0x80(bytes: &[u8]) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header = bytes[8..8 + n].to_vec();
    while header.len() % 256 != 0x80 {
        header.push(b' ');
    }
    [&(header.len() as u64).to_le_bytes()[..], &header, &bytes[8 + n..]].concat()
}

#[test]
fn safetensors_whose_header_length_starts_with_0x80_are_read() {
    let a = import(&common::fixture_path("tiny_alexnet_zip.pth"), &Default::default(), None).unwrap();
    let plain = tiny_with("plain.safetensors", |_| {}, vec![]);
    let ours = tmp("ours.safetensors");
    a.save(&ours).unwrap();
    for path in [plain, ours] {
        let padded = pad_header_to_0x80(&std::fs::read(&path).unwrap());
        assert_eq!(padded[0], 0x80);
        assert_eq!(torch::detect(&padded), Some(FileKind::Safetensors));
        std::fs::write(&path, &padded).unwrap();
        let b = import(&path, &Default::default(), None).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(a.params, b.params);
        assert_eq!(a.config, b.config);
    }
    // The fixtures are told apart by their structure.
    assert_eq!(torch::detect(&fixture("tiny_alexnet_zip.pth")), Some(FileKind::Zip));
    assert_eq!(torch::detect(&fixture("tiny_alexnet_legacy.pth")), Some(FileKind::Legacy));
    assert_eq!(torch::detect(&fixture("tiny_alexnet.safetensors")), Some(FileKind::Safetensors));
    // A pickle that does not start with the legacy magic number, a header longer than the
    // file, and nothing at all are none of them.
    for bytes in
        [&pkl(b"K\x01")[..], b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20", b"\x10\0\0\0\0\0\0\0{}", b"", b"\x80"]
    {
        assert_eq!(torch::detect(bytes), None, "{bytes:?}");
        let e = torch::read_tensors_from_bytes(bytes).unwrap_err().to_string();
        assert!(e.contains("not a PyTorch"), "{e}");
    }
    // Legacy files written with pickle protocol 4 open with a FRAME.
    let legacy = fixture("tiny_alexnet_legacy.pth");
    let framed = [&b"\x80\x04\x95\x0d\0\0\0\0\0\0\0"[..], &legacy[2..]].concat();
    assert_eq!(torch::detect(&framed), Some(FileKind::Legacy));
    assert_eq!(torch::read_tensors_from_bytes(&framed).unwrap().0, torch::read_tensors_from_bytes(&legacy).unwrap().0);
}

// ---- 5. non-finite weights -------------------------------------------------------------------

#[test]
fn nan_and_infinite_weights_are_refused() {
    let cases: [(&str, usize, f32, &str); 3] = [
        ("classifier.6.weight", 17, f32::NAN, "`fc8.weight` holds NaN at index 17"),
        ("features.0.bias", 3, f32::INFINITY, "`conv1.bias` holds +infinity at index 3"),
        ("classifier.1.weight", 0, f32::NEG_INFINITY, "`fc6.weight` holds -infinity at index 0"),
    ];
    for (key, i, x, msg) in cases {
        let path =
            tiny_with("nonfinite.safetensors", |n| n.iter_mut().find(|t| t.name == key).unwrap().data[i] = x, vec![]);
        let e = import(&path, &Default::default(), None).unwrap_err().to_string();
        assert!(e.contains(msg), "{e}");
    }
}

// ---- no input panics the readers -------------------------------------------------------------

/// xorshift64*: reproducible mutations without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn mutate(r: &mut Rng, b: &[u8]) -> Vec<u8> {
    let mut b = b.to_vec();
    for _ in 0..1 + r.below(4) {
        let i = r.below(b.len().max(1));
        match r.below(4) {
            0 if !b.is_empty() => b[i] = r.next() as u8,
            1 if !b.is_empty() => b[i] ^= 1 << r.below(8),
            2 => b.insert(i.min(b.len()), r.next() as u8),
            _ if !b.is_empty() => {
                b.remove(i);
            }
            _ => {}
        }
    }
    b
}

#[test]
fn mutated_files_give_errors_or_tensors_never_a_panic() {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let mut entries = unzip(&fixture("tiny_alexnet_zip.pth"));
    let at = entries.iter().position(|(n, _)| n.ends_with("data.pkl")).unwrap();
    let pkl = entries[at].1.clone();
    let legacy = fixture("tiny_alexnet_legacy.pth");
    let head = &legacy[..1800];
    for _ in 0..1500 {
        // The pickle alone, inside a (valid) archive, and the legacy file's pickles.
        let m = mutate(&mut r, &pkl);
        let _ = pickle::load(&m);
        entries[at].1 = m;
        let _ = torch::read_tensors_from_bytes(&zip_of(&entries));
        let m = [mutate(&mut r, head), legacy[1800..].to_vec()].concat();
        let _ = torch::read_tensors_from_bytes(&m);
    }
    // The archive's own structure (local headers at the start, central directory at the end),
    // and the safetensors header.
    let zip = fixture("tiny_alexnet_zip.pth");
    let st = fixture("tiny_alexnet.safetensors");
    let header = 8 + u64::from_le_bytes(st[..8].try_into().unwrap()) as usize;
    for _ in 0..300 {
        let (a, b) = zip.split_at(zip.len() - 3000);
        let _ = torch::read_tensors_from_bytes(&[a, &mutate(&mut r, b)].concat());
        let (a, b) = zip.split_at(200);
        let _ = torch::read_tensors_from_bytes(&[&mutate(&mut r, a), b].concat());
        let (a, b) = st.split_at(header);
        let _ = torch::read_tensors_from_bytes(&[&mutate(&mut r, a), b].concat());
    }
    // Random opcode soup from the supported set.
    let ops = b"\x80\x95.()t\x85\x86\x87]}aesuqrh\x94jc\x93R\x81bQN\x88\x89JKM\x8aGX\x8c\x8dCB\x8e\x00\x01\x02\xff\n";
    for _ in 0..20_000 {
        let n = 1 + r.below(64);
        let soup: Vec<u8> = (0..n).map(|_| ops[r.below(ops.len())]).collect();
        let _ = pickle::load(&soup);
    }
    assert_memory_reasonable();
}
