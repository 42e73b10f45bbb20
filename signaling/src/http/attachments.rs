//! The attachment endpoints of the client API (`docs/protocol.md`, "Attachments"): offer
//! content by hash, upload it in resumable chunks, download it (with HTTP Range) and its
//! thumbnail. Every request carries the user token of the page (`Authorization: Bearer`);
//! only members of the room's group chat get anywhere.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chorus_proto::attachments::{self, ContentHash, PICTURE_TYPES};
use chorus_proto::signal::ErrorCode;
use chorus_proto::{RoomId, UserId};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::app::AppState;
use crate::attachments::{Progress, Refused, Served};
use crate::rooms::group_chat::GroupChat;

/// The routes, under `/api/rooms/{room}/attachments`.
pub fn routes() -> axum::Router<Arc<AppState>> {
    axum::Router::new()
        .route("/api/rooms/{room}/attachments", post(offer))
        .route(
            "/api/rooms/{room}/attachments/{hash}",
            get(download).patch(upload),
        )
        .route(
            "/api/rooms/{room}/attachments/{hash}/thumbnail",
            get(thumbnail),
        )
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let status = match self.code {
            ErrorCode::InvalidInput | ErrorCode::Malformed => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::RoomNotFound | ErrorCode::AttachmentNotFound => StatusCode::NOT_FOUND,
            ErrorCode::Timeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::UploadOffset => StatusCode::CONFLICT,
            ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::HashMismatch | ErrorCode::InvalidImage => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut body = serde_json::json!({ "code": self.code, "message": self.message });
        if let Some(offset) = self.offset {
            body["offset"] = offset.into();
        }
        (status, Json(body)).into_response()
    }
}

fn refused(code: ErrorCode, message: &str) -> Refused {
    Refused {
        code,
        message: message.to_owned(),
        offset: None,
    }
}

/// The user the request's token names.
fn user_of(state: &AppState, headers: &HeaderMap) -> Result<UserId, Refused> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            refused(
                ErrorCode::Unauthorized,
                "send the page's user token as Authorization: Bearer <token>",
            )
        })?;
    state
        .users
        .verify_user(token.trim())
        .map(|claims| claims.sub)
        .map_err(|_| {
            refused(
                ErrorCode::Unauthorized,
                "the user token was refused (expired or not from this server); reload the page",
            )
        })
}

/// The room's group chat, if the request's user is a member of it.
async fn as_member(
    state: &AppState,
    headers: &HeaderMap,
    room: String,
) -> Result<(UserId, GroupChat), Refused> {
    let user = user_of(state, headers)?;
    let room = RoomId::parse(room).map_err(|_| {
        refused(
            ErrorCode::RoomNotFound,
            "there is no such room; check the link",
        )
    })?;
    let group = state.rooms.resolve(&room).await?;
    if group.member(&user).is_none() {
        return Err(refused(
            ErrorCode::Forbidden,
            "only members of this group chat can send and see its files",
        ));
    }
    Ok((user, group))
}

fn hash_of(hash: &str) -> Result<ContentHash, Refused> {
    ContentHash::parse(hash).map_err(|e| refused(ErrorCode::InvalidInput, &e.to_string()))
}

/// `POST /api/rooms/{room}/attachments`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Offer {
    hash: String,
    size: u64,
    #[serde(rename = "type")]
    mime: String,
    #[serde(default)]
    #[allow(dead_code)] // the name is the message's, given again in `chat_send`
    name: Option<String>,
}

/// How an offer or chunk stands.
#[derive(Debug, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum Answer {
    Known {
        hash: ContentHash,
        size: u64,
    },
    Upload {
        hash: ContentHash,
        offset: u64,
        chunk: u64,
    },
    Stored {
        hash: ContentHash,
        size: u64,
    },
}

fn answer(state: &AppState, hash: ContentHash, progress: Progress) -> Json<Answer> {
    Json(match progress {
        Progress::Known(record) => Answer::Known {
            hash,
            size: record.size,
        },
        Progress::Upload { offset } => Answer::Upload {
            hash,
            offset,
            chunk: state.attachments.chunk_bytes(),
        },
        Progress::Stored(record) => Answer::Stored {
            hash,
            size: record.size,
        },
    })
}

async fn offer(
    State(state): State<Arc<AppState>>,
    Path(room): Path<String>,
    headers: HeaderMap,
    body: Result<Json<Offer>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Answer>, Refused> {
    let (user, _) = as_member(&state, &headers, room).await?;
    let Json(offer) = body.map_err(|e| {
        refused(
            ErrorCode::InvalidInput,
            &format!(
                "an offer is {{\"hash\", \"size\", \"type\", \"name\"}}: {}",
                e.body_text()
            ),
        )
    })?;
    let hash = hash_of(&offer.hash)?;
    let progress = state
        .attachments
        .offer(&user, &hash, offer.size, &offer.mime)
        .await?;
    Ok(answer(&state, hash, progress))
}

async fn upload(
    State(state): State<Arc<AppState>>,
    Path((room, hash)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Answer>, Response> {
    write_chunk(state, room, hash, headers, body)
        .await
        .map_err(|refused| {
            // A refusal may leave the chunk unread: the connection cannot carry another
            // request, and saying so keeps the client from sending its next one there.
            let mut response = refused.into_response();
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        })
}

async fn write_chunk(
    state: Arc<AppState>,
    room: String,
    hash: String,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Answer>, Refused> {
    let (user, _) = as_member(&state, &headers, room).await?;
    let hash = hash_of(&hash)?;
    let offset = headers
        .get("upload-offset")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .ok_or_else(|| {
            refused(
                ErrorCode::InvalidInput,
                "say where these bytes start: Upload-Offset: <bytes>",
            )
        })?;
    let idle = state.sessions.limits().body_timeout;
    let progress = state
        .attachments
        .write(&user, &hash, offset, body.into_data_stream(), idle)
        .await?;
    Ok(answer(&state, hash, progress))
}

/// Query of a download: the name to save it as.
#[derive(Debug, Deserialize)]
pub struct Download {
    #[serde(default)]
    name: Option<String>,
}

async fn download(
    State(state): State<Arc<AppState>>,
    Path((room, hash)): Path<(String, String)>,
    Query(query): Query<Download>,
    headers: HeaderMap,
) -> Result<Response, Refused> {
    let (_, group) = as_member(&state, &headers, room).await?;
    let hash = hash_of(&hash)?;
    let served = state.attachments.open_for(&group.id, &hash, false).await?;
    let inline = served.record.image.is_some() && PICTURE_TYPES.contains(&served.mime.as_str());
    let name = query.name.as_deref().map(attachments::clean_name);
    serve(&state, served, &headers, inline, name).await
}

async fn thumbnail(
    State(state): State<Arc<AppState>>,
    Path((room, hash)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Refused> {
    let (_, group) = as_member(&state, &headers, room).await?;
    let hash = hash_of(&hash)?;
    let served = state.attachments.open_for(&group.id, &hash, true).await?;
    serve(&state, served, &headers, true, None).await
}

/// The bytes asked for of `size`: all, or one `Range: bytes=a-b` (also `a-` and `-n`).
/// `Err` when the range lies outside the content.
fn range_of(headers: &HeaderMap, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return Ok(None);
    };
    // Several ranges at once are answered with the whole content (allowed by RFC 9110).
    if spec.contains(',') {
        return Ok(None);
    }
    let (start, end) = spec.split_once('-').ok_or(())?;
    let (start, end) = (start.trim(), end.trim());
    let (first, last) = match (start.is_empty(), end.is_empty()) {
        (true, true) => return Err(()),
        (true, false) => {
            let n: u64 = end.parse().map_err(|_| ())?;
            if n == 0 {
                return Err(());
            }
            (size.saturating_sub(n), size.saturating_sub(1))
        }
        (false, _) => {
            let first: u64 = start.parse().map_err(|_| ())?;
            let last = match end.is_empty() {
                true => size.saturating_sub(1),
                false => end
                    .parse::<u64>()
                    .map_err(|_| ())?
                    .min(size.saturating_sub(1)),
            };
            (first, last)
        }
    };
    if size == 0 || first >= size || first > last {
        return Err(());
    }
    Ok(Some((first, last)))
}

async fn serve(
    state: &Arc<AppState>,
    served: Served,
    headers: &HeaderMap,
    inline: bool,
    name: Option<String>,
) -> Result<Response, Refused> {
    let Served {
        record,
        mut file,
        size,
        mime,
    } = served;
    let range = match range_of(headers, size) {
        Ok(range) => range,
        Err(()) => {
            let mut response = refused(
                ErrorCode::InvalidInput,
                "that byte range is not within the file",
            )
            .into_response();
            *response.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(response);
        }
    };
    let (first, last) = range.unwrap_or((0, size.saturating_sub(1)));
    let len = if size == 0 { 0 } else { last - first + 1 };
    if first > 0 {
        file.seek(std::io::SeekFrom::Start(first))
            .await
            .map_err(|e| {
                refused(
                    ErrorCode::Internal,
                    &format!("could not read the file: {e}"),
                )
            })?;
    }
    let counter = state.clone();
    // 256 KiB reads: the default 4 KiB made a download a third as fast as an upload.
    let stream =
        tokio_util::io::ReaderStream::with_capacity(file.take(len), 256 * 1024).map(move |chunk| {
            if let Ok(bytes) = &chunk {
                counter
                    .attachments
                    .metrics
                    .served_bytes
                    .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            }
            chunk
        });
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = match range {
        Some(_) => StatusCode::PARTIAL_CONTENT,
        None => StatusCode::OK,
    };
    let h = response.headers_mut();
    let content_type = if inline {
        mime.as_str()
    } else {
        "application/octet-stream"
    };
    let set = |h: &mut HeaderMap, name: header::HeaderName, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    };
    set(h, header::CONTENT_TYPE, content_type.to_owned());
    set(h, header::CONTENT_LENGTH, len.to_string());
    set(h, header::ACCEPT_RANGES, "bytes".into());
    set(h, header::ETAG, format!("\"{}\"", record.hash));
    if range.is_some() {
        set(
            h,
            header::CONTENT_RANGE,
            format!("bytes {first}-{last}/{size}"),
        );
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Whatever the bytes are, a browser never runs them as a page of this origin.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    if !inline {
        let name = name.unwrap_or_else(|| record.hash.to_string());
        set(
            h,
            header::CONTENT_DISPOSITION,
            format!("attachment; filename*=UTF-8''{}", percent_encode(&name)),
        );
    }
    Ok(response)
}

/// `name` as RFC 5987 `ext-value` characters.
fn percent_encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_range(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::RANGE,
            HeaderValue::from_str(value).unwrap_or(HeaderValue::from_static("")),
        );
        h
    }

    #[test]
    fn ranges() {
        assert_eq!(range_of(&HeaderMap::new(), 10), Ok(None));
        assert_eq!(range_of(&with_range("bytes=0-3"), 10), Ok(Some((0, 3))));
        assert_eq!(range_of(&with_range("bytes=5-"), 10), Ok(Some((5, 9))));
        assert_eq!(range_of(&with_range("bytes=-4"), 10), Ok(Some((6, 9))));
        assert_eq!(range_of(&with_range("bytes=-40"), 10), Ok(Some((0, 9))));
        assert_eq!(range_of(&with_range("bytes=8-100"), 10), Ok(Some((8, 9))));
        assert_eq!(range_of(&with_range("bytes=10-"), 10), Err(()));
        assert_eq!(range_of(&with_range("bytes=4-2"), 10), Err(()));
        assert_eq!(range_of(&with_range("bytes=x-2"), 10), Err(()));
        assert_eq!(range_of(&with_range("bytes=0-1,4-5"), 10), Ok(None));
    }

    #[test]
    fn names_in_a_header() {
        assert_eq!(percent_encode("a b\"é.txt"), "a%20b%22%C3%A9.txt");
    }
}
