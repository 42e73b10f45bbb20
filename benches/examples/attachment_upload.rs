//! What sending a chat file costs, over a running Chorus server: a member uploads fresh
//! content of `--mb` megabytes (hash it, offer it, `PATCH` the chunks the server names), a
//! second member sends the same content (an offer the server answers "known"), and a
//! third downloads it. Prints, per run and as medians: the time of each step and the
//! bytes the server received for each send (its `chorus_attachments_received_bytes_total`).
//!
//! ```sh
//! cargo build --release -p chorus-signaling --bin chorus -p chorus-bench --example attachment_upload
//! target/release/chorus --listen 127.0.0.1:8080 --data-dir /tmp/chorus-att &
//! target/release/examples/attachment_upload --server http://127.0.0.1:8080/ \
//!     --data-dir /tmp/chorus-att --mb 50 --runs 5
//! ```
//!
//! Content differs from run to run (a first send each time) and is not compressible. The
//! client's hashing is timed apart from the upload (a browser hashes too, in slices).

use std::time::{Duration, Instant};

use chorus_bench::content::{noise, sha256_hex};
use chorus_bench::rest;
use clap::Parser;
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    /// The server, `http://host:port/`.
    #[arg(long, default_value = "http://127.0.0.1:8080/")]
    server: String,
    /// Its data folder (for the server API key, to make the room and its members).
    #[arg(long)]
    data_dir: std::path::PathBuf,
    /// Megabytes (1,000,000 bytes) a file.
    #[arg(long, default_value_t = 50)]
    mb: usize,
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

type Failure = Box<dyn std::error::Error>;

async fn received(server: &str) -> Result<u64, Failure> {
    let text = reqwest::get(format!("{server}metrics"))
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix("chorus_attachments_received_bytes_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0) as u64)
}

struct Files {
    http: reqwest::Client,
    base: String,
}

impl Files {
    /// Offer `bytes` and upload what the server lacks; the final status.
    async fn send(&self, token: &str, bytes: &[u8], hash: &str) -> Result<String, Failure> {
        let mut answer: Value = self
            .http
            .post(&self.base)
            .bearer_auth(token)
            .json(&json!({"hash": hash, "size": bytes.len(), "type": "application/octet-stream", "name": "bench.bin"}))
            .send()
            .await?
            .json()
            .await?;
        while answer["status"] == "upload" {
            let offset = answer["offset"].as_u64().ok_or("no offset")? as usize;
            let chunk = answer["chunk"].as_u64().unwrap_or(4_194_304) as usize;
            let end = bytes.len().min(offset + chunk);
            let res = self
                .http
                .patch(format!("{}/{hash}", self.base))
                .bearer_auth(token)
                .header("upload-offset", offset.to_string())
                .body(bytes[offset..end].to_vec())
                .send()
                .await?;
            if !res.status().is_success() {
                return Err(format!("PATCH: {} {}", res.status(), res.text().await?).into());
            }
            let next: Value = res.json().await?;
            // A final chunk answers "stored" without the chunk size; keep it.
            answer = if next["status"] == "upload" {
                json!({"status": "upload", "offset": next["offset"], "chunk": chunk})
            } else {
                next
            };
        }
        Ok(answer["status"].as_str().unwrap_or_default().to_owned())
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let args = Args::parse();
    let server = format!("{}/", args.server.trim_end_matches('/'));
    let key = rest::api_key_in(&args.data_dir)?;
    let call = |method: &'static str, path: String, body: Value| {
        let (server, key) = (server.clone(), key.clone());
        async move {
            let body = body.to_string();
            rest::signed_request(&server, &key, method, &path, Some(&body)).await
        }
    };
    let (status, made) = call(
        "POST",
        "/api/v1/rooms".into(),
        json!({"name": "Files bench", "owner_name": "a", "owner": "bench-a"}),
    )
    .await?;
    if status != 201 {
        return Err(format!("creating the room: {status} {made}").into());
    }
    let made: Value = serde_json::from_str(&made)?;
    let room = made["room"]["id"].as_str().ok_or("no room id")?.to_owned();
    let mut tokens = Vec::new();
    for user in ["bench-a", "bench-b", "bench-c"] {
        call(
            "PUT",
            format!("/api/v1/rooms/{room}/members/{user}"),
            json!({"name": user}),
        )
        .await?;
        let (_, made) = call(
            "POST",
            "/api/v1/users".into(),
            json!({"name": user, "user": user}),
        )
        .await?;
        let made: Value = serde_json::from_str(&made)?;
        tokens.push(
            made["user_token"]
                .as_str()
                .ok_or("no user token")?
                .to_owned(),
        );
    }
    let files = Files {
        http: reqwest::Client::new(),
        base: format!("{server}api/rooms/{room}/attachments"),
    };
    let size = args.mb * 1_000_000;
    let (mut hashing, mut firsts, mut seconds, mut downloads) = (vec![], vec![], vec![], vec![]);
    println!("{} MB a file, {} runs", args.mb, args.runs);
    for run in 0..args.runs {
        let bytes = noise(size, 1000 + run as u64 + rand_seed());
        let t = Instant::now();
        let hash = sha256_hex(&bytes);
        let hashed = t.elapsed();

        let before = received(&server).await?;
        let t = Instant::now();
        let first = files.send(&tokens[0], &bytes, &hash).await?;
        let first_time = t.elapsed();
        let mid = received(&server).await?;
        let t = Instant::now();
        let second = files.send(&tokens[1], &bytes, &hash).await?;
        let second_time = t.elapsed();
        let after = received(&server).await?;
        if first != "stored" || second != "known" {
            return Err(format!("run {run}: first {first}, second {second}").into());
        }

        // The message that posts it, then a whole download by the third member.
        let (mut ws, _) = tokio_tungstenite::connect_async(rest::ws_url(&server)?).await?;
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        let hello = json!({"type": "hello", "version": chorus_proto::signal::PROTOCOL_VERSION,
            "name": "a", "user_token": tokens[0]});
        ws.send(Message::text(hello.to_string())).await?;
        // The post's echo goes to the sessions that follow the chat.
        ws.send(Message::text(
            json!({"type": "chat_open", "room": room}).to_string(),
        ))
        .await?;
        ws.send(Message::text(
            json!({"type": "chat_send", "room": room, "text": "",
                "attachment": {"hash": hash, "name": "bench.bin"}, "nonce": "bench"})
            .to_string(),
        ))
        .await?;
        loop {
            let next = tokio::time::timeout(Duration::from_secs(15), ws.next()).await;
            let Some(frame) = next.map_err(|_| "no echo of the post within 15 s")? else {
                return Err("the socket closed before the post was echoed".into());
            };
            let text = frame?.into_text()?;
            if text.contains("\"nonce\":\"bench\"") {
                break;
            }
            if text.contains("\"type\":\"error\"") {
                return Err(format!("posting: {text}").into());
            }
        }
        let t = Instant::now();
        let got = files
            .http
            .get(format!("{}/{hash}", files.base))
            .bearer_auth(&tokens[2])
            .send()
            .await?
            .bytes()
            .await?;
        let download = t.elapsed();
        if got.len() != size {
            return Err(format!("run {run}: downloaded {} of {size} bytes", got.len()).into());
        }
        println!(
            "run {run}: hash {:>7.1} ms | first send {:>7.1} ms, {} bytes received | same content again {:>6.2} ms, {} bytes | download {:>7.1} ms",
            hashed.as_secs_f64() * 1e3,
            first_time.as_secs_f64() * 1e3,
            mid - before,
            second_time.as_secs_f64() * 1e3,
            after - mid,
            download.as_secs_f64() * 1e3,
        );
        hashing.push(hashed);
        firsts.push(first_time);
        seconds.push(second_time);
        downloads.push(download);
        let _ = ws.close(None).await;
    }
    let first = median(firsts);
    println!(
        "median: hash {:.1} ms | first send {:.1} ms ({:.0} MB/s) | same content again {:.2} ms | download {:.1} ms",
        median(hashing).as_secs_f64() * 1e3,
        first.as_secs_f64() * 1e3,
        size as f64 / 1e6 / first.as_secs_f64(),
        median(seconds).as_secs_f64() * 1e3,
        median(downloads).as_secs_f64() * 1e3,
    );
    Ok(())
}

/// A seed of this process, so that two invocations on one server send different content.
fn rand_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
