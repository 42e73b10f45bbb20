//! Newtype ids. Every id that arrives from outside is parsed here, so that code past
//! the edge never sees an id that is empty, too long or unsafe to put in a URL.

use std::fmt;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Longest id accepted from a client.
pub const MAX_ID_LEN: usize = 64;

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// The id is empty.
    #[error("the id is empty")]
    Empty,
    /// The id is longer than [`MAX_ID_LEN`].
    #[error("the id is longer than {MAX_ID_LEN} characters")]
    TooLong,
    /// The id holds a character other than ASCII letters, digits, `-` and `_`.
    #[error("the id may only hold letters, digits, '-' and '_'")]
    BadCharacter,
}

fn validate(s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if s.len() > MAX_ID_LEN {
        return Err(IdError::TooLong);
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(IdError::BadCharacter);
    }
    Ok(())
}

/// A random id of `len` characters from an alphabet without look-alikes (no 0/o, 1/l).
fn random_id(prefix: &str, len: usize) -> String {
    const ALPHABET: &[u8] = b"23456789abcdefghijkmnpqrstuvwxyz";
    let mut rng = rand::rng();
    let mut s = String::with_capacity(prefix.len() + len);
    s.push_str(prefix);
    for _ in 0..len {
        s.push(ALPHABET[rng.random_range(0..ALPHABET.len())] as char);
    }
    s
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $len:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Parse an id received from outside.
            pub fn parse(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                validate(&s)?;
                Ok(Self(s))
            }

            /// A fresh random id.
            pub fn random() -> Self {
                Self(random_id($prefix, $len))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }
    };
}

id_type!(
    /// A voice room. Also the path of its link: `/r/<room>`.
    RoomId, "", 10
);
id_type!(
    /// One participant's presence in one room (a new one for every join).
    ParticipantId, "p_", 12
);
id_type!(
    /// An SFU or signaling node.
    NodeId, "n_", 8
);
id_type!(
    /// A user: a guest with a display name, or an account with a handle.
    UserId, "u_", 12
);
id_type!(
    /// A group chat (a room belongs to one).
    GroupId, "g_", 10
);
id_type!(
    /// A 1:1 call (its record keeps the id).
    CallId, "c_", 12
);
id_type!(
    /// One web session (a tab): what its sealed state is bound to (120 random bits).
    SessionId, "s_", 24
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_parse_back() {
        let id = RoomId::random();
        assert_eq!(RoomId::parse(id.as_str()), Ok(id));
        assert!(ParticipantId::random().as_str().starts_with("p_"));
    }

    #[test]
    fn bad_ids_are_refused() {
        assert_eq!(RoomId::parse(""), Err(IdError::Empty));
        assert_eq!(RoomId::parse("a/b"), Err(IdError::BadCharacter));
        assert_eq!(RoomId::parse("x".repeat(65)), Err(IdError::TooLong));
        let json: Result<RoomId, _> = serde_json::from_str("\"../etc\"");
        assert!(json.is_err());
    }
}
