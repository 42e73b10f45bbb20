//! Files in the group chat, against the real binary over real HTTP: a file is uploaded
//! once (the same content sent again moves no bytes), members download it byte for byte
//! (also in ranges), an upload cut off resumes where the server stands, pictures get a
//! thumbnail, and content no message posts any more is deleted. Outsiders, bad hashes,
//! oversize files and lies about the content are refused with a code and words.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod support;

use std::time::Duration;

use chorus_bench::content::{noise, sha256_hex};
use chorus_proto::RoomId;
use chorus_proto::chat::ChatMessage;
use chorus_proto::signal::{ClientMessage, ErrorCode, ServerMessage};
use common::ChorusServer;
use serde_json::{Value, json};
use support::{Api, RawClient, metric, metrics};

const WAIT: Duration = Duration::from_secs(10);

/// A member of the room's group chat: the backend user, their token and a session.
struct Member {
    token: String,
    ws: RawClient,
}

async fn member(server: &ChorusServer, api: &Api, room: &RoomId, user: &str) -> Member {
    api.add_member(room, user, user).await;
    outsider(server, api, user).await
}

/// A user of the server who is in no group chat (yet).
async fn outsider(server: &ChorusServer, api: &Api, user: &str) -> Member {
    let token = api.user_token(user, user).await;
    let ws = RawClient::hello(&server.ws_url, user, Some(&token)).await;
    Member { token, ws }
}

/// The client API of one server, as a page's fetch would call it.
struct Files {
    http: reqwest::Client,
    base: String,
    room: RoomId,
}

impl Files {
    fn new(server: &ChorusServer, room: &RoomId) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: server.url.trim_end_matches('/').to_owned(),
            room: room.clone(),
        }
    }

    fn url(&self, tail: &str) -> String {
        format!("{}/api/rooms/{}/attachments{tail}", self.base, self.room)
    }

    /// `POST …/attachments`: (status, JSON answer).
    async fn offer(&self, token: &str, hash: &str, size: usize, mime: &str) -> (u16, Value) {
        let res = self
            .http
            .post(self.url(""))
            .bearer_auth(token)
            .json(&json!({"hash": hash, "size": size, "type": mime, "name": "a file"}))
            .send()
            .await
            .unwrap();
        (
            res.status().as_u16(),
            res.json().await.unwrap_or(Value::Null),
        )
    }

    /// `PATCH …/attachments/{hash}` with `bytes` from `offset`.
    async fn patch(&self, token: &str, hash: &str, offset: usize, bytes: &[u8]) -> (u16, Value) {
        let res = self
            .http
            .patch(self.url(&format!("/{hash}")))
            .bearer_auth(token)
            .header("upload-offset", offset.to_string())
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        (
            res.status().as_u16(),
            res.json().await.unwrap_or(Value::Null),
        )
    }

    /// Offer `bytes` and upload what the server lacks in the chunks it names; the final
    /// answer's status (`known` or `stored`).
    async fn upload(&self, token: &str, bytes: &[u8], mime: &str) -> String {
        let hash = sha256_hex(bytes);
        let (status, mut answer) = self.offer(token, &hash, bytes.len(), mime).await;
        assert_eq!(status, 200, "{answer}");
        while answer["status"] == "upload" {
            let offset = answer["offset"].as_u64().unwrap() as usize;
            let chunk = answer["chunk"].as_u64().unwrap() as usize;
            let end = bytes.len().min(offset + chunk);
            let (status, next) = self.patch(token, &hash, offset, &bytes[offset..end]).await;
            assert_eq!(status, 200, "{next}");
            answer = next;
        }
        answer["status"].as_str().unwrap().to_owned()
    }

    /// `GET …/attachments/{tail}`: status, headers, body.
    async fn get(
        &self,
        token: Option<&str>,
        tail: &str,
        range: Option<&str>,
    ) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
        let mut req = self.http.get(self.url(tail));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(range) = range {
            req = req.header("range", range);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        (status, headers, res.bytes().await.unwrap().to_vec())
    }
}

fn code_of(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body).unwrap_or(Value::Null)["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Post `hash` as `name` in the chat; the message as echoed, or the error code.
async fn post(
    client: &mut RawClient,
    room: &RoomId,
    text: &str,
    hash: &str,
    name: &str,
) -> Result<ChatMessage, ErrorCode> {
    // Our own echo, told apart from what others write by its nonce.
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nonce = format!(
        "post-{}",
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    client
        .send_json(json!({
            "type": "chat_send", "room": room, "text": text,
            "attachment": {"hash": hash, "name": name}, "nonce": nonce
        }))
        .await;
    client
        .expect("the echo of a post or an error", WAIT, |m| match m {
            ServerMessage::ChatMessage {
                message,
                nonce: Some(n),
                ..
            } if *n == nonce => Some(Ok(message.clone())),
            ServerMessage::Error { code, .. } => Some(Err(*code)),
            _ => None,
        })
        .await
        .unwrap()
}

async fn delete(client: &mut RawClient, room: &RoomId, seq: u64) {
    client
        .send(&ClientMessage::ChatDelete {
            room: room.clone(),
            seq,
            nonce: None,
        })
        .await;
    client
        .expect("the deletion", WAIT, |m| match m {
            ServerMessage::ChatMessage { message, .. } if message.seq == seq => {
                message.deleted.then_some(())
            }
            _ => None,
        })
        .await
        .unwrap();
}

async fn open_chat(client: &mut RawClient, room: &RoomId) {
    client
        .send(&ClientMessage::ChatOpen { room: room.clone() })
        .await;
    client
        .expect("chat_history", WAIT, |m| {
            matches!(m, ServerMessage::ChatHistory { .. }).then_some(())
        })
        .await
        .unwrap();
}

async fn counter(server: &ChorusServer, name: &str) -> f64 {
    metric(&metrics(&server.url).await, name).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_is_uploaded_once_downloaded_whole_or_in_ranges_and_deleted_with_its_last_message() {
    let server = ChorusServer::spawn();
    let api = Api::of(&server);
    let made = api
        .create_room(json!({"name": "Book club", "owner_name": "ada", "owner": "ada"}))
        .await;
    let room = made.room.id.clone();
    let mut ada = member(&server, &api, &room, "ada").await;
    let mut bo = member(&server, &api, &room, "bo").await;
    let cy = member(&server, &api, &room, "cy").await;
    let eve = outsider(&server, &api, "eve").await;
    let files = Files::new(&server, &room);
    for who in [&mut ada, &mut bo] {
        open_chat(&mut who.ws, &room).await;
    }

    let file = noise(5 * 1024 * 1024 + 123, 1);
    let hash = sha256_hex(&file);
    assert_eq!(
        files.upload(&ada.token, &file, "application/pdf").await,
        "stored"
    );
    let received = counter(&server, "chorus_attachments_received_bytes_total").await;
    assert_eq!(
        received as usize,
        file.len(),
        "the first upload moves the file"
    );

    // Until a message posts it, nobody can fetch it (not even its uploader).
    let (status, _, body) = files.get(Some(&ada.token), &format!("/{hash}"), None).await;
    assert_eq!(
        (status, code_of(&body).as_str()),
        (404, "attachment_not_found")
    );

    let first = post(&mut ada.ws, &room, "the minutes", &hash, "minutes.pdf")
        .await
        .unwrap();
    let att = first.attachment.as_deref().unwrap();
    assert_eq!(
        (att.hash.as_str(), att.name.as_str(), att.size),
        (hash.as_str(), "minutes.pdf", file.len() as u64)
    );
    assert_eq!(att.mime, "application/pdf");
    assert!(att.image.is_none());

    // The same content from another member: the server holds it, nothing moves.
    assert_eq!(
        files.upload(&bo.token, &file, "application/pdf").await,
        "known"
    );
    assert_eq!(
        counter(&server, "chorus_attachments_received_bytes_total").await,
        received,
        "the second send of the same content moves no bytes"
    );
    let second = post(&mut bo.ws, &room, "", &hash, "copy.pdf")
        .await
        .unwrap();
    assert_eq!(second.text, "");
    assert_eq!(second.attachment.as_deref().unwrap().name, "copy.pdf");

    // A third member downloads it byte for byte, as a download (never run as a page).
    let (status, headers, body) = files
        .get(Some(&cy.token), &format!("/{hash}?name=minutes.pdf"), None)
        .await;
    assert_eq!(status, 200);
    assert!(body == file, "the download is the upload, byte for byte");
    assert_eq!(headers["content-type"], "application/octet-stream");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(
        headers["content-disposition"]
            .to_str()
            .unwrap()
            .contains("minutes.pdf")
    );
    let (status, headers, body) = files
        .get(
            Some(&cy.token),
            &format!("/{hash}"),
            Some("bytes=1000-1999"),
        )
        .await;
    assert_eq!(status, 206);
    assert!(body == file[1000..2000]);
    assert_eq!(
        headers["content-range"].to_str().unwrap(),
        format!("bytes 1000-1999/{}", file.len())
    );
    let (status, _, body) = files
        .get(Some(&cy.token), &format!("/{hash}"), Some("bytes=-10"))
        .await;
    assert_eq!((status, body.as_slice()), (206, &file[file.len() - 10..]));
    let (status, _, _) = files
        .get(
            Some(&cy.token),
            &format!("/{hash}"),
            Some(&format!("bytes={}-", file.len())),
        )
        .await;
    assert_eq!(status, 416);

    // Outsiders, strangers and bad addresses.
    let (status, _, body) = files.get(Some(&eve.token), &format!("/{hash}"), None).await;
    assert_eq!((status, code_of(&body).as_str()), (403, "forbidden"));
    let (status, answer) = files
        .offer(&eve.token, &hash, file.len(), "application/pdf")
        .await;
    assert_eq!((status, answer["code"].as_str()), (403, Some("forbidden")));
    let (status, _, body) = files.get(None, &format!("/{hash}"), None).await;
    assert_eq!((status, code_of(&body).as_str()), (401, "unauthorized"));
    let (status, _, body) = files
        .get(Some("not-a-token"), &format!("/{hash}"), None)
        .await;
    assert_eq!(status, 401, "{}", String::from_utf8_lossy(&body));
    let (status, _, body) = files.get(Some(&cy.token), "/not-a-hash", None).await;
    assert_eq!((status, code_of(&body).as_str()), (400, "invalid_input"));
    let (status, _, body) = files
        .get(
            Some(&cy.token),
            &format!("/{}", sha256_hex(b"never sent")),
            None,
        )
        .await;
    assert_eq!(
        (status, code_of(&body).as_str()),
        (404, "attachment_not_found")
    );
    let (status, _, _) = files
        .get(Some(&cy.token), &format!("/{hash}/thumbnail"), None)
        .await;
    assert_eq!(status, 404, "a PDF has no thumbnail");
    assert_eq!(
        post(&mut ada.ws, &room, "", &sha256_hex(b"never sent"), "x").await,
        Err(ErrorCode::AttachmentNotFound),
        "a message cannot post content the server does not hold"
    );

    // Deleting one message keeps the file; deleting the last one deletes it.
    delete(&mut ada.ws, &room, first.seq).await;
    let (status, _, _) = files.get(Some(&cy.token), &format!("/{hash}"), None).await;
    assert_eq!(status, 200, "another message still posts it");
    delete(&mut bo.ws, &room, second.seq).await;
    let (status, _, body) = files.get(Some(&cy.token), &format!("/{hash}"), None).await;
    assert_eq!(
        (status, code_of(&body).as_str()),
        (404, "attachment_not_found")
    );
    assert_eq!(
        counter(&server, "chorus_attachments_collected_total").await,
        1.0
    );
    let on_disk = walk(&server.data_dir().join("attachments"))
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy() == hash))
        .count();
    assert_eq!(on_disk, 0, "the content is gone from the disk");
    // …and the next send of it is a full upload again.
    let (status, answer) = files
        .offer(&bo.token, &hash, file.len(), "application/pdf")
        .await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("upload")));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_resume_where_the_server_stands_and_lies_about_content_are_refused() {
    let server = ChorusServer::spawn_with(&["--attachment-max-mb", "8"]);
    let api = Api::of(&server);
    let made = api
        .create_room(json!({"name": "Uploads", "owner_name": "ada", "owner": "ada"}))
        .await;
    let room = made.room.id.clone();
    let ada = member(&server, &api, &room, "ada").await;
    let files = Files::new(&server, &room);

    // Cut off after 1 MiB: the server says where it stands, the rest follows from there.
    let file = noise(3 * 1024 * 1024, 2);
    let hash = sha256_hex(&file);
    let (status, answer) = files
        .offer(&ada.token, &hash, file.len(), "text/plain")
        .await;
    assert_eq!(
        (status, answer["offset"].as_u64()),
        (200, Some(0)),
        "{answer}"
    );
    let mib = 1024 * 1024;
    let (status, answer) = files.patch(&ada.token, &hash, 0, &file[..mib]).await;
    assert_eq!((status, answer["offset"].as_u64()), (200, Some(mib as u64)));
    let (status, answer) = files.patch(&ada.token, &hash, 0, &file[..mib]).await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(
        (answer["code"].as_str(), answer["offset"].as_u64()),
        (Some("upload_offset"), Some(mib as u64))
    );
    // The refused chunk was not read: the server says the connection is done, so a
    // client's next request goes on a new one (not on a socket about to close).
    let res = files
        .http
        .patch(files.url(&format!("/{hash}")))
        .bearer_auth(&ada.token)
        .header("upload-offset", "0")
        .body(file[..mib].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 409);
    assert_eq!(res.headers()["connection"], "close");
    let (_, answer) = files
        .offer(&ada.token, &hash, file.len(), "text/plain")
        .await;
    assert_eq!(
        answer["offset"].as_u64(),
        Some(mib as u64),
        "asking again resumes"
    );
    let (status, answer) = files.patch(&ada.token, &hash, mib, &file[mib..]).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("stored")));
    assert_eq!(
        counter(&server, "chorus_attachments_received_bytes_total").await as usize,
        file.len(),
        "each byte crossed once"
    );

    // Content that is not what its hash says is thrown away.
    let liar = noise(200_000, 3);
    let claimed = sha256_hex(&noise(200_000, 4));
    let (status, _) = files
        .offer(&ada.token, &claimed, liar.len(), "text/plain")
        .await;
    assert_eq!(status, 200);
    let (status, answer) = files.patch(&ada.token, &claimed, 0, &liar).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (422, Some("hash_mismatch"))
    );
    let (status, answer) = files.patch(&ada.token, &claimed, 0, &liar).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (404, Some("attachment_not_found")),
        "nothing of it was kept"
    );

    // More bytes than announced, files over the limit, empty files, bad offers.
    let (_, _) = files
        .offer(&ada.token, &sha256_hex(&liar), 100, "text/plain")
        .await;
    let (status, answer) = files.patch(&ada.token, &sha256_hex(&liar), 0, &liar).await;
    assert_eq!((status, answer["code"].as_str()), (413, Some("too_large")));
    let (status, answer) = files
        .offer(&ada.token, &sha256_hex(b"big"), 8_000_001, "text/plain")
        .await;
    assert_eq!((status, answer["code"].as_str()), (413, Some("too_large")));
    assert!(
        answer["message"].as_str().unwrap().contains("at most 8 MB"),
        "{answer}"
    );
    let (status, answer) = files
        .offer(&ada.token, &sha256_hex(b""), 0, "text/plain")
        .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (400, Some("invalid_input"))
    );
    let (status, answer) = files.offer(&ada.token, "abc", 10, "text/plain").await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (400, Some("invalid_input"))
    );
    let (status, answer) = files.patch(&ada.token, &hash, 0, b"").await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("known")),
        "a stored file takes no more bytes"
    );
    let res = reqwest::Client::new()
        .patch(files.url(&format!("/{}", sha256_hex(b"x"))))
        .bearer_auth(&ada.token)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 400, "a chunk says where it starts");

    // The server is still fine: the stored file posts.
    let mut ws = ada.ws;
    open_chat(&mut ws, &room).await;
    assert!(post(&mut ws, &room, "", &hash, "notes.txt").await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pictures_get_a_thumbnail_and_files_that_are_not_what_they_claim_are_refused() {
    let server = ChorusServer::spawn_with(&["--attachment-type", "image/*"]);
    let api = Api::of(&server);
    let made = api
        .create_room(json!({"name": "Photos", "owner_name": "ada", "owner": "ada"}))
        .await;
    let room = made.room.id.clone();
    let mut ada = member(&server, &api, &room, "ada").await;
    let bo = member(&server, &api, &room, "bo").await;
    let files = Files::new(&server, &room);
    open_chat(&mut ada.ws, &room).await;

    let picture = {
        let img = image::RgbImage::from_fn(1200, 800, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
        });
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    };
    let hash = sha256_hex(&picture);
    assert_eq!(
        files.upload(&ada.token, &picture, "image/png").await,
        "stored"
    );
    let message = post(&mut ada.ws, &room, "the view", &hash, "view.png")
        .await
        .unwrap();
    let image = message
        .attachment
        .as_deref()
        .unwrap()
        .image
        .clone()
        .unwrap();
    assert_eq!((image.width, image.height), (1200, 800));

    let (status, headers, body) = files
        .get(Some(&bo.token), &format!("/{hash}/thumbnail"), None)
        .await;
    assert_eq!(status, 200);
    let thumb = image::load_from_memory(&body).unwrap();
    assert_eq!(
        (thumb.width(), thumb.height()),
        (320, 213),
        "fits 320 × 320"
    );
    let mime = headers["content-type"].to_str().unwrap();
    assert!(mime == "image/jpeg" || mime == "image/png", "{mime}");
    let (status, headers, body) = files.get(Some(&bo.token), &format!("/{hash}"), None).await;
    assert_eq!((status, body == picture), (200, true));
    assert_eq!(
        headers["content-type"], "image/png",
        "a decoded picture shows inline"
    );

    // A "PNG" that is not one, a type this server does not take.
    let fake = noise(10_000, 5);
    let fake_hash = sha256_hex(&fake);
    let (status, _) = files
        .offer(&ada.token, &fake_hash, fake.len(), "image/png")
        .await;
    assert_eq!(status, 200);
    let (status, answer) = files.patch(&ada.token, &fake_hash, 0, &fake).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (422, Some("invalid_image"))
    );
    let (status, answer) = files
        .offer(&ada.token, &fake_hash, fake.len(), "application/zip")
        .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (415, Some("unsupported_type"))
    );
}
