//! Property tests of the parsers that take outside input: a client's JSON frame, a
//! display name, a token, a server-API signature. Whatever comes in, each answers with a
//! value or a typed error, never a panic; what the server itself writes parses back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chorus_proto::api_key::ApiKey;
use chorus_proto::signal::{self, ClientMessage, MAX_NAME_CHARS, SeatMode};
use chorus_proto::token::{Grants, TokenIssuer};
use chorus_proto::{ParticipantId, RoomId};
use proptest::prelude::*;

/// Frames shaped like the protocol's, with fields and values from everywhere.
fn frame_like() -> impl Strategy<Value = String> {
    let kinds = prop::sample::select(vec![
        "hello",
        "create_room",
        "join",
        "leave",
        "leave_group",
        "request_seat",
        "lower_hand",
        "leave_seat",
        "grant_seat",
        "revoke_seat",
        "mute",
        "remove",
        "set_moderator",
        "end_room",
        "set_muted",
        "ping",
        "fly",
    ]);
    let keys = prop::sample::select(vec![
        "version",
        "name",
        "user_token",
        "capacity",
        "seats",
        "seat_mode",
        "offer",
        "room",
        "listener",
        "participant",
        "muted",
        "moderator",
        "x",
    ]);
    let values = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map_or(serde_json::Value::Null, serde_json::Value::Number)),
        ".{0,50}".prop_map(serde_json::Value::from),
        Just(serde_json::json!([1, "a"])),
        Just(serde_json::json!({"nested": true})),
    ];
    (kinds, prop::collection::vec((keys, values), 0..6)).prop_map(|(kind, fields)| {
        let mut object = serde_json::Map::new();
        object.insert("type".into(), kind.into());
        for (k, v) in fields {
            object.insert(k.into(), v);
        }
        serde_json::Value::Object(object).to_string()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_text_is_a_message_or_a_typed_error(text in ".{0,300}") {
        let _ = signal::parse_client_frame(&text);
    }

    #[test]
    fn protocol_shaped_frames_never_panic(text in frame_like()) {
        if let Ok(message) = signal::parse_client_frame(&text) {
            // Whatever is accepted writes back to the same message.
            let again = serde_json::to_string(&message).unwrap();
            prop_assert_eq!(signal::parse_client_frame(&again), Ok(message));
        }
    }

    #[test]
    fn names_are_checked_and_stable(name in "\\PC{0,60}|[\\u{200B}-\\u{206F}\\u{0300}-\\u{036F} a-z]{0,60}") {
        if let Ok(clean) = signal::parse_name(&name) {
            prop_assert!(!clean.is_empty());
            prop_assert!(clean.chars().count() <= MAX_NAME_CHARS);
            // Clean names are a fixed point: checking again changes nothing.
            prop_assert_eq!(signal::parse_name(&clean), Ok(clean.clone()));
        }
    }

    #[test]
    fn messages_the_client_builds_round_trip(name in "[A-Za-z ]{1,40}", capacity in any::<Option<i64>>(), seats in any::<Option<i64>>(), offer in ".{0,100}") {
        let message = ClientMessage::CreateRoom { name, capacity, seats, seat_mode: SeatMode::Open, entry: Default::default(), offer };
        let text = serde_json::to_string(&message).unwrap();
        prop_assert_eq!(signal::parse_client_frame(&text), Ok(message));
    }

    #[test]
    fn tokens_from_anywhere_are_refused_not_panicked_on(token in ".{0,600}") {
        let verifier = issuer().verifier().unwrap();
        prop_assert!(verifier.verify(&token).is_err());
        prop_assert!(verifier.verify_user(&token).is_err());
    }

    #[test]
    fn tampered_tokens_are_refused(flip in 0usize..400, bit in 0u8..8) {
        let issuer = issuer();
        let token = issuer
            .mint(&RoomId::random(), &ParticipantId::random(), "Ada", Grants::SPEAKER, Duration::from_secs(60))
            .unwrap();
        let mut bytes = token.clone().into_bytes();
        let i = flip % bytes.len();
        bytes[i] ^= 1 << bit;
        if let Ok(tampered) = String::from_utf8(bytes)
            && tampered != token
            && let Ok(claims) = issuer.verifier().unwrap().verify(&tampered)
        {
            // Base64 has slack bits: a flip there decodes to the very same token.
            let original = issuer.verifier().unwrap().verify(&token).unwrap();
            prop_assert_eq!(claims, original);
        }
    }

    #[test]
    fn signature_headers_from_anywhere_never_panic(header in ".{0,200}", path in "/[ -~]{0,60}") {
        let key = ApiKey { key: "ck_test".into(), secret: "00".repeat(32) };
        let _ = key.verify(Some(&header), "GET", &path, b"");
        let fielded = format!("Chorus {header}");
        let _ = key.verify(Some(&fielded), "GET", &path, b"");
    }

    #[test]
    fn signed_requests_verify_and_any_change_is_refused(path in "/[!-~]{0,60}", body in prop::collection::vec(any::<u8>(), 0..200), other in "/[!-~]{0,60}") {
        let key = ApiKey::generate().unwrap();
        let header = key.sign("POST", &path, &body);
        prop_assert!(key.verify(Some(&header), "POST", &path, &body).is_ok());
        if other != path {
            prop_assert!(key.verify(Some(&header), "POST", &other, &body).is_err());
        }
    }
}

fn issuer() -> TokenIssuer {
    static KEY: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let der = KEY.get_or_init(|| chorus_proto::token::generate_pkcs8().unwrap());
    TokenIssuer::from_pkcs8_der(der).unwrap()
}
