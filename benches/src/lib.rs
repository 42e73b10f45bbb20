//! Chorus synthetic peers and measurement tools.
//!
//! - [`tone`]: sine tones as Opus, and a detector telling which tones a listener hears.
//! - [`webrtc_peer`]: a participant on the `webrtc` crate (independent of our str0m SFU)
//!   that joins through the real signaling, publishes a tone and reports what it hears.
//! - [`load`]: `chorus-load`, synthetic str0m peers by the thousand and what they measure.
//! - [`rest`]: the REST calls the tools need (creating rooms).
//! - [`redis_server`]: a real `redis-server` on a free loopback port, for fleet tests.
//! - [`content`]: incompressible test content and its SHA-256, for the attachment tests.

pub mod content;
pub mod load;
pub mod redis_server;
pub mod rest;
pub mod tone;
pub mod webrtc_peer;
