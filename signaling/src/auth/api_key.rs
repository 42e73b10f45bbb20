//! The server API's key, kept in the data folder. Signing and checking requests is part
//! of the API contract and lives in `chorus_proto::api_key`.

use std::path::Path;

pub use chorus_proto::api_key::ApiKey;

use crate::error::SignalingError;

/// Read the key file, or write a new key there (mode 0600).
pub fn load_or_create(path: &Path) -> Result<ApiKey, SignalingError> {
    let io = |source| SignalingError::Io {
        path: path.to_owned(),
        source,
    };
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| SignalingError::Config(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = ApiKey::generate().map_err(|e| SignalingError::Config(e.to_string()))?;
            let json = serde_json::to_vec_pretty(&key)
                .map_err(|e| SignalingError::Config(e.to_string()))?;
            crate::write_private(path, &json).map_err(io)?;
            Ok(key)
        }
        Err(e) => Err(io(e)),
    }
}
