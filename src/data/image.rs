//! Decoding one file into RGB and bringing it to the stored size: shorter side to S, centre
//! S×S crop (section 2 of the paper). JPEG and PNG; greyscale, CMYK, alpha and EXIF rotations
//! handled by converting through the `image` crate.

use super::DataError;
use image::imageops::FilterType;
use image::{DynamicImage, ImageDecoder, ImageReader};
use std::io::Cursor;
use std::path::Path;

/// Reads and decodes `path` to RGB8, applying its EXIF orientation.
pub fn load_rgb(path: &Path) -> Result<image::RgbImage, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    decode_rgb(&bytes, path)
}

/// Decodes bytes (named `path` in errors) to RGB8 with EXIF orientation applied.
pub fn decode_rgb(bytes: &[u8], path: &Path) -> Result<image::RgbImage, DataError> {
    if bytes.is_empty() {
        return Err(DataError::EmptyFile { path: path.into() });
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| DataError::Decode { path: path.into(), reason: e.to_string() })?;
    if reader.format().is_none() {
        return Err(DataError::NotImage { path: path.into() });
    }
    let decode_err = |e: image::ImageError| DataError::Decode { path: path.into(), reason: e.to_string() };
    let mut decoder = reader.into_decoder().map_err(decode_err)?;
    let orientation = decoder.orientation().map_err(decode_err)?;
    let mut img = DynamicImage::from_decoder(decoder).map_err(decode_err)?;
    img.apply_orientation(orientation);
    if img.width() == 0 || img.height() == 0 {
        return Err(DataError::Decode { path: path.into(), reason: "image has no pixels".into() });
    }
    Ok(img.to_rgb8())
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
