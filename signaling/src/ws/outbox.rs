//! A session's queue of frames to send. Bounded, so that one stuck client cannot grow the
//! server's memory: when an important frame does not fit, the session is ended instead
//! (its client reconnects); frames that are only news of the moment are just skipped.

use std::sync::Arc;

use chorus_proto::signal::ServerMessage;
use tokio::sync::{Notify, mpsc};

/// Frames a session may have queued before it counts as stuck.
pub const OUTBOX_CAPACITY: usize = 256;

/// The sending side of a session's frame queue. Cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<ServerMessage>,
    stuck: Arc<Notify>,
}

impl Outbox {
    /// A queue, its receiving end, and the signal that fires when the client is stuck.
    pub fn new() -> (Self, mpsc::Receiver<ServerMessage>, Arc<Notify>) {
        let (tx, rx) = mpsc::channel(OUTBOX_CAPACITY);
        let stuck = Arc::new(Notify::new());
        (
            Self {
                tx,
                stuck: stuck.clone(),
            },
            rx,
            stuck,
        )
    }

    /// Queue a frame that must arrive; a full queue ends the session.
    pub fn send(&self, message: ServerMessage) {
        match self.tx.try_send(message) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!("a client is not reading its socket; ending its session");
                self.stuck.notify_one();
            }
        }
    }

    /// Queue a frame that may be skipped if the client is behind (speaking levels).
    pub fn send_lossy(&self, message: ServerMessage) {
        let _ = self.tx.try_send(message);
    }
}
