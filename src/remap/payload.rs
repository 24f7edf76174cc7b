//! Payload columns (`dag_run.conf`, `xcom.value`) turned into the canonical pair of a JSON column
//! and a raw-bytes column, row by row and column-wise over Arrow.
//!
//! This is what the exporter's remap stage runs for the rules `json_from_pickle`,
//! `json_from_bytes` and `undecoded_bytes`: JSON when a payload decodes, else the original bytes,
//! so nothing is lost and nothing is executed.

use arrow::array::{Array, BinaryArray, BinaryBuilder, StringArray, StringBuilder};
use serde_json::error::Category;

use super::error::DecodeError;
use super::pickle::pickle_to_json;

/// The first byte of every pickle of protocol 2 or later (the PROTO opcode).
const PICKLE_PROTO: u8 = 0x80;

/// How a payload column is stored, which picks the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadKind {
    /// A pickle (`dag_run.conf` before Airflow 3): rule `json_from_pickle`.
    Pickle,
    /// Airflow 1.10/2.x `xcom.value` bytes, JSON text or a pickle: rule `json_from_bytes`.
    XCom,
}

impl PayloadKind {
    /// Decodes one payload to JSON text.
    ///
    /// # Errors
    ///
    /// [`DecodeError`] when the payload has no JSON form the decoder accepts.
    pub fn decode(self, bytes: &[u8]) -> Result<String, DecodeError> {
        match self {
            PayloadKind::Pickle => pickle_to_json(bytes),
            PayloadKind::XCom => xcom_bytes_to_json(bytes),
        }
    }
}

/// Decodes an Airflow 1.10/2.x `xcom.value` to strict JSON text.
///
/// Bytes starting with 0x80 are a pickle (`enable_xcom_pickling`) and go to [`pickle_to_json`].
/// Anything else is taken as UTF-8 JSON from `XComEncoder`: the bare `NaN`, `Infinity` and
/// `-Infinity` Python writes become the strings `"NaN"`, `"Infinity"`, `"-Infinity"` (as Airflow
/// 3.2's XCom migration does) and the text is otherwise kept as written. Text that is not JSON is
/// tried as a protocol 0 or 1 pickle, which Airflow 1.10 on Python 2 wrote with pickling on (its
/// default there).
///
/// # Errors
///
/// [`DecodeError::Empty`] for no bytes; the pickle decoder's error for pickles;
/// [`DecodeError::InvalidJson`] for text that is neither JSON nor a pickle.
///
/// # Examples
///
/// ```
/// use contrail::remap::xcom_bytes_to_json;
///
/// let stored = br#"{"loss": NaN, "best": [1.5, Infinity]}"#;
/// assert_eq!(
///     xcom_bytes_to_json(stored).unwrap(),
///     r#"{"loss": "NaN", "best": [1.5, "Infinity"]}"#
/// );
/// ```
pub fn xcom_bytes_to_json(bytes: &[u8]) -> Result<String, DecodeError> {
    match bytes.first() {
        None => Err(DecodeError::Empty),
        Some(&PICKLE_PROTO) => pickle_to_json(bytes),
        Some(_) => json_text(bytes).or_else(|error| pickle_to_json(bytes).map_err(|_| error)),
    }
}

/// Validates JSON text after quoting Python's non-finite number tokens.
fn json_text(bytes: &[u8]) -> Result<String, DecodeError> {
    let text = std::str::from_utf8(bytes).map_err(|error| {
        let before = &bytes[..error.valid_up_to()];
        DecodeError::InvalidJson {
            reason: "not UTF-8",
            line: before.iter().filter(|b| **b == b'\n').count() + 1,
            column: before.len()
                - before
                    .iter()
                    .rposition(|b| *b == b'\n')
                    .map_or(0, |i| i + 1)
                + 1,
        }
    })?;
    let text = quote_non_finite(text);
    serde_json::from_str::<serde::de::IgnoredAny>(&text).map_err(|error| {
        DecodeError::InvalidJson {
            reason: match error.classify() {
                Category::Syntax => "syntax error",
                Category::Eof => "unexpected end",
                Category::Data | Category::Io => "invalid JSON",
            },
            line: error.line(),
            column: error.column(),
        }
    })?;
    Ok(text)
}

/// Replaces the bare tokens `NaN`, `Infinity` and `-Infinity` outside strings by quoted strings.
/// Everything else is copied, so invalid text stays invalid.
fn quote_non_finite(text: &str) -> String {
    const TOKENS: [&str; 3] = ["NaN", "-Infinity", "Infinity"];
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if c == '"' {
            let end = string_end(rest);
            out.push_str(&rest[..end]);
            rest = &rest[end..];
        } else if let Some(token) = TOKENS.iter().find(|token| rest.starts_with(**token)) {
            out.push('"');
            out.push_str(token);
            out.push('"');
            rest = &rest[token.len()..];
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// The byte length of the JSON string starting at `text[0] == '"'`, closing quote included (or
/// all of `text` when it is unterminated).
fn string_end(text: &str) -> usize {
    let bytes = text.as_bytes();
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// The canonical pair for one payload: `(json, None)` when it decodes, `(None, raw)` with the
/// original bytes when it does not, `(None, None)` for NULL.
pub fn split_payload(kind: PayloadKind, bytes: Option<&[u8]>) -> (Option<String>, Option<Vec<u8>>) {
    match bytes {
        None => (None, None),
        Some(bytes) => match kind.decode(bytes) {
            Ok(json) => (Some(json), None),
            Err(_) => (None, Some(bytes.to_vec())),
        },
    }
}

/// [`split_payload`] over a column: the JSON column (rules `json_from_pickle`, `json_from_bytes`)
/// and the raw column (rule `undecoded_bytes`), both as long as `values`. In each row at most
/// one of the two is set; both are NULL where `values` is.
pub fn split_payload_column(kind: PayloadKind, values: &BinaryArray) -> (StringArray, BinaryArray) {
    let mut json = StringBuilder::with_capacity(values.len(), values.value_data().len());
    let mut raw = BinaryBuilder::with_capacity(values.len(), 0);
    for value in values {
        match value.map(|bytes| (kind.decode(bytes), bytes)) {
            None => {
                json.append_null();
                raw.append_null();
            }
            Some((Ok(text), _)) => {
                json.append_value(text);
                raw.append_null();
            }
            Some((Err(_), bytes)) => {
                json.append_null();
                raw.append_value(bytes);
            }
        }
    }
    (json.finish(), raw.finish())
}
