//! The group chat beside each room, as clients see it: messages, their limits, and the
//! unread counts of an account's groups. Wire frames are in `signal` (`chat_*`).

use serde::{Deserialize, Serialize};

use crate::{RoomId, UserId};

/// Most characters in one message (as Discord).
pub const MAX_MESSAGE_CHARS: usize = 2000;
/// Messages in a page of history when the request does not say.
pub const PAGE: usize = 50;
/// Most messages in one page of history.
pub const MAX_PAGE: usize = 100;
/// Unread messages are counted up to this many ("99+" beyond).
pub const MAX_UNREAD: u32 = 99;

/// One message of a group chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Its place in the chat: 1, 2, 3, ... (never reused; a deleted one keeps it).
    pub seq: u64,
    /// Who wrote it.
    pub author: UserId,
    /// The author's display name when it was written.
    pub name: String,
    /// The text (plain text: shown as text, never as HTML). Empty once deleted.
    pub text: String,
    /// When it was sent, unix milliseconds.
    pub sent_at_ms: u64,
    /// When its author last edited it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at_ms: Option<u64>,
    /// Deleted by its author or a moderator (its text and attachment are gone).
    #[serde(default)]
    pub deleted: bool,
    /// A file posted with the text (the text may then be empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<Box<crate::attachments::Attachment>>,
}

/// How many messages of one group chat an account has not read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnreadCount {
    /// The room the group chat belongs to.
    pub room: RoomId,
    /// The group's title.
    pub name: String,
    /// Messages by others after the last one read, deleted ones not counted, up to
    /// [`MAX_UNREAD`] (more: `MAX_UNREAD` + 1, shown "99+").
    pub unread: u32,
    /// The newest message's `seq` (0: none yet).
    pub latest: u64,
}

/// Why a message text is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// Nothing but spaces.
    #[error("a message needs some text")]
    Empty,
    /// Longer than [`MAX_MESSAGE_CHARS`].
    #[error("a message is at most {MAX_MESSAGE_CHARS} characters; this one has {0}")]
    TooLong(usize),
}

/// A message text as kept: spaces at both ends trimmed, control characters other than
/// line breaks and tabs dropped; refused when empty or too long.
pub fn clean_text(text: &str) -> Result<String, TextError> {
    let cleaned: String = text
        .trim()
        .chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .collect();
    let chars = cleaned.chars().count();
    if chars == 0 {
        return Err(TextError::Empty);
    }
    if chars > MAX_MESSAGE_CHARS {
        return Err(TextError::TooLong(chars));
    }
    Ok(cleaned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_trimmed_and_bounded() {
        assert_eq!(clean_text("  hi\u{7}\n there \t").unwrap(), "hi\n there");
        assert_eq!(clean_text(" \n "), Err(TextError::Empty));
        let long = "é".repeat(MAX_MESSAGE_CHARS);
        assert_eq!(
            clean_text(&long).unwrap().chars().count(),
            MAX_MESSAGE_CHARS
        );
        assert_eq!(
            clean_text(&format!("{long}x")),
            Err(TextError::TooLong(MAX_MESSAGE_CHARS + 1))
        );
        // Markup is text like any other: the page shows it as typed.
        assert_eq!(clean_text("<b>x</b>").unwrap(), "<b>x</b>");
    }
}
