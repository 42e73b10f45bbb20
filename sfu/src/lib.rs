//! Chorus SFU: terminates ICE/DTLS-SRTP from every browser (str0m, ICE-lite) and forwards
//! Opus between the members of voice rooms, mapping the loudest speakers onto each
//! listener's audio slots. Signaling drives it over gRPC (`SfuControl`).
//!
//! - [`start`] runs a node in-process (the `chorus` all-in-one binary does this).
//! - [`Engine`] is the sans-IO core, usable on simulated time (the tests do this).

mod auth;
mod config;
mod control;
mod engine;
mod error;
mod fleet;
mod metrics;
mod net;
pub mod prometheus;
mod server;

pub use auth::{Authenticator, Revocations};
pub use config::{DEFAULT_AUDIO_SLOTS, DEFAULT_CONNECT_TIMEOUT, SfuConfig};
pub use engine::relay::Frame as RelayFrame;
pub use engine::{
    Engine, EngineConfig, EngineEvent, EngineStats, LeaveReason, MAX_OFFER_BYTES, Output,
    ParticipantState, Transmit, install_crypto_provider,
};
pub use error::SfuError;
pub use fleet::FleetConfig;
pub use metrics::{DropReason, Metrics};
pub use server::{NodeStats, SfuHandle, start};
