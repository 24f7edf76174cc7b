//! Timestamps: PostgreSQL sends microseconds since 2000-01-01; Arrow wants them since 1970.

use crate::catalog::PG_EPOCH_MICROS;
use crate::source::decode::DecodeError;

/// A `timestamp` or `timestamptz` as microseconds since the Unix epoch, UTC. PostgreSQL's
/// `infinity` / `-infinity` saturate to the extremes rather than overflow.
pub(super) fn timestamp_micros(bytes: &[u8]) -> Result<i64, DecodeError> {
    let Ok(raw) = <[u8; 8]>::try_from(bytes) else {
        return Err(DecodeError::new(format!(
            "{} bytes is not a valid timestamp",
            bytes.len()
        )));
    };
    Ok(i64::from_be_bytes(raw).saturating_add(PG_EPOCH_MICROS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_are_shifted() {
        assert_eq!(
            timestamp_micros(&0i64.to_be_bytes()).unwrap(),
            PG_EPOCH_MICROS
        );
        // 2024-03-01T00:00:00Z
        let micros = 1_709_251_200_000_000i64;
        assert_eq!(
            timestamp_micros(&(micros - PG_EPOCH_MICROS).to_be_bytes()).unwrap(),
            micros
        );
        assert_eq!(timestamp_micros(&i64::MAX.to_be_bytes()).unwrap(), i64::MAX);
        assert!(timestamp_micros(&[0; 4]).is_err());
    }
}
