//! Files posted in a group chat, as clients see them. Content is addressed by its SHA-256:
//! a client asks by hash first and uploads only what no server holds. The HTTP side is in
//! `docs/protocol.md`, "Attachments".

use std::fmt;

use serde::{Deserialize, Serialize};

/// Most characters of an attachment's file name (longer names are cut).
pub const MAX_NAME_CHARS: usize = 200;
/// Most characters of a MIME type.
pub const MAX_TYPE_CHARS: usize = 100;
/// Longest side of a thumbnail, in pixels.
pub const THUMBNAIL_PX: u32 = 320;
/// Most bytes of one upload request (a chunk); the server may ask for fewer.
pub const MAX_CHUNK_BYTES: u64 = 8 * 1024 * 1024;

/// The SHA-256 of some content: 64 lower-case hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ContentHash(String);

/// Why a text is not a content hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a content hash is the SHA-256 of the file: 64 hex digits (0-9, a-f)")]
pub struct NotAHash;

impl ContentHash {
    /// The hash of `text` (upper-case hex is taken, and kept lower-case).
    pub fn parse(text: &str) -> Result<Self, NotAHash> {
        if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(NotAHash);
        }
        Ok(Self(text.to_ascii_lowercase()))
    }

    /// The hash of a 32-byte digest.
    pub fn from_digest(digest: &[u8]) -> Result<Self, NotAHash> {
        if digest.len() != 32 {
            return Err(NotAHash);
        }
        Ok(Self(crate::hex::encode(digest)))
    }

    /// The 64 hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ContentHash {
    type Error = NotAHash;
    fn try_from(text: String) -> Result<Self, NotAHash> {
        Self::parse(&text)
    }
}

impl From<ContentHash> for String {
    fn from(hash: ContentHash) -> String {
        hash.0
    }
}

/// A picture the server decoded: it has a thumbnail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// A file in a chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// Its content's SHA-256.
    pub hash: ContentHash,
    /// The file name its sender gave.
    pub name: String,
    /// Bytes.
    pub size: u64,
    /// MIME type, as its first uploader declared it.
    #[serde(rename = "type")]
    pub mime: String,
    /// Present for a picture the server decoded (then a thumbnail exists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageInfo>,
}

/// What `chat_send` says of the file it posts: content the server holds already.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachmentRef {
    /// The content's SHA-256.
    pub hash: ContentHash,
    /// The file name to show.
    pub name: String,
}

/// A file name as kept: no path (only what follows the last `/` or `\`), no control
/// characters, at most [`MAX_NAME_CHARS`]; "file" when nothing is left.
pub fn clean_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = base
        .chars()
        .filter(|c| !c.is_control() && *c != '"')
        .take(MAX_NAME_CHARS)
        .collect();
    let cleaned = cleaned.trim().trim_start_matches('.').trim();
    if cleaned.is_empty() {
        "file".into()
    } else {
        cleaned.to_owned()
    }
}

/// A MIME type as kept (lower-case `type/subtype`, parameters dropped), or `None` when
/// it is not one.
pub fn clean_type(mime: &str) -> Option<String> {
    let essence = mime.split(';').next().unwrap_or_default().trim();
    let (kind, sub) = essence.split_once('/')?;
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    if essence.len() > MAX_TYPE_CHARS || !token(kind) || !token(sub) {
        return None;
    }
    Some(essence.to_ascii_lowercase())
}

/// Picture types the server decodes and thumbnails (shown inline); every other type is
/// served as a download.
pub const PICTURE_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_64_hex_digits() {
        let hex = "AB".repeat(32);
        let hash = ContentHash::parse(&hex).unwrap();
        assert_eq!(hash.as_str(), "ab".repeat(32));
        assert_eq!(ContentHash::parse("ab"), Err(NotAHash));
        assert_eq!(ContentHash::parse(&"g".repeat(64)), Err(NotAHash));
        assert_eq!(
            ContentHash::parse(&format!("../{}", "a".repeat(61))),
            Err(NotAHash)
        );
        let json = serde_json::to_string(&hash).unwrap();
        assert_eq!(serde_json::from_str::<ContentHash>(&json).unwrap(), hash);
        assert!(serde_json::from_str::<ContentHash>("\"x\"").is_err());
    }

    #[test]
    fn names_lose_paths_and_controls() {
        assert_eq!(clean_name("../../etc/passwd"), "passwd");
        assert_eq!(clean_name("C:\\x\\cat.png"), "cat.png");
        assert_eq!(clean_name("a\u{0}b\"c.txt"), "abc.txt");
        assert_eq!(clean_name("..."), "file");
        assert_eq!(clean_name(".hidden"), "hidden");
        assert_eq!(clean_name(&"x".repeat(500)).chars().count(), MAX_NAME_CHARS);
    }

    #[test]
    fn types_are_type_slash_subtype() {
        assert_eq!(clean_type("Image/PNG").as_deref(), Some("image/png"));
        assert_eq!(
            clean_type("text/plain; charset=utf-8").as_deref(),
            Some("text/plain")
        );
        assert_eq!(clean_type("png"), None);
        assert_eq!(clean_type("text/<script>"), None);
        assert_eq!(clean_type(""), None);
    }
}
