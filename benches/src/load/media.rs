//! Media threads: each owns a set of peers and their sockets, waits on epoll (mio) for
//! datagrams or the earliest peer deadline, and feeds its peers. Commands (a new peer,
//! the window opening or closing, stop) arrive on a channel with a waker.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token, Waker};

use super::LoadError;
use super::peer::{Peer, PeerResult, PeerSetup};

/// The waker's token; peers use their index.
const WAKER: Token = Token(usize::MAX);
/// Largest datagram read.
const MAX_DATAGRAM: usize = 2_048;

/// Counters the progress bar reads.
#[derive(Debug, Default)]
pub struct SharedCounters {
    pub joined: AtomicU64,
    pub failed: AtomicU64,
    pub connected: AtomicU64,
    pub first_audio: AtomicU64,
    pub frames: AtomicU64,
}

pub enum MediaCommand {
    Add(Box<PeerSetup>),
    StartWindow,
    EndWindow,
    Stop,
}

struct Thread {
    tx: mpsc::Sender<MediaCommand>,
    waker: Arc<Waker>,
    handle: JoinHandle<Result<Vec<PeerResult>, String>>,
}

pub struct MediaThreads {
    threads: Vec<Thread>,
    next: std::sync::atomic::AtomicUsize,
}

impl MediaThreads {
    pub fn start(n: usize, counters: Arc<SharedCounters>) -> Result<Self, LoadError> {
        let mut threads = Vec::with_capacity(n);
        for i in 0..n {
            let poll = Poll::new()?;
            let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
            let (tx, rx) = mpsc::channel();
            let counters = counters.clone();
            let handle = std::thread::Builder::new()
                .name(format!("load-media-{i}"))
                .spawn(move || media_loop(poll, rx, &counters))?;
            threads.push(Thread { tx, waker, handle });
        }
        Ok(Self {
            threads,
            next: Default::default(),
        })
    }

    /// Hand a joined peer to the next thread (round robin).
    pub fn add(&self, setup: PeerSetup) -> Result<(), LoadError> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.threads.len();
        let t = &self.threads[i];
        t.tx.send(MediaCommand::Add(Box::new(setup)))
            .map_err(|_| LoadError::MediaThread("media thread gone".into()))?;
        t.waker.wake()?;
        Ok(())
    }

    pub fn broadcast(&self, make: impl Fn() -> MediaCommand) {
        for t in &self.threads {
            let _ = t.tx.send(make());
            let _ = t.waker.wake();
        }
    }

    /// Stop without waiting for results (an early error).
    pub fn stop_all(&self) {
        self.broadcast(|| MediaCommand::Stop);
    }

    /// Stop every thread and gather the peers' results.
    pub fn finish(self) -> Result<Vec<PeerResult>, LoadError> {
        self.stop_all();
        let mut all = Vec::new();
        for t in self.threads {
            let results = t
                .handle
                .join()
                .map_err(|_| LoadError::MediaThread("a media thread panicked".into()))?
                .map_err(LoadError::MediaThread)?;
            all.extend(results);
        }
        Ok(all)
    }
}

fn media_loop(
    mut poll: Poll,
    rx: mpsc::Receiver<MediaCommand>,
    counters: &SharedCounters,
) -> Result<Vec<PeerResult>, String> {
    let mut peers: Vec<Peer> = Vec::new();
    let mut events = Events::with_capacity(1_024);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut in_window = false;
    // Earliest wake-up over all peers; recomputed on every scan.
    let mut next_wake = Instant::now() + Duration::from_secs(1);
    loop {
        let now = Instant::now();
        let timeout = next_wake.saturating_duration_since(now);
        if let Err(e) = poll.poll(&mut events, Some(timeout))
            && e.kind() != std::io::ErrorKind::Interrupted
        {
            return Err(format!("epoll: {e}"));
        }
        let mut frames = 0u64;
        for event in events.iter() {
            if event.token() == WAKER {
                continue;
            }
            let Some(peer) = peers.get_mut(event.token().0) else {
                continue;
            };
            // Edge-triggered: read until the socket is empty.
            loop {
                match peer.socket.recv_from(&mut buf) {
                    Ok((n, from)) => {
                        let now = Instant::now();
                        let p = peer.receive(now, from, &buf[..n]);
                        frames += p.frames;
                        count(counters, &p);
                        next_wake = next_wake.min(peer.wake_at());
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    // ICMP port unreachable and the like: the server went away.
                    Err(_) => break,
                }
            }
        }
        // Commands.
        loop {
            match rx.try_recv() {
                Ok(MediaCommand::Add(setup)) => {
                    let token = Token(peers.len());
                    let mut peer = Peer::new(*setup)?;
                    poll.registry()
                        .register(&mut peer.socket, token, Interest::READABLE)
                        .map_err(|e| format!("epoll register: {e}"))?;
                    peer.in_window = in_window;
                    // Kick off ICE at once.
                    let p = peer.tick(Instant::now());
                    count(counters, &p);
                    next_wake = next_wake.min(peer.wake_at());
                    peers.push(peer);
                }
                Ok(MediaCommand::StartWindow) => {
                    in_window = true;
                    for p in &mut peers {
                        p.in_window = true;
                        p.window = Default::default();
                    }
                }
                Ok(MediaCommand::EndWindow) => {
                    in_window = false;
                    for p in &mut peers {
                        p.in_window = false;
                    }
                }
                Ok(MediaCommand::Stop) | Err(mpsc::TryRecvError::Disconnected) => {
                    let results = peers.iter().map(Peer::result).collect();
                    for p in &mut peers {
                        p.close();
                    }
                    return Ok(results);
                }
                Err(mpsc::TryRecvError::Empty) => break,
            }
        }
        // Timers: scan only when something is due.
        let now = Instant::now();
        if now >= next_wake {
            let mut earliest = now + Duration::from_secs(1);
            for peer in &mut peers {
                if peer.wake_at() <= now {
                    let p = peer.tick(now);
                    frames += p.frames;
                    count(counters, &p);
                }
                earliest = earliest.min(peer.wake_at());
            }
            next_wake = earliest;
        }
        if frames > 0 {
            counters.frames.fetch_add(frames, Ordering::Relaxed);
        }
    }
}

fn count(counters: &SharedCounters, p: &super::peer::Progressed) {
    if p.connected {
        counters.connected.fetch_add(1, Ordering::Relaxed);
    }
    if p.first_audio {
        counters.first_audio.fetch_add(1, Ordering::Relaxed);
    }
}
