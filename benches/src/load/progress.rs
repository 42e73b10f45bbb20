//! A one-line progress bar on stderr: phase, peers joined, connected, hearing audio, and
//! the frame rate the peers receive. Redrawn four times a second by a tokio task.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::media::SharedCounters;

pub struct Progress {
    counters: Arc<SharedCounters>,
    state: Arc<Mutex<State>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

struct State {
    phase: &'static str,
    window: Option<(Instant, Duration)>,
    done: bool,
}

impl Progress {
    pub fn new(enabled: bool, total: usize) -> Self {
        let counters = Arc::new(SharedCounters::default());
        let state = Arc::new(Mutex::new(State {
            phase: "starting",
            window: None,
            done: false,
        }));
        // A bar redrawn with \r only makes sense on a terminal.
        let enabled = enabled && std::io::IsTerminal::is_terminal(&std::io::stderr());
        let task = enabled.then(|| {
            let counters = counters.clone();
            let state = state.clone();
            tokio::spawn(async move {
                let mut last_frames = 0u64;
                let mut last = Instant::now();
                loop {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    let (phase, window, done) = {
                        let s = state.lock().unwrap_or_else(PoisonError::into_inner);
                        (s.phase, s.window, s.done)
                    };
                    let frames = counters.frames.load(Ordering::Relaxed);
                    let rate = (frames - last_frames) as f64 / last.elapsed().as_secs_f64();
                    last_frames = frames;
                    last = Instant::now();
                    let joined = counters.joined.load(Ordering::Relaxed) as usize;
                    let width = 30;
                    let (fill, tail) = match window {
                        Some((start, len)) => {
                            let f = (start.elapsed().as_secs_f64() / len.as_secs_f64()).min(1.0);
                            (f, format!("{:>4.0}/{}s", start.elapsed().as_secs_f64().min(len.as_secs_f64()), len.as_secs()))
                        }
                        None => (joined as f64 / total.max(1) as f64, format!("{joined}/{total}")),
                    };
                    let bar: String = (0..width)
                        .map(|i| if (i as f64) < fill * width as f64 { '#' } else { '-' })
                        .collect();
                    let line = format!(
                        "\r{phase:<11} [{bar}] {tail}  failed {}  connected {}  hearing {}  rx {:.0} frames/s   ",
                        counters.failed.load(Ordering::Relaxed),
                        counters.connected.load(Ordering::Relaxed),
                        counters.first_audio.load(Ordering::Relaxed),
                        rate,
                    );
                    let mut err = std::io::stderr().lock();
                    let _ = err.write_all(line.as_bytes());
                    if done {
                        let _ = err.write_all(b"\n");
                        let _ = err.flush();
                        return;
                    }
                    let _ = err.flush();
                }
            })
        });
        Self {
            counters,
            state,
            task,
        }
    }

    pub fn counters(&self) -> Arc<SharedCounters> {
        self.counters.clone()
    }

    pub fn phase(&self, phase: &'static str) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .phase = phase;
    }

    pub fn window(&self, len: Duration) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .window = Some((Instant::now(), len));
    }

    pub fn joined(&self) {
        self.counters.joined.fetch_add(1, Ordering::Relaxed);
    }

    pub fn failed(&self) {
        self.counters.failed.fetch_add(1, Ordering::Relaxed);
    }

    pub async fn done(mut self) {
        {
            let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            s.phase = "done";
            s.done = true;
        }
        if let Some(task) = self.task.take() {
            // Let it draw its last line; never wait long.
            let _ = tokio::time::timeout(Duration::from_millis(500), task).await;
        }
    }
}
