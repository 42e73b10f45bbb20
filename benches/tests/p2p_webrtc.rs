//! Two `webrtc` peers wired to each other in memory, no server: one publishes 440 Hz, the
//! other must hear 440 Hz and nothing else. Validates the synthetic peer on its own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use chorus_bench::webrtc_peer::{MediaConfig, MediaPeer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_hears_the_tone_of_another() {
    let started = Instant::now();
    let mut speaker = MediaPeer::new(&MediaConfig {
        tone_hz: Some(440.0),
        ..MediaConfig::default()
    })
    .await
    .unwrap();
    // No transceivers of its own: it answers with receive-only m-lines.
    let mut listener = MediaPeer::new(&MediaConfig {
        tone_hz: None,
        slots: 0,
        ..MediaConfig::default()
    })
    .await
    .unwrap();
    let result = async {
        let offer = speaker.create_offer(Duration::from_secs(5)).await?;
        assert!(offer.contains("opus/48000/2"), "{offer}");
        assert_eq!(
            offer.matches("m=audio").count(),
            4,
            "1 send + 3 slots: {offer}"
        );
        let answer = listener.answer(offer, Duration::from_secs(5)).await?;
        speaker.apply_answer(answer).await?;
        speaker.start_publishing();
        speaker.wait_connected(Duration::from_secs(5)).await?;
        listener.wait_connected(Duration::from_secs(5)).await?;
        let connected = started.elapsed();

        // 2 s of audio = 20 windows; ask for most of them.
        let deadline = Instant::now() + Duration::from_secs(6);
        while listener.heard().windows_with(440.0) < 15 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok::<_, chorus_bench::webrtc_peer::PeerError>(connected)
    }
    .await;
    let heard = listener.heard();
    let sent = speaker.sent().await;
    speaker.close().await;
    listener.close().await;
    let connected = result.unwrap();
    eprintln!("connected after {connected:?}; sent {sent:?}; heard {heard:?}");
    assert!(
        heard.windows_with(440.0) >= 15,
        "440 Hz not heard enough: {heard:?}"
    );
    assert_eq!(heard.windows_with(660.0), 0, "660 Hz heard: {heard:?}");
    assert_eq!(heard.tracks, 1, "{heard:?}");
    assert!(heard.packets >= 75, "{heard:?}");
    assert_eq!(heard.undecodable, 0, "{heard:?}");
    assert!(heard.lost <= 2, "{heard:?}");
    assert!(sent.rtp_packets >= heard.packets, "{sent:?}");
}
