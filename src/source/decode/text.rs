//! Text, JSON and UUIDs, all delivered to Arrow as UTF-8 strings.

use std::fmt::Write as _;

use crate::source::decode::DecodeError;

/// UTF-8 text (text, varchar, json).
pub(super) fn utf8(bytes: &[u8]) -> Result<&str, DecodeError> {
    std::str::from_utf8(bytes).map_err(|_| DecodeError::new("text is not valid UTF-8"))
}

/// jsonb: a version byte (1) then the JSON text.
pub(super) fn jsonb(bytes: &[u8]) -> Result<&str, DecodeError> {
    match bytes.split_first() {
        Some((1, json)) => utf8(json),
        Some((version, _)) => Err(DecodeError::new(format!(
            "unknown jsonb format version {version}"
        ))),
        None => Err(DecodeError::new("empty jsonb value")),
    }
}

/// A UUID in its hyphenated lower-case form.
pub(super) fn uuid(bytes: &[u8]) -> Result<String, DecodeError> {
    if bytes.len() != 16 {
        return Err(DecodeError::new(format!(
            "{} bytes is not a valid uuid",
            bytes.len()
        )));
    }
    let mut out = String::with_capacity(36);
    for (i, byte) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        let _ = write!(out, "{byte:02x}");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_json_and_uuid() {
        assert_eq!(utf8("dag_ünï".as_bytes()).unwrap(), "dag_ünï");
        assert!(utf8(&[0xff]).is_err());
        assert_eq!(jsonb(b"\x01{\"a\": 1}").unwrap(), "{\"a\": 1}");
        assert!(jsonb(b"\x02{}").is_err());
        let id = [
            0x01, 0x8e, 0x2b, 0x3c, 0x4d, 0x5e, 0x7f, 0x00, 0x81, 0x92, 0xa3, 0xb4, 0xc5, 0xd6,
            0xe7, 0xf8,
        ];
        assert_eq!(uuid(&id).unwrap(), "018e2b3c-4d5e-7f00-8192-a3b4c5d6e7f8");
        assert!(uuid(&id[..8]).is_err());
    }
}
