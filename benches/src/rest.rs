//! The few REST calls synthetic peers make, over a minimal HTTP/1.1 client on a tokio
//! `TcpStream` (plain `http://` only: the tools talk to a server on the same machine).

use std::time::Duration;

use chorus_proto::api_key::ApiKey;
use chorus_proto::signal::RoomInfo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response read.
const MAX_RESPONSE_BYTES: u64 = 64 * 1024;
const TIMEOUT: Duration = Duration::from_secs(10);

/// Why a REST call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestError {
    /// The base URL is not `http://host:port[/]`.
    #[error("not a plain http:// base URL: {0}")]
    BadUrl(String),
    /// Connecting, writing or reading failed.
    #[error("HTTP I/O: {0}")]
    Io(#[from] std::io::Error),
    /// No answer in time.
    #[error("no HTTP answer within {0:?}")]
    Timeout(Duration),
    /// The answer is not HTTP/1.1 as expected, or its body not the expected JSON.
    #[error("unexpected HTTP answer: {0}")]
    BadResponse(String),
    /// The server answered with an error status.
    #[error("HTTP {status}: {body}")]
    Status {
        /// Status code.
        status: u16,
        /// Body, as text.
        body: String,
    },
}

/// `ws://host:port/ws` for a server whose pages are at `http://host:port/`.
pub fn ws_url(http_base: &str) -> Result<String, RestError> {
    Ok(format!("ws://{}/ws", host_port(http_base)?))
}

/// Settings of a room created over the server API.
#[derive(Debug, Clone)]
pub struct RoomSettings {
    /// Title.
    pub name: String,
    /// Most members.
    pub capacity: u32,
    /// Most speakers.
    pub seats: u32,
    /// Whether members take free seats themselves.
    pub open_seats: bool,
}

impl RoomSettings {
    /// A room where whoever asks first gets one of `seats` seats.
    pub fn open(name: &str, capacity: u32, seats: u32) -> Self {
        Self {
            name: name.to_owned(),
            capacity,
            seats,
            open_seats: true,
        }
    }
}

/// `POST /api/v1/rooms` (signed with `key`): create an active voice room, owned by an
/// absent "Host" user.
pub async fn create_room(
    http_base: &str,
    key: &ApiKey,
    settings: &RoomSettings,
) -> Result<RoomInfo, RestError> {
    let body = serde_json::json!({
        "name": settings.name,
        "owner_name": "Host",
        "capacity": settings.capacity,
        "seats": settings.seats,
        "seat_mode": if settings.open_seats { "open" } else { "moderated" },
    })
    .to_string();
    let (status, body) =
        signed_request(http_base, key, "POST", "/api/v1/rooms", Some(&body)).await?;
    if !(200..300).contains(&status) {
        return Err(RestError::Status { status, body });
    }
    #[derive(serde::Deserialize)]
    struct Created {
        room: RoomInfo,
    }
    serde_json::from_str::<Created>(&body)
        .map(|c| c.room)
        .map_err(|e| RestError::BadResponse(format!("{e}: {body}")))
}

/// The server API key a `chorus` started with `--data-dir DIR` made for itself.
pub fn api_key_in(data_dir: &std::path::Path) -> Result<ApiKey, RestError> {
    let path = data_dir.join("api-key.json");
    let bytes = std::fs::read(&path).map_err(RestError::Io)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| RestError::BadResponse(format!("{}: {e}", path.display())))
}

/// A request signed with an API key (`docs/api.md`).
pub async fn signed_request(
    http_base: &str,
    key: &ApiKey,
    method: &str,
    path: &str,
    json_body: Option<&str>,
) -> Result<(u16, String), RestError> {
    let authorization = key.sign(method, path, json_body.unwrap_or_default().as_bytes());
    send(http_base, method, path, json_body, Some(&authorization)).await
}

/// A request with an `Authorization` header as given (e.g. one signed earlier: a replay).
pub async fn request_with_authorization(
    http_base: &str,
    method: &str,
    path: &str,
    json_body: Option<&str>,
    authorization: &str,
) -> Result<(u16, String), RestError> {
    send(http_base, method, path, json_body, Some(authorization)).await
}

fn host_port(http_base: &str) -> Result<&str, RestError> {
    let rest = http_base
        .strip_prefix("http://")
        .ok_or_else(|| RestError::BadUrl(http_base.to_owned()))?;
    let host_port = rest.split('/').next().unwrap_or_default();
    if host_port.is_empty() {
        return Err(RestError::BadUrl(http_base.to_owned()));
    }
    Ok(host_port)
}

/// One request on a fresh connection (`Connection: close`); returns status and body.
pub async fn request(
    http_base: &str,
    method: &str,
    path: &str,
    json_body: Option<&str>,
) -> Result<(u16, String), RestError> {
    send(http_base, method, path, json_body, None).await
}

async fn send(
    http_base: &str,
    method: &str,
    path: &str,
    json_body: Option<&str>,
    authorization: Option<&str>,
) -> Result<(u16, String), RestError> {
    let host = host_port(http_base)?;
    let exchange = async {
        let mut stream = TcpStream::connect(host).await?;
        let body = json_body.unwrap_or_default();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nAccept: application/json\r\n"
        );
        if json_body.is_some() {
            head.push_str("Content-Type: application/json\r\n");
        }
        if let Some(authorization) = authorization {
            head.push_str(&format!("Authorization: {authorization}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        let mut response = Vec::new();
        stream
            .take(MAX_RESPONSE_BYTES)
            .read_to_end(&mut response)
            .await?;
        Ok::<_, RestError>(response)
    };
    let response = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| RestError::Timeout(TIMEOUT))??;
    parse_response(&response)
}

fn parse_response(response: &[u8]) -> Result<(u16, String), RestError> {
    let text = String::from_utf8_lossy(response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| RestError::BadResponse("no end of headers".into()))?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| RestError::BadResponse("no status line".into()))?;
    let chunked = lines.any(|line| {
        let line = line.to_ascii_lowercase();
        line.starts_with("transfer-encoding:") && line.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> Result<String, RestError> {
    let mut out = String::new();
    loop {
        let (size, rest) = body
            .split_once("\r\n")
            .ok_or_else(|| RestError::BadResponse("truncated chunk".into()))?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or_default().trim(), 16)
            .map_err(|_| RestError::BadResponse("bad chunk size".into()))?;
        if size == 0 {
            return Ok(out);
        }
        let chunk = rest
            .get(..size)
            .ok_or_else(|| RestError::BadResponse("truncated chunk".into()))?;
        out.push_str(chunk);
        body = rest
            .get(size..)
            .unwrap_or_default()
            .trim_start_matches("\r\n");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn responses_parse() {
        let plain = b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(parse_response(plain).unwrap(), (201, "{}".to_owned()));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), (200, "abcde".to_owned()));
        assert_eq!(
            ws_url("http://127.0.0.1:8080/").unwrap(),
            "ws://127.0.0.1:8080/ws"
        );
        assert!(ws_url("https://x/").is_err());
    }
}
