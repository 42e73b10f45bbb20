//! Just enough STUN parsing to route a connectivity check from an address we have not
//! seen yet: read the USERNAME attribute ("<our ufrag>:<their ufrag>") and look up the
//! participant by our ufrag. str0m then verifies the message integrity (`Rtc::accepts`).

const HEADER_LEN: usize = 20;
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
const ATTR_USERNAME: u16 = 0x0006;

/// Our (local) ufrag from a STUN message's USERNAME, if it has one.
pub(crate) fn local_ufrag(datagram: &[u8]) -> Option<&str> {
    if datagram.len() < HEADER_LEN || datagram[4..8] != MAGIC_COOKIE || datagram[0] & 0xC0 != 0 {
        return None;
    }
    let body_len = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
    let body = datagram.get(HEADER_LEN..HEADER_LEN + body_len)?;
    let mut at = 0;
    while at + 4 <= body.len() {
        let kind = u16::from_be_bytes([body[at], body[at + 1]]);
        let len = usize::from(u16::from_be_bytes([body[at + 2], body[at + 3]]));
        let value = body.get(at + 4..at + 4 + len)?;
        if kind == ATTR_USERNAME {
            let username = std::str::from_utf8(value).ok()?;
            return username.split(':').next();
        }
        // Attributes are padded to 4 bytes.
        at += 4 + len.div_ceil(4) * 4;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_username_and_survives_garbage() {
        let mut m = vec![0x00, 0x01, 0x00, 0x0c, 0x21, 0x12, 0xA4, 0x42];
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&[0x00, 0x06, 0x00, 0x07]);
        m.extend_from_slice(b"abc:xyz\0");
        assert_eq!(local_ufrag(&m), Some("abc"));
        assert_eq!(local_ufrag(&m[..25]), None);
        assert_eq!(local_ufrag(&[]), None);
        let mut bad = m.clone();
        bad[3] = 0xff;
        assert_eq!(local_ufrag(&bad), None);
    }
}
