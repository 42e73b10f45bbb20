//! Files across the fleet: two signaling nodes (real processes, one Redis), each with its
//! own disk, behind one central store (an S3 server on loopback). A file posted through
//! node A downloads through node B byte for byte, B fetching it from the bucket once
//! however often it is asked; the same content offered on B moves nothing; and when its
//! last message goes, it is gone from the bucket too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod fleet_support;
mod support;

use std::time::Duration;

use chorus_bench::content::sha256_hex;
use chorus_proto::signal::{ClientMessage, ServerMessage};
use fleet_support::s3::S3Server;
use fleet_support::{RedisServer, SfuNode, SignalingNode, TokenKey};
use serde_json::{Value, json};
use support::{Api, RawClient, metric, metrics};

const WAIT: Duration = Duration::from_secs(10);
const BUCKET: &str = "chorus-files";

async fn counter(url: &str, name: &str) -> f64 {
    metric(&metrics(url).await, name).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_posted_on_one_node_downloads_on_another_through_the_central_store() {
    let s3 = S3Server::start(BUCKET).await;
    let redis = RedisServer::start().expect("redis-server");
    let key = TokenKey::make();
    let _sfu = SfuNode::start(&redis.url(), &key, "sfu-a");
    let store = format!("s3://{BUCKET}/chat");
    let args = [
        "--attachment-store",
        store.as_str(),
        "--s3-endpoint",
        s3.endpoint.as_str(),
    ];
    // Any credentials do for the test server; named, so that nothing looks further.
    let envs = [
        ("AWS_ACCESS_KEY_ID", "chorus-test"),
        ("AWS_SECRET_ACCESS_KEY", "chorus-test"),
        ("AWS_REGION", "us-east-1"),
    ];
    let a = SignalingNode::start_with(&redis.url(), &key, "sig-a", None, &args, &envs);
    let b = SignalingNode::start_with(&redis.url(), &key, "sig-b", Some(&a.data_dir), &args, &envs);
    let api = Api::new(&a.url, a.api_key());
    let made = api
        .create_room(json!({"name": "Across", "owner_name": "ada", "owner": "ada"}))
        .await;
    let room = made.room.id.clone();
    api.add_member(&room, "bo", "bo").await;
    let tokens = [
        api.user_token("ada", "ada").await,
        api.user_token("bo", "bo").await,
    ];
    let (ada, bo) = (&tokens[0], &tokens[1]);
    let http = reqwest::Client::new();
    let files = |node: &SignalingNode, tail: &str| {
        format!(
            "{}/api/rooms/{room}/attachments{tail}",
            node.url.trim_end_matches('/')
        )
    };

    // 12 MB through node A: the bucket gets it in parts (S3 multipart).
    let file: Vec<u8> = (0..12_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let hash = sha256_hex(&file);
    let offer = json!({"hash": hash, "size": file.len(), "type": "video/mp4", "name": "clip.mp4"});
    let mut answer: Value = http
        .post(files(&a, ""))
        .bearer_auth(ada)
        .json(&offer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    while answer["status"] == "upload" {
        let offset = answer["offset"].as_u64().unwrap() as usize;
        let end = file
            .len()
            .min(offset + answer["chunk"].as_u64().unwrap() as usize);
        let res = http
            .patch(files(&a, &format!("/{hash}")))
            .bearer_auth(ada)
            .header("upload-offset", offset.to_string())
            .body(file[offset..end].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            200,
            "{}\n{}",
            res.text().await.unwrap(),
            a.log()
        );
        answer = res.json().await.unwrap();
    }
    assert_eq!(answer["status"], "stored", "{answer}");
    assert_eq!(
        s3.count(BUCKET, "chat/blobs/").await,
        1,
        "the bucket holds it"
    );

    let mut ws = RawClient::hello(&a.ws_url, "ada", Some(ada)).await;
    ws.send(&ClientMessage::ChatOpen { room: room.clone() })
        .await;
    ws.send_json(json!({
        "type": "chat_send", "room": room, "text": "",
        "attachment": {"hash": hash, "name": "clip.mp4"}
    }))
    .await;
    let seq = ws
        .expect("the post", WAIT, |m| match m {
            ServerMessage::ChatMessage { message, .. } => Some(message.seq),
            _ => None,
        })
        .await
        .unwrap();

    // Node B has never seen the bytes: it fetches them from the bucket, once.
    assert!(
        !b.data_dir
            .join("attachments/blobs")
            .join(&hash[..2])
            .join(&hash)
            .exists()
    );
    for round in 0..3 {
        let res = http
            .get(files(&b, &format!("/{hash}")))
            .bearer_auth(bo)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "round {round}: {}", b.log());
        let body = res.bytes().await.unwrap();
        assert!(body == file, "round {round}: the download is the upload");
    }
    assert_eq!(
        counter(&b.url, "chorus_attachments_central_fetches_total").await,
        1.0,
        "node B fetched it from the central store once"
    );
    // The same content offered through node B: known, nothing moves.
    let answer: Value = http
        .post(files(&b, ""))
        .bearer_auth(bo)
        .json(&offer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["status"], "known", "{answer}");
    assert_eq!(
        counter(&b.url, "chorus_attachments_received_bytes_total").await,
        0.0
    );

    // Its last message deleted (on node A), it is gone from the bucket and node A's disk.
    ws.send(&ClientMessage::ChatDelete {
        room: room.clone(),
        seq,
        nonce: None,
    })
    .await;
    ws.expect("the deletion", WAIT, |m| match m {
        ServerMessage::ChatMessage { message, .. } => message.deleted.then_some(()),
        _ => None,
    })
    .await
    .unwrap();
    assert_eq!(
        s3.count(BUCKET, "chat/blobs/").await,
        0,
        "deleted from the bucket"
    );
    assert!(
        !a.data_dir
            .join("attachments/blobs")
            .join(&hash[..2])
            .join(&hash)
            .exists()
    );
    let res = http
        .get(files(&b, &format!("/{hash}")))
        .bearer_auth(bo)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404, "no node serves it any more");
}
