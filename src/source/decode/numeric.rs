//! Integers, floats and booleans.

use crate::catalog::WireType;
use crate::source::decode::DecodeError;

/// An integer of any width, widened to i64.
pub(super) fn int(wire: WireType, bytes: &[u8]) -> Result<i64, DecodeError> {
    match (wire, bytes.len()) {
        (WireType::Int2, 2) => Ok(i16::from_be_bytes([bytes[0], bytes[1]]).into()),
        (WireType::Int4, 4) => {
            Ok(i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]).into())
        }
        (WireType::Int8, 8) => {
            let mut b = [0; 8];
            b.copy_from_slice(bytes);
            Ok(i64::from_be_bytes(b))
        }
        (w, n) => Err(DecodeError::new(format!(
            "{n} bytes is not a valid {w:?} value"
        ))),
    }
}

/// A float, or an integer read as a float.
pub(super) fn float(wire: WireType, bytes: &[u8]) -> Result<f64, DecodeError> {
    match (wire, bytes.len()) {
        (WireType::Float4, 4) => {
            Ok(f32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]).into())
        }
        (WireType::Float8, 8) => {
            let mut b = [0; 8];
            b.copy_from_slice(bytes);
            Ok(f64::from_be_bytes(b))
        }
        (WireType::Int2 | WireType::Int4 | WireType::Int8, _) => Ok(int(wire, bytes)? as f64),
        (w, n) => Err(DecodeError::new(format!(
            "{n} bytes is not a valid {w:?} value"
        ))),
    }
}

/// A boolean: one byte.
pub(super) fn boolean(bytes: &[u8]) -> Result<bool, DecodeError> {
    match bytes {
        [0] => Ok(false),
        [1] => Ok(true),
        _ => Err(DecodeError::new("not a valid boolean")),
    }
}

/// The error for a value that does not fit the canonical integer width.
pub(super) fn range(ty: &str) -> DecodeError {
    DecodeError::new(format!("value out of range for {ty}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_of_every_width() {
        assert_eq!(int(WireType::Int2, &[0xff, 0xfe]).unwrap(), -2);
        assert_eq!(int(WireType::Int4, &[0, 0, 1, 0]).unwrap(), 256);
        assert_eq!(
            int(WireType::Int8, &[0x80, 0, 0, 0, 0, 0, 0, 0]).unwrap(),
            i64::MIN
        );
        assert!(int(WireType::Int4, &[0, 1]).is_err());
    }

    #[test]
    fn floats_and_booleans() {
        assert_eq!(float(WireType::Float8, &1.5f64.to_be_bytes()).unwrap(), 1.5);
        assert_eq!(
            float(WireType::Float4, &0.25f32.to_be_bytes()).unwrap(),
            0.25
        );
        assert_eq!(float(WireType::Int4, &[0, 0, 0, 7]).unwrap(), 7.0);
        assert!(float(WireType::Float8, &[0; 3]).is_err());
        assert!(boolean(&[1]).unwrap() && !boolean(&[0]).unwrap());
        assert!(boolean(&[2]).is_err());
    }
}
