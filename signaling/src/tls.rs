//! HTTPS material: given PEM files, or a self-signed certificate kept in the data
//! directory so that a phone that accepted it once keeps accepting it after a restart.

use std::net::IpAddr;
use std::path::Path;

use axum_server::tls_rustls::RustlsConfig;

use crate::config::TlsMode;
use crate::error::SignalingError;

/// Build the rustls configuration for `mode`, or `None` for plain HTTP.
pub async fn rustls_config(
    mode: &TlsMode,
    data_dir: &Path,
    names: &[IpAddr],
) -> Result<Option<RustlsConfig>, SignalingError> {
    match mode {
        TlsMode::Off => Ok(None),
        TlsMode::Files { cert, key } => {
            let cert_pem = read(cert)?;
            let key_pem = read(key)?;
            RustlsConfig::from_pem(cert_pem, key_pem)
                .await
                .map(Some)
                .map_err(|e| SignalingError::Tls(format!("{}: {e}", cert.display())))
        }
        TlsMode::SelfSigned => {
            let (cert_pem, key_pem) = self_signed(data_dir, names)?;
            RustlsConfig::from_pem(cert_pem, key_pem)
                .await
                .map(Some)
                .map_err(|e| SignalingError::Tls(e.to_string()))
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, SignalingError> {
    std::fs::read(path).map_err(|source| SignalingError::Io {
        path: path.to_owned(),
        source,
    })
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), SignalingError> {
    std::fs::write(path, bytes).map_err(|source| SignalingError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Load the self-signed pair from `data_dir`, or make one naming localhost and `names`.
fn self_signed(data_dir: &Path, names: &[IpAddr]) -> Result<(Vec<u8>, Vec<u8>), SignalingError> {
    let cert_path = data_dir.join("self-signed-cert.pem");
    let key_path = data_dir.join("self-signed-key.pem");
    if cert_path.exists() && key_path.exists() {
        return Ok((read(&cert_path)?, read(&key_path)?));
    }
    let mut sans = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    sans.extend(names.iter().map(IpAddr::to_string));
    sans.dedup();
    let certified = rcgen::generate_simple_self_signed(sans)
        .map_err(|e| SignalingError::Tls(format!("cannot make a self-signed certificate: {e}")))?;
    let cert_pem = certified.cert.pem().into_bytes();
    let key_pem = certified.signing_key.serialize_pem().into_bytes();
    write(&cert_path, &cert_pem)?;
    write(&key_path, &key_pem)?;
    Ok((cert_pem, key_pem))
}
