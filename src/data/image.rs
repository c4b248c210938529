//! Decoding one file into RGB and bringing it to the stored size: shorter side to S, centre
//! S×S crop (section 2 of the paper). JPEG and PNG; greyscale, CMYK, alpha and EXIF rotations
//! handled by converting through the `image` crate.

use super::DataError;
use image::imageops::FilterType;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};
use std::io::Cursor;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// The most pixels (width × height) an image may claim before it is decoded: 100 megapixels
/// by default, ~300 MB as RGB. Files come from strangers; a 3 KB PNG can claim 65,500 × 65,500.
pub const DEFAULT_MAX_PIXELS: u64 = 100_000_000;

static MAX_PIXELS: AtomicU64 = AtomicU64::new(DEFAULT_MAX_PIXELS);

/// Sets the pixel limit for every later decode in this process (`--max-megapixels`).
pub fn set_max_pixels(pixels: u64) {
    MAX_PIXELS.store(pixels.max(1), Ordering::Relaxed);
}

pub fn max_pixels() -> u64 {
    MAX_PIXELS.load(Ordering::Relaxed)
}

/// Files larger than this are refused before they are read (no JPEG or PNG of 100 MP is).
pub const MAX_FILE_BYTES: u64 = 1 << 30;

/// Reads and decodes `path` to RGB8, applying its EXIF orientation. Only regular files are
/// read (a FIFO would block forever, a device never ends).
pub fn load_rgb(path: &Path) -> Result<image::RgbImage, DataError> {
    let bytes = crate::files::read_regular(path, MAX_FILE_BYTES).map_err(|e| DataError::io(path, e))?;
    decode_rgb(&bytes, path)
}

/// A JPEG whose last scan is not followed by the end-of-image marker was cut short: decoders
/// fill the missing rows with grey and say nothing. Markers cannot occur inside entropy-coded
/// data (0xFF is stuffed with 0x00 there), so the EOI must follow the last start-of-scan.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let last_sos = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    match last_sos {
        Some(i) => bytes[i..].windows(2).any(|w| w == [0xFF, 0xD9]),
        None => false,
    }
}

/// Decodes bytes (named `path` in errors) to RGB8 with EXIF orientation applied. The image's
/// size is checked against [`max_pixels`] from its header, before any pixel is allocated.
pub fn decode_rgb(bytes: &[u8], path: &Path) -> Result<image::RgbImage, DataError> {
    decode_rgb_within(bytes, path, max_pixels())
}

/// [`decode_rgb`] with the pixel limit `limit` instead of the process's.
pub fn decode_rgb_within(bytes: &[u8], path: &Path, limit: u64) -> Result<image::RgbImage, DataError> {
    if bytes.is_empty() {
        return Err(DataError::EmptyFile { path: path.into() });
    }
    let decode_err = |e: image::ImageError| DataError::Decode { path: path.into(), reason: e.to_string() };
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| DataError::Decode { path: path.into(), reason: e.to_string() })?;
    let Some(format) = reader.format() else { return Err(DataError::NotImage { path: path.into() }) };
    if format == ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
        return Err(DataError::Decode {
            path: path.into(),
            reason: "truncated JPEG (no end-of-image marker after the last scan)".into(),
        });
    }
    let mut limits = Limits::default();
    // RGBA16 of the largest allowed image, plus the decoder's own buffers.
    limits.max_alloc = Some(limit.saturating_mul(8).saturating_add(64 << 20));
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(decode_err)?;
    let (w, h) = decoder.dimensions();
    let pixels = w as u64 * h as u64;
    if pixels > limit {
        return Err(DataError::TooManyPixels { path: path.into(), width: w, height: h, limit });
    }
    if pixels == 0 {
        return Err(DataError::Decode { path: path.into(), reason: "image has no pixels".into() });
    }
    let orientation = decoder.orientation().map_err(decode_err)?;
    // A decoder bug must not take the whole run down: it is this file's error.
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| DynamicImage::from_decoder(decoder)))
        .map_err(|_| DataError::Decode { path: path.into(), reason: "the decoder crashed on this file".into() })?;
    let mut img = decoded.map_err(decode_err)?;
    img.apply_orientation(orientation);
    Ok(img.into_rgb8())
}

/// Shorter side to `size`, then the central `size × size` square, as packed HWC RGB bytes.
/// (Cropping the central square first and resizing it is the same thing, and cheaper.)
pub fn resize_center_square(img: &image::RgbImage, size: usize) -> Vec<u8> {
    let (w, h) = img.dimensions();
    let side = w.min(h);
    let (x0, y0) = ((w - side) / 2, (h - side) / 2);
    let square = image::imageops::crop_imm(img, x0, y0, side, side).to_image();
    let out = if side as usize == size {
        square
    } else {
        // Triangle = bilinear, with its support widened when shrinking, so downscaling averages
        // rather than aliases.
        image::imageops::resize(&square, size as u32, size as u32, FilterType::Triangle)
    };
    out.into_raw()
}

/// Loads `path` and brings it to `size × size` RGB bytes.
pub fn load_square(path: &Path, size: usize) -> Result<Vec<u8>, DataError> {
    Ok(resize_center_square(&load_rgb(path)?, size))
}

/// `size × size` HWC RGB bytes as a baseline JPEG of `quality` (1-100).
pub fn encode_jpeg(pixels: &[u8], size: usize, quality: u8) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let side = u32::try_from(size).map_err(|e| e.to_string())?;
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .encode(pixels, side, side, image::ExtendedColorType::Rgb8)
        .map_err(|e| format!("cannot encode as JPEG: {e}"))?;
    Ok(out)
}
