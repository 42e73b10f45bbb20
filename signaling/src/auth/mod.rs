//! Who may call what: API keys for app backends (HMAC-signed requests). User identity
//! (user tokens) and room tokens are minted with `chorus_proto::token`.

pub mod api_key;
