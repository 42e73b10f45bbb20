//! An S3 server on loopback for the central attachment store: moto's (`python3 -m
//! moto.server`, installed by `deploy/test.sh`), on a port it picks, stopped by its pid on
//! drop. It speaks the S3 API the nodes call (put, multipart, get, delete), not S3's
//! consistency, limits or permissions.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct S3Server {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
}

impl S3Server {
    /// Start the server and make `bucket` in it.
    pub async fn start(bucket: &str) -> Self {
        // deploy/test.sh names the Python that has moto (a venv of its own if need be).
        let python = std::env::var("CHORUS_MOTO_PYTHON").unwrap_or_else(|_| "python3".into());
        let mut child = Command::new(python)
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 -m moto.server (deploy/test.sh installs moto[server])");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.trim().strip_prefix("* Running on ") {
                    let _ = tx.send(url.trim().trim_end_matches('/').to_owned());
                }
                // Keep reading: a full pipe would stall the server.
            }
        });
        let endpoint = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("moto's S3 server did not say where it listens within 60 s");
            }
        };
        let server = Self { child, endpoint };
        let res = reqwest::Client::new()
            .put(format!("{}/{bucket}", server.endpoint))
            .send()
            .await
            .expect("create the bucket");
        assert!(
            res.status().is_success(),
            "create the bucket: {}",
            res.status()
        );
        server
    }

    /// The number of objects under `prefix` in `bucket`.
    pub async fn count(&self, bucket: &str, prefix: &str) -> usize {
        let listing = reqwest::Client::new()
            .get(format!(
                "{}/{bucket}?list-type=2&prefix={prefix}",
                self.endpoint
            ))
            .send()
            .await
            .expect("list the bucket")
            .text()
            .await
            .unwrap_or_default();
        listing.matches("<Key>").count()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
