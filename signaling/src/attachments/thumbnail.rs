//! Thumbnails of pictures, made once when the upload completes. The decoder is held to
//! limits before it allocates: a tiny file that claims to be 100,000 × 100,000 pixels
//! (a "zip bomb" image) is refused from its header.

use std::io::Cursor;
use std::path::Path;

use chorus_proto::attachments::{ImageInfo, PICTURE_TYPES, THUMBNAIL_PX};
use image::{ImageFormat, ImageReader, Limits};

/// Longest side of a picture the server decodes.
pub const MAX_SIDE_PX: u32 = 12_000;
/// Most pixels of a picture the server decodes (about a 50-megapixel camera).
pub const MAX_PIXELS: u64 = 50_000_000;
/// Most memory the decoder may take for one picture.
const MAX_DECODE_BYTES: u64 = 512 * 1024 * 1024;

/// A thumbnail made of a picture.
#[derive(Debug)]
pub struct Made {
    /// The picture's own size.
    pub info: ImageInfo,
    /// The thumbnail, encoded.
    pub bytes: Vec<u8>,
    /// `image/jpeg`, or `image/png` for a picture with transparency.
    pub mime: &'static str,
}

/// Why a file declared a picture gets no thumbnail (and is refused).
#[derive(Debug, thiserror::Error)]
pub enum ThumbnailError {
    /// Its bytes are another format than the type it was declared with.
    #[error("the file was sent as {declared} but it is not a {declared} picture")]
    NotThatType {
        /// The declared type.
        declared: String,
    },
    /// Too many pixels to decode.
    #[error(
        "the picture is {width} × {height} pixels; pictures of at most {MAX_SIDE_PX} pixels a side and {MAX_PIXELS} pixels in all are shown (send it as a file instead)"
    )]
    TooLarge {
        /// Width claimed by its header.
        width: u32,
        /// Height claimed by its header.
        height: u32,
    },
    /// A broken picture.
    #[error("the picture cannot be read: {0}")]
    Undecodable(String),
}

fn format_of(mime: &str) -> Option<ImageFormat> {
    match mime {
        "image/png" => Some(ImageFormat::Png),
        "image/jpeg" => Some(ImageFormat::Jpeg),
        "image/gif" => Some(ImageFormat::Gif),
        "image/webp" => Some(ImageFormat::WebP),
        _ => None,
    }
}

/// Whether a type is a picture the server thumbnails.
pub fn is_picture(mime: &str) -> bool {
    PICTURE_TYPES.contains(&mime)
}

fn limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE_PX);
    limits.max_image_height = Some(MAX_SIDE_PX);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    limits
}

/// The thumbnail of the picture at `path`, declared as `mime` (one of the picture
/// types). Blocking: run it off the async threads.
pub fn make(path: &Path, mime: &str) -> Result<Made, ThumbnailError> {
    let undecodable = |e: &dyn std::fmt::Display| ThumbnailError::Undecodable(e.to_string());
    let not_that = || ThumbnailError::NotThatType {
        declared: mime.to_owned(),
    };
    let declared = format_of(mime).ok_or_else(not_that)?;
    let open = || -> Result<ImageReader<_>, ThumbnailError> {
        let mut reader = ImageReader::open(path)
            .map_err(|e| undecodable(&e))?
            .with_guessed_format()
            .map_err(|e| undecodable(&e))?;
        if reader.format() != Some(declared) {
            return Err(not_that());
        }
        reader.limits(limits());
        Ok(reader)
    };
    // The header first: its size decides whether decoding is tried at all.
    let (width, height) = open()?.into_dimensions().map_err(|e| match e {
        image::ImageError::Limits(_) => ThumbnailError::TooLarge {
            width: 0,
            height: 0,
        },
        e => undecodable(&e),
    })?;
    if width > MAX_SIDE_PX
        || height > MAX_SIDE_PX
        || u64::from(width) * u64::from(height) > MAX_PIXELS
    {
        return Err(ThumbnailError::TooLarge { width, height });
    }
    let picture = open()?.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => ThumbnailError::TooLarge { width, height },
        e => undecodable(&e),
    })?;
    let small = picture.thumbnail(THUMBNAIL_PX, THUMBNAIL_PX);
    let mut bytes = Cursor::new(Vec::new());
    let mime = if small.color().has_alpha() {
        small
            .to_rgba8()
            .write_to(&mut bytes, ImageFormat::Png)
            .map_err(|e| undecodable(&e))?;
        "image/png"
    } else {
        let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 82);
        small
            .to_rgb8()
            .write_with_encoder(encoder)
            .map_err(|e| undecodable(&e))?;
        "image/jpeg"
    };
    Ok(Made {
        info: ImageInfo { width, height },
        bytes: bytes.into_inner(),
        mime,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn temp(name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("chorus-{name}-{:x}", rand::random::<u64>()));
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn png(width: u32, height: u32) -> Vec<u8> {
        let picture = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
        });
        let mut bytes = Cursor::new(Vec::new());
        picture.write_to(&mut bytes, ImageFormat::Png).unwrap();
        bytes.into_inner()
    }

    /// The CRC of a PNG chunk (type and data).
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn a_picture_gets_a_small_jpeg() {
        let path = temp("thumb", &png(1000, 500));
        let made = make(&path, "image/png").unwrap();
        assert_eq!((made.info.width, made.info.height), (1000, 500));
        assert_eq!(made.mime, "image/jpeg");
        let thumb = image::load_from_memory(&made.bytes).unwrap();
        assert_eq!(
            (thumb.width(), thumb.height()),
            (THUMBNAIL_PX, THUMBNAIL_PX / 2)
        );
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn a_header_claiming_too_many_pixels_is_refused_before_decoding() {
        // A valid PNG signature and IHDR claiming 60,000 × 60,000: 69 bytes that would
        // ask for 10 GiB if decoded.
        let mut bomb = png(1, 1);
        bomb[16..20].copy_from_slice(&60_000u32.to_be_bytes());
        bomb[20..24].copy_from_slice(&60_000u32.to_be_bytes());
        let crc = crc32(&bomb[12..29]);
        bomb[29..33].copy_from_slice(&crc.to_be_bytes());
        let path = temp("bomb", &bomb);
        let err = make(&path, "image/png").unwrap_err();
        assert!(matches!(err, ThumbnailError::TooLarge { .. }), "{err}");
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn bytes_of_another_type_are_not_that_picture() {
        let path = temp("notpng", b"GIF89a not really");
        let err = make(&path, "image/png").unwrap_err();
        assert!(matches!(err, ThumbnailError::NotThatType { .. }), "{err}");
        let text = temp("text", b"hello, this is text");
        assert!(matches!(
            make(&text, "image/jpeg").unwrap_err(),
            ThumbnailError::NotThatType { .. }
        ));
        let _ = std::fs::remove_file(path);
        let _ = std::fs::remove_file(text);
    }
}
