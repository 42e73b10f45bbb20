//! A session's queue of frames to send. Bounded, so that one stuck client cannot grow the
//! server's memory. The session's own answers are paced by the reader: it reads the next
//! frame only when the queue has room for its answers (backpressure, down to TCP). Frames
//! from the room (others' news) are queued without waiting; when even they do not fit,
//! the client has stopped reading and its session is closed (`close::NOT_READING`);
//! frames that are only news of the moment (speaking levels) are just skipped.

use std::sync::Arc;

use chorus_proto::signal::ServerMessage;
use tokio::sync::{Notify, mpsc};

/// Frames a session may have queued before it counts as not reading.
pub const OUTBOX_CAPACITY: usize = 512;
/// Free places the reader waits for before it reads the next frame: more than any one
/// client frame is answered with.
pub const ANSWER_ROOM: usize = 16;

/// What the writer of a session sends.
#[derive(Debug)]
pub enum Outgoing {
    /// A JSON frame.
    Frame(ServerMessage),
    /// A WebSocket ping (is the client still reading?).
    Ping,
    /// The last frame: a close with its code and reason.
    Close(u16, String),
}

/// The sending side of a session's frame queue. Cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Outgoing>,
    behind: Arc<Notify>,
}

impl Outbox {
    /// A queue, its receiving end, and the signal that fires when the client has fallen
    /// too far behind.
    pub fn new() -> (Self, mpsc::Receiver<Outgoing>, Arc<Notify>) {
        let (tx, rx) = mpsc::channel(OUTBOX_CAPACITY);
        let behind = Arc::new(Notify::new());
        (
            Self {
                tx,
                behind: behind.clone(),
            },
            rx,
            behind,
        )
    }

    /// Queue a frame that must arrive; a full queue means the client is not reading, and
    /// ends the session.
    pub fn send(&self, message: ServerMessage) {
        match self.tx.try_send(Outgoing::Frame(message)) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(
                    capacity = OUTBOX_CAPACITY,
                    "a client fell too far behind reading its socket; closing its session"
                );
                self.behind.notify_one();
            }
        }
    }

    /// Whether both are the same session's queue.
    pub fn same(&self, other: &Outbox) -> bool {
        self.tx.same_channel(&other.tx)
    }

    /// Queue a frame that may be skipped if the client is behind (speaking levels).
    pub fn send_lossy(&self, message: ServerMessage) {
        let _ = self.tx.try_send(Outgoing::Frame(message));
    }

    /// Wait until the queue has room for the answers to one more client frame.
    pub(crate) async fn room_for_answers(&self) {
        // Reserving and at once releasing: a wait for free places, nothing more.
        let _ = self.tx.reserve_many(ANSWER_ROOM).await;
    }

    /// Queue a ping (skipped if the queue is full: the pong deadline runs all the same).
    pub(crate) fn ping(&self) {
        let _ = self.tx.try_send(Outgoing::Ping);
    }

    /// Queue the closing frame after everything queued so far; `false` if it found no
    /// place in `within`.
    pub async fn close(&self, code: u16, reason: String, within: std::time::Duration) -> bool {
        matches!(
            tokio::time::timeout(within, self.tx.send(Outgoing::Close(code, reason))).await,
            Ok(Ok(()))
        )
    }
}
