//! Room tokens: short-lived Ed25519-signed JWTs.
//!
//! Signaling holds the private key and mints a token for every admission; an SFU holds
//! only the public key and verifies the token itself, so a compromised SFU cannot mint
//! admissions and a client cannot forge or widen its grants.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::ids::{ParticipantId, RoomId, UserId};

/// Issuer written into every token and required when verifying.
pub const ISSUER: &str = "chorus";
/// Longest token accepted; anything larger is refused before it is parsed.
pub const MAX_TOKEN_LEN: usize = 4096;

/// What a participant may do in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Grants {
    /// May send audio that others hear (holds a mic seat).
    pub publish: bool,
    /// May receive the room's audio.
    pub subscribe: bool,
    /// May moderate the room.
    pub admin: bool,
}

impl Grants {
    /// A speaker: publishes and listens.
    pub const SPEAKER: Grants = Grants {
        publish: true,
        subscribe: true,
        admin: false,
    };
    /// A listener: only listens.
    pub const LISTENER: Grants = Grants {
        publish: false,
        subscribe: true,
        admin: false,
    };
}

/// The claims of a room token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomClaims {
    /// The participant this token admits.
    pub sub: ParticipantId,
    /// The room it admits into.
    pub room: RoomId,
    /// Display name, shown to the others.
    pub name: String,
    /// What the participant may do.
    pub grants: Grants,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
    /// Expires at, seconds since the Unix epoch.
    pub exp: u64,
    /// Always [`ISSUER`].
    pub iss: String,
}

/// The claims of a user token: who a returning client is. Signaling mints it in
/// `welcome`; the client keeps it and presents it in its next `hello`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserClaims {
    /// The user.
    pub sub: UserId,
    /// Display name when minted.
    pub name: String,
    /// Always [`TokenKind::User`]: a room token is never taken for a user token.
    pub kind: TokenKind,
    /// Signed in through the app backend (the server API's `POST /users`, or a room's
    /// owner it created), not a guest of the page. Absent in older tokens: a guest.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub signed_in: bool,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
    /// Expires at, seconds since the Unix epoch.
    pub exp: u64,
    /// Always [`ISSUER`].
    pub iss: String,
}

/// Which kind of token a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// A user token.
    User,
    /// A control token: signaling drives an SFU node's gRPC with it.
    Control,
    /// A one-time sign-in link: an app backend hands it to one of its users, whose
    /// browser trades it (once) for that account's session and user token.
    SignInLink,
}

/// The claims of a one-time sign-in link (`POST /api/v1/users` with `link: true`).
/// Signaling remembers each `jti` it accepted until `exp`, so a link works once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignInLinkClaims {
    /// The user (an account) it signs in.
    pub sub: UserId,
    /// Always [`TokenKind::SignInLink`].
    pub kind: TokenKind,
    /// This link's unique id (its single use is recorded under it).
    pub jti: String,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
    /// Expires at, seconds since the Unix epoch.
    pub exp: u64,
    /// Always [`ISSUER`].
    pub iss: String,
}

/// The subject of every control token.
pub const CONTROL_SUBJECT: &str = "sfu-control";

/// The gRPC metadata key every SFU control call carries its control token in, as
/// `Bearer <token>`.
pub const CONTROL_METADATA: &str = "authorization";

/// The value of [`CONTROL_METADATA`] for `token`.
pub fn control_bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A gRPC interceptor that puts one control token on every call: for tools and tests
/// that drive an SFU node directly (`SfuControlClient::with_interceptor(channel, it)`).
/// Signaling renews its tokens instead.
#[derive(Clone)]
pub struct ControlBearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl ControlBearer {
    /// A fresh control token of `issuer`, valid for `ttl`.
    pub fn mint(issuer: &TokenIssuer, ttl: Duration) -> Result<Self, TokenError> {
        let token = issuer.mint_control(ttl)?;
        Self::from_token(&token)
    }

    /// Carry `token` as it is (a control token, or anything a test wants refused).
    pub fn from_token(token: &str) -> Result<Self, TokenError> {
        control_bearer(token)
            .parse()
            .map(Self)
            .map_err(|_| TokenError::Malformed("not valid as gRPC metadata".into()))
    }
}

impl tonic::service::Interceptor for ControlBearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert(CONTROL_METADATA, self.0.clone());
        Ok(request)
    }
}

/// The claims of a control token: whoever holds the signing key (signaling) may drive
/// SFU nodes, which verify it with the public key they already have for room tokens.
/// It carries no room, grants or user, so it is never taken for either other kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlClaims {
    /// Always [`CONTROL_SUBJECT`].
    pub sub: String,
    /// Always [`TokenKind::Control`].
    pub kind: TokenKind,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
    /// Expires at, seconds since the Unix epoch.
    pub exp: u64,
    /// Always [`ISSUER`].
    pub iss: String,
}

/// Why a token was refused. The texts are shown to users.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The token is larger than [`MAX_TOKEN_LEN`].
    #[error("the room token is too large")]
    TooLarge,
    /// The token's time is up.
    #[error("the room token has expired")]
    Expired,
    /// The signature does not match: forged, or signed by another deployment.
    #[error("the room token is not signed by this server")]
    BadSignature,
    /// The token admits into another room than the one asked for.
    #[error("the room token is for another room")]
    WrongRoom,
    /// Not a JWT, or its claims are missing or malformed.
    #[error("the room token is malformed: {0}")]
    Malformed(String),
    /// The key material could not be used.
    #[error("the token key is unusable: {0}")]
    Key(String),
}

/// HKDF-SHA256 of the private key's seed, labelled for what it is used for.
fn derive_secret(seed: aws_lc_rs::signature::Ed25519Seed<'_>) -> [u8; 32] {
    use aws_lc_rs::encoding::AsBigEndian as _;
    struct Len32;
    impl aws_lc_rs::hkdf::KeyType for Len32 {
        fn len(&self) -> usize {
            32
        }
    }
    let mut out = [0u8; 32];
    let prk = aws_lc_rs::hkdf::Salt::new(aws_lc_rs::hkdf::HKDF_SHA256, b"chorus-derived-secrets")
        .extract(
            seed.as_be_bytes()
                .map(|b| b.as_ref().to_vec())
                .unwrap_or_default()
                .as_slice(),
        );
    if let Ok(okm) = prk.expand(&[b"session state"], Len32) {
        let _ = okm.fill(&mut out);
    }
    out
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Mints room tokens. Held by signaling only.
#[derive(Clone)]
pub struct TokenIssuer {
    encoding: EncodingKey,
    public_key: Vec<u8>,
    /// A secret derived from the private key, for keys of other kinds (sealed session
    /// state): every node holding the signing key derives the same, so a fleet has no
    /// second secret to distribute.
    derived: [u8; 32],
}

impl TokenIssuer {
    /// A fresh random key pair (the embedded default: the SFU runs in the same process
    /// and receives the public key directly).
    pub fn generate() -> Result<Self, TokenError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 =
            Ed25519KeyPair::generate_pkcs8v1(&rng).map_err(|e| TokenError::Key(e.to_string()))?;
        Self::from_pkcs8_der(pkcs8.as_ref())
    }

    /// A key pair from a PKCS#8 DER document, v1 (RFC 8410, what [`generate_pkcs8`] and
    /// `openssl genpkey -algorithm ed25519` write) or v2 (what Chorus wrote before).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, TokenError> {
        let pair = Ed25519KeyPair::from_pkcs8(der).map_err(|e| TokenError::Key(e.to_string()))?;
        Ok(Self {
            encoding: EncodingKey::from_ed_der(der),
            public_key: pair.public_key().as_ref().to_vec(),
            derived: derive_secret(pair.seed().map_err(|e| TokenError::Key(e.to_string()))?),
        })
    }

    /// The secret sealed session state is derived from (`crate::session::Sealer`): the
    /// same on every node that holds this key, useless for signing anything.
    pub fn session_secret(&self) -> &[u8] {
        &self.derived
    }

    /// A key pair from a PEM file holding a PKCS#8 Ed25519 private key.
    pub fn from_pem(pem: &[u8]) -> Result<Self, TokenError> {
        let text = std::str::from_utf8(pem).map_err(|_| TokenError::Key("not PEM text".into()))?;
        let der = pem_body(text, "PRIVATE KEY")?;
        Self::from_pkcs8_der(&der)
    }

    /// The raw 32-byte public key, for [`TokenVerifier::from_public_key`].
    pub fn public_key(&self) -> &[u8] {
        &self.public_key
    }

    /// Mint a token valid for `ttl`.
    pub fn mint(
        &self,
        room: &RoomId,
        participant: &ParticipantId,
        name: &str,
        grants: Grants,
        ttl: Duration,
    ) -> Result<String, TokenError> {
        let iat = now_secs();
        let claims = RoomClaims {
            sub: participant.clone(),
            room: room.clone(),
            name: name.to_owned(),
            grants,
            iat,
            exp: iat + ttl.as_secs().max(1),
            iss: ISSUER.to_owned(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &self.encoding)
            .map_err(|e| TokenError::Key(e.to_string()))
    }
}

impl TokenIssuer {
    /// Mint a user token valid for `ttl`.
    pub fn mint_user(
        &self,
        user: &UserId,
        name: &str,
        ttl: Duration,
    ) -> Result<String, TokenError> {
        self.mint_user_as(user, name, ttl, false)
    }

    /// A user token for `user`, signed in through the app backend (`signed_in`) or a
    /// guest, valid for `ttl`.
    pub fn mint_user_as(
        &self,
        user: &UserId,
        name: &str,
        ttl: Duration,
        signed_in: bool,
    ) -> Result<String, TokenError> {
        let iat = now_secs();
        let claims = UserClaims {
            sub: user.clone(),
            name: name.to_owned(),
            kind: TokenKind::User,
            signed_in,
            iat,
            exp: iat + ttl.as_secs().max(1),
            iss: ISSUER.to_owned(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &self.encoding)
            .map_err(|e| TokenError::Key(e.to_string()))
    }

    /// A one-time sign-in link for `user`, valid for `ttl`: the token and its claims.
    pub fn mint_sign_in_link(
        &self,
        user: &UserId,
        ttl: Duration,
    ) -> Result<(String, SignInLinkClaims), TokenError> {
        let mut jti = [0u8; 16];
        aws_lc_rs::rand::fill(&mut jti).map_err(|e| TokenError::Key(e.to_string()))?;
        let iat = now_secs();
        let claims = SignInLinkClaims {
            sub: user.clone(),
            kind: TokenKind::SignInLink,
            jti: jti.iter().map(|b| format!("{b:02x}")).collect(),
            iat,
            exp: iat + ttl.as_secs().max(1),
            iss: ISSUER.to_owned(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &self.encoding)
            .map_err(|e| TokenError::Key(e.to_string()))?;
        Ok((token, claims))
    }

    /// A control token for SFU nodes' gRPC, valid for `ttl`.
    pub fn mint_control(&self, ttl: Duration) -> Result<String, TokenError> {
        let iat = now_secs();
        let claims = ControlClaims {
            sub: CONTROL_SUBJECT.to_owned(),
            kind: TokenKind::Control,
            iat,
            exp: iat + ttl.as_secs().max(1),
            iss: ISSUER.to_owned(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &self.encoding)
            .map_err(|e| TokenError::Key(e.to_string()))
    }

    /// A verifier for the tokens this issuer mints.
    pub fn verifier(&self) -> Result<TokenVerifier, TokenError> {
        TokenVerifier::from_public_key(&self.public_key)
    }
}

/// Verifies room tokens. Held by every SFU.
#[derive(Clone)]
pub struct TokenVerifier {
    decoding: DecodingKey,
    validation: Validation,
}

impl TokenVerifier {
    /// From the raw 32-byte Ed25519 public key.
    pub fn from_public_key(raw: &[u8]) -> Result<Self, TokenError> {
        if raw.len() != 32 {
            return Err(TokenError::Key(format!(
                "an Ed25519 public key has 32 bytes, not {}",
                raw.len()
            )));
        }
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = 5;
        Ok(Self {
            decoding: DecodingKey::from_ed_der(raw),
            validation,
        })
    }

    /// Check signature, issuer and expiry; return the claims.
    pub fn verify(&self, token: &str) -> Result<RoomClaims, TokenError> {
        self.decode(token)
    }

    /// Check a user token: signature, issuer, expiry and kind.
    pub fn verify_user(&self, token: &str) -> Result<UserClaims, TokenError> {
        let claims: UserClaims = self.decode(token)?;
        if claims.kind != TokenKind::User {
            return Err(TokenError::Malformed("not a user token".into()));
        }
        Ok(claims)
    }

    /// Check a sign-in link: signature, issuer, expiry and kind (not whether it was used).
    pub fn verify_sign_in_link(&self, token: &str) -> Result<SignInLinkClaims, TokenError> {
        let claims: SignInLinkClaims = self.decode(token)?;
        if claims.kind != TokenKind::SignInLink {
            return Err(TokenError::Malformed("not a sign-in link".into()));
        }
        Ok(claims)
    }

    /// Check a control token: signature, issuer, expiry, kind and subject.
    pub fn verify_control(&self, token: &str) -> Result<ControlClaims, TokenError> {
        let claims: ControlClaims = self.decode(token)?;
        if claims.kind != TokenKind::Control || claims.sub != CONTROL_SUBJECT {
            return Err(TokenError::Malformed("not a control token".into()));
        }
        Ok(claims)
    }

    fn decode<C: serde::de::DeserializeOwned>(&self, token: &str) -> Result<C, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLarge);
        }
        use jsonwebtoken::errors::ErrorKind;
        jsonwebtoken::decode::<C>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::InvalidSignature => TokenError::BadSignature,
                _ => TokenError::Malformed(e.to_string()),
            })
    }

    /// [`TokenVerifier::verify`], and the token must be for `room`.
    pub fn verify_for_room(&self, token: &str, room: &RoomId) -> Result<RoomClaims, TokenError> {
        let claims = self.verify(token)?;
        if &claims.room != room {
            return Err(TokenError::WrongRoom);
        }
        Ok(claims)
    }
}

/// Hex text of a raw public key, the form used on command lines and in config files.
pub fn public_key_hex(raw: &[u8]) -> String {
    crate::hex::encode(raw)
}

/// Parse the hex form written by [`public_key_hex`].
pub fn public_key_from_hex(hex: &str) -> Result<Vec<u8>, TokenError> {
    crate::hex::decode(hex.trim())
        .ok_or_else(|| TokenError::Key("the public key must be hex digits".into()))
}

fn pem_body(text: &str, label: &str) -> Result<Vec<u8>, TokenError> {
    use base64::Engine;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text
        .find(&begin)
        .ok_or_else(|| TokenError::Key(format!("no '{begin}' line")))?;
    let rest = &text[start + begin.len()..];
    let stop = rest
        .find(&end)
        .ok_or_else(|| TokenError::Key(format!("no '{end}' line")))?;
    let b64: String = rest[..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| TokenError::Key(format!("bad PEM body: {e}")))
}

/// PEM text of a PKCS#8 private key document.
pub fn pkcs8_pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN PRIVATE KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END PRIVATE KEY-----\n");
    out
}

/// A fresh Ed25519 private key as a PKCS#8 v1 document (RFC 8410): the form OpenSSL
/// and other standard tools read (`openssl pkey -in token-key.pem -noout`). v2, with
/// the public key inside, is refused by OpenSSL 3.0 for Ed25519.
pub fn generate_pkcs8() -> Result<Vec<u8>, TokenError> {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    Ed25519KeyPair::generate_pkcs8v1(&rng)
        .map(|doc| doc.as_ref().to_vec())
        .map_err(|e| TokenError::Key(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (RoomId, ParticipantId) {
        (RoomId::random(), ParticipantId::random())
    }

    #[test]
    fn mint_then_verify() {
        let issuer = TokenIssuer::generate().unwrap();
        let verifier = TokenVerifier::from_public_key(issuer.public_key()).unwrap();
        let (room, p) = ids();
        let token = issuer
            .mint(&room, &p, "Ada", Grants::SPEAKER, Duration::from_secs(60))
            .unwrap();
        let claims = verifier.verify_for_room(&token, &room).unwrap();
        assert_eq!(claims.sub, p);
        assert_eq!(claims.grants, Grants::SPEAKER);
        assert_eq!(claims.name, "Ada");
    }

    #[test]
    fn control_tokens_are_their_own_kind() {
        let issuer = TokenIssuer::generate().unwrap();
        let other = TokenIssuer::generate().unwrap();
        let verifier = issuer.verifier().unwrap();
        let control = issuer.mint_control(Duration::from_secs(60)).unwrap();
        assert_eq!(
            verifier.verify_control(&control).unwrap().sub,
            CONTROL_SUBJECT
        );
        // Neither a room nor a user token drives an SFU, and a control token admits nobody.
        let (room, p) = ids();
        let room_token = issuer
            .mint(&room, &p, "Ada", Grants::SPEAKER, Duration::from_secs(60))
            .unwrap();
        let user_token = issuer
            .mint_user(&crate::UserId::random(), "Ada", Duration::from_secs(60))
            .unwrap();
        assert!(verifier.verify_control(&room_token).is_err());
        assert!(verifier.verify_control(&user_token).is_err());
        assert!(verifier.verify(&control).is_err());
        assert!(verifier.verify_user(&control).is_err());
        let forged = other.mint_control(Duration::from_secs(60)).unwrap();
        assert_eq!(
            verifier.verify_control(&forged),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn forged_other_room_and_expired_are_refused() {
        let issuer = TokenIssuer::generate().unwrap();
        let other = TokenIssuer::generate().unwrap();
        let verifier = TokenVerifier::from_public_key(issuer.public_key()).unwrap();
        let (room, p) = ids();
        let forged = other
            .mint(&room, &p, "Eve", Grants::SPEAKER, Duration::from_secs(60))
            .unwrap();
        assert_eq!(verifier.verify(&forged), Err(TokenError::BadSignature));

        let token = issuer
            .mint(&room, &p, "Ada", Grants::SPEAKER, Duration::from_secs(60))
            .unwrap();
        assert_eq!(
            verifier.verify_for_room(&token, &RoomId::random()),
            Err(TokenError::WrongRoom)
        );

        let claims = RoomClaims {
            sub: p,
            room,
            name: "Old".into(),
            grants: Grants::SPEAKER,
            iat: 1,
            exp: 2,
            iss: ISSUER.into(),
        };
        let expired =
            jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &issuer.encoding)
                .unwrap();
        assert_eq!(verifier.verify(&expired), Err(TokenError::Expired));
        assert!(matches!(
            verifier.verify("not.a.token"),
            Err(TokenError::Malformed(_))
        ));
        assert_eq!(
            verifier.verify(&"a".repeat(5000)),
            Err(TokenError::TooLarge)
        );
    }

    #[test]
    fn user_tokens_are_not_room_tokens() {
        let issuer = TokenIssuer::generate().unwrap();
        let verifier = issuer.verifier().unwrap();
        let user = UserId::random();
        let token = issuer
            .mint_user(&user, "Ada", Duration::from_secs(60))
            .unwrap();
        assert_eq!(verifier.verify_user(&token).unwrap().sub, user);
        assert!(
            verifier.verify(&token).is_err(),
            "a user token must not admit into a room"
        );
        let (room, p) = ids();
        let room_token = issuer
            .mint(&room, &p, "Ada", Grants::SPEAKER, Duration::from_secs(60))
            .unwrap();
        assert!(
            verifier.verify_user(&room_token).is_err(),
            "a room token is not a user token"
        );
    }

    #[test]
    fn sign_in_links_are_no_other_token() {
        let issuer = TokenIssuer::generate().unwrap();
        let verifier = issuer.verifier().unwrap();
        let user = UserId::random();
        let (link, claims) = issuer
            .mint_sign_in_link(&user, Duration::from_secs(60))
            .unwrap();
        let (_, other) = issuer
            .mint_sign_in_link(&user, Duration::from_secs(60))
            .unwrap();
        assert_ne!(claims.jti, other.jti, "each link has its own id");
        assert_eq!(verifier.verify_sign_in_link(&link).unwrap(), claims);
        assert!(
            verifier.verify_user(&link).is_err(),
            "a link is not a user token"
        );
        assert!(
            verifier.verify(&link).is_err(),
            "a link admits into no room"
        );
        let user_token = issuer.mint_user_as(&user, "Ada", Duration::from_secs(60), true);
        assert!(
            verifier.verify_sign_in_link(&user_token.unwrap()).is_err(),
            "a user token is not a link"
        );
        let stranger = TokenIssuer::generate().unwrap();
        let (forged, _) = stranger
            .mint_sign_in_link(&user, Duration::from_secs(60))
            .unwrap();
        assert_eq!(
            verifier.verify_sign_in_link(&forged),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn old_v2_key_files_still_load() {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let v2 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let issuer = TokenIssuer::from_pem(pkcs8_pem(v2.as_ref()).as_bytes()).unwrap();
        let (room, p) = ids();
        let token = issuer
            .mint(&room, &p, "Ada", Grants::SPEAKER, Duration::from_secs(60))
            .unwrap();
        assert!(issuer.verifier().unwrap().verify(&token).is_ok());
        // A v1 document is the 48 bytes of RFC 8410: no public key inside.
        assert_eq!(generate_pkcs8().unwrap().len(), 48);
    }

    #[test]
    fn pem_round_trip() {
        let der = generate_pkcs8().unwrap();
        let issuer = TokenIssuer::from_pem(pkcs8_pem(&der).as_bytes()).unwrap();
        let hex = public_key_hex(issuer.public_key());
        assert_eq!(public_key_from_hex(&hex).unwrap(), issuer.public_key());
    }
}
