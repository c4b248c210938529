//! TensorBoard event files, so that `tensorboard --logdir runs` shows a run's curves and conv1's
//! filters live, as PyTorch's `SummaryWriter` does.
//!
//! Written here rather than with a crate: the Rust writers are thin (`tensorboard-rs` has been
//! unmaintained since 2022, `tboard` needs `protoc` at build time), and the format is small.
//! A file is a sequence of records, each
//! `u64 length | u32 masked_crc32c(length) | data | u32 masked_crc32c(data)` (little-endian;
//! `masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8`), whose data is a protobuf `Event`
//! (tensorflow/core/util/event.proto), encoded by hand as the ONNX export is:
//!
//! ```text
//! Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
//! Summary { repeated Value value = 1; }
//! Value   { string tag = 1; float simple_value = 2; Image image = 4; }
//! Image   { int32 height = 1; int32 width = 2; int32 colorspace = 3; bytes encoded_image_string = 4; }
//! ```
//!
//! The first record names the format version (`brain.Event:2`). CI reads the files back with
//! the `tensorboard` package's own `EventAccumulator` (scripts/check_tensorboard.py).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// An open event file; every record is flushed as it is written (a crash loses none).
pub struct EventWriter {
    file: BufWriter<File>,
    path: PathBuf,
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(out: &mut Vec<u8>, field: u64, wire: u64) {
    varint(out, (field << 3) | wire);
}

fn bytes_field(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    key(out, field, 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn int_field(out: &mut Vec<u8>, field: u64, v: i64) {
    key(out, field, 0);
    varint(out, v as u64);
}

fn masked_crc(data: &[u8]) -> u32 {
    let c = crc32c::crc32c(data);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// An `Event` at `step` with `summary` (an encoded `Summary`) or the file version.
fn event(step: i64, summary: Option<&[u8]>) -> Vec<u8> {
    let mut e = Vec::new();
    key(&mut e, 1, 1);
    e.extend_from_slice(&now().to_le_bytes());
    int_field(&mut e, 2, step);
    match summary {
        Some(s) => bytes_field(&mut e, 5, s),
        None => bytes_field(&mut e, 3, b"brain.Event:2"),
    }
    e
}

/// A `Summary` of one `Value`: `tag` and the value's encoded fields.
fn summary(tag: &str, value: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut v = Vec::new();
    bytes_field(&mut v, 1, tag.as_bytes());
    value(&mut v);
    let mut s = Vec::new();
    bytes_field(&mut s, 1, &v);
    s
}

impl EventWriter {
    /// A new event file in `dir` (`events.out.tfevents.SECONDS.HOST.alexnet`, as TensorBoard
    /// looks for), starting with the version record.
    pub fn create(dir: &Path) -> io::Result<Self> {
        let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
        let host = if host.is_empty() { "localhost".to_string() } else { host };
        let name = format!("events.out.tfevents.{}.{host}.alexnet", now() as u64);
        let path = dir.join(name);
        let mut w = EventWriter { file: BufWriter::new(File::create(&path)?), path };
        w.record(&event(0, None))?;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn record(&mut self, data: &[u8]) -> io::Result<()> {
        let len = (data.len() as u64).to_le_bytes();
        self.file.write_all(&len)?;
        self.file.write_all(&masked_crc(&len).to_le_bytes())?;
        self.file.write_all(data)?;
        self.file.write_all(&masked_crc(data).to_le_bytes())?;
        self.file.flush()
    }

    /// A scalar's value at `step` (a curve's point).
    pub fn scalar(&mut self, tag: &str, step: i64, value: f32) -> io::Result<()> {
        let s = summary(tag, |v| {
            key(v, 2, 5);
            v.extend_from_slice(&value.to_le_bytes());
        });
        self.record(&event(step, Some(&s)))
    }

    /// An RGB image at `step`, given as PNG bytes of `width × height`.
    pub fn image_png(&mut self, tag: &str, step: i64, png: &[u8], width: u32, height: u32) -> io::Result<()> {
        let mut img = Vec::new();
        int_field(&mut img, 1, i64::from(height));
        int_field(&mut img, 2, i64::from(width));
        int_field(&mut img, 3, 3);
        bytes_field(&mut img, 4, png);
        let s = summary(tag, |v| bytes_field(v, 4, &img));
        self.record(&event(step, Some(&s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The record framing TensorFlow's reader checks: a known CRC-32C, and lengths and CRCs
    /// where it looks for them.
    #[test]
    fn records_are_framed_as_tensorflow_reads_them() {
        // CRC-32C of "123456789" is 0xe3069283 (RFC 3720's check value).
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        let dir = std::env::temp_dir().join(format!("alexnet-tb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut w = EventWriter::create(&dir).unwrap();
        w.scalar("train/loss", 7, 2.5).unwrap();
        let bytes = std::fs::read(w.path()).unwrap();
        let mut at = 0;
        let mut records = Vec::new();
        while at < bytes.len() {
            let len = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
            assert_eq!(u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()), masked_crc(&bytes[at..at + 8]));
            let data = &bytes[at + 12..at + 12 + len];
            assert_eq!(u32::from_le_bytes(bytes[at + 12 + len..at + 16 + len].try_into().unwrap()), masked_crc(data));
            records.push(data.to_vec());
            at += 16 + len;
        }
        assert_eq!(records.len(), 2);
        assert!(records[0].windows(13).any(|w| w == b"brain.Event:2"));
        // The scalar's float, after its key (field 2, wire type 5).
        let f = 2.5f32.to_le_bytes();
        assert!(records[1].windows(5).any(|w| w[0] == 0x15 && w[1..] == f));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
