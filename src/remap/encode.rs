//! The reverse direction, for importers and fixture generators: a JSON value as the bytes Airflow
//! 2.x stores, a protocol-5 pickle for `dag_run.conf` and XComEncoder JSON for `xcom.value`.
//!
//! For the values JSON can hold, both match CPython byte for byte (checked against
//! `pickle.dumps(json.loads(j), protocol=5)` and `json.dumps(json.loads(j)).encode()` in
//! `testdata/encode.tsv`), except that a pickle larger than 64 KiB is one frame where CPython
//! writes several; `pickle.loads` reads both the same.

use std::collections::HashMap;

use serde_json::{Map, Number, Value};

use super::json::{write_float, write_str};

/// CPython's pickler writes list items and dict entries in batches of this many.
const BATCH_SIZE: usize = 1000;
/// CPython leaves out the FRAME header when the frame is shorter than this.
const FRAME_SIZE_MIN: usize = 4;

/// Encodes a JSON value as a protocol-5 pickle of the matching Python value (dict, list, str,
/// int, float, bool, None): what Airflow 2.x stores in `dag_run.conf`.
///
/// Dict keys are memoized and repeated keys referenced, as `json.loads` shares equal keys. A
/// number that `serde_json` holds as a float (any number with a fraction or exponent, and
/// integers beyond 64 bits) is pickled as a Python float.
pub fn json_to_pickle(value: &Value) -> Vec<u8> {
    let mut pickler = Pickler::default();
    pickler.value(value);
    pickler.body.push(b'.');
    let mut out = Vec::with_capacity(pickler.body.len() + 11);
    out.extend([0x80, 5]);
    if pickler.body.len() >= FRAME_SIZE_MIN {
        out.push(0x95);
        out.extend((pickler.body.len() as u64).to_le_bytes());
    }
    out.extend(pickler.body);
    out
}

/// Encodes a JSON value as Airflow 2.x's `XComEncoder` stores it in `xcom.value`:
/// `json.dumps(value).encode("utf-8")`, with Python's `", "` and `": "` separators and
/// non-ASCII characters as `\u` escapes.
pub fn json_to_xcom_bytes(value: &Value) -> Vec<u8> {
    let mut out = String::new();
    write_python_json(&mut out, value);
    out.into_bytes()
}

fn write_python_json(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(value) => out.push_str(if *value { "true" } else { "false" }),
        Value::Number(number) => write_number(out, number),
        Value::String(text) => write_str(out, text, true),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_python_json(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_str(out, key, true);
                out.push_str(": ");
                write_python_json(out, item);
            }
            out.push('}');
        }
    }
}

fn write_number(out: &mut String, number: &Number) {
    if let Some(value) = number.as_i64() {
        out.push_str(&value.to_string());
    } else if let Some(value) = number.as_u64() {
        out.push_str(&value.to_string());
    } else if let Some(value) = number.as_f64() {
        write_float(out, value);
    }
}

/// The body of a pickle (everything after PROTO and FRAME), written the way CPython's C pickler
/// writes the same Python value.
#[derive(Default)]
struct Pickler {
    body: Vec<u8>,
    memo_len: u32,
    /// Dict keys already written, by memo index.
    keys: HashMap<String, u32>,
}

impl Pickler {
    fn value(&mut self, value: &Value) {
        match value {
            Value::Null => self.body.push(b'N'),
            Value::Bool(true) => self.body.push(0x88),
            Value::Bool(false) => self.body.push(0x89),
            Value::Number(number) => self.number(number),
            Value::String(text) => self.string(text),
            Value::Array(items) => self.list(items),
            Value::Object(map) => self.dict(map),
        }
    }

    fn memoize(&mut self) -> u32 {
        self.body.push(0x94);
        self.memo_len += 1;
        self.memo_len - 1
    }

    fn number(&mut self, number: &Number) {
        if let Some(value) = number.as_i64() {
            self.int(value.into());
        } else if let Some(value) = number.as_u64() {
            self.int(value.into());
        } else if let Some(value) = number.as_f64() {
            self.body.push(b'G');
            self.body.extend(value.to_be_bytes());
        }
    }

    fn int(&mut self, value: i128) {
        match value {
            0..=0xff => self.body.extend([b'K', value as u8]),
            0x100..=0xffff => {
                self.body.push(b'M');
                self.body.extend((value as u16).to_le_bytes());
            }
            _ if i32::try_from(value).is_ok() => {
                self.body.push(b'J');
                self.body.extend((value as i32).to_le_bytes());
            }
            _ => {
                // LONG1: the shortest little-endian two's complement, as CPython computes it.
                let bits = 128 - value.unsigned_abs().leading_zeros() as usize;
                let mut len = bits / 8 + 1;
                let bytes = value.to_le_bytes();
                if value < 0 && len > 1 && bytes[len - 1] == 0xff && bytes[len - 2] & 0x80 != 0 {
                    len -= 1;
                }
                self.body.extend([0x8a, len as u8]);
                self.body.extend(&bytes[..len]);
            }
        }
    }

    fn string(&mut self, text: &str) {
        let len = text.len();
        if len <= 0xff {
            self.body.extend([0x8c, len as u8]);
        } else if let Ok(len) = u32::try_from(len) {
            self.body.push(b'X');
            self.body.extend(len.to_le_bytes());
        } else {
            self.body.push(0x8d);
            self.body.extend((len as u64).to_le_bytes());
        }
        self.body.extend(text.as_bytes());
        self.memoize();
    }

    fn key(&mut self, key: &str) {
        match self.keys.get(key) {
            Some(&index) => match u8::try_from(index) {
                Ok(index) => self.body.extend([b'h', index]),
                Err(_) => {
                    self.body.push(b'j');
                    self.body.extend(index.to_le_bytes());
                }
            },
            None => {
                self.string(key);
                self.keys.insert(key.to_owned(), self.memo_len - 1);
            }
        }
    }

    fn list(&mut self, items: &[Value]) {
        self.body.push(b']');
        self.memoize();
        if let [item] = items {
            self.value(item);
            self.body.push(b'a');
            return;
        }
        for batch in items.chunks(BATCH_SIZE) {
            self.body.push(b'(');
            for item in batch {
                self.value(item);
            }
            self.body.push(b'e');
        }
    }

    fn dict(&mut self, map: &Map<String, Value>) {
        self.body.push(b'}');
        self.memoize();
        if map.len() == 1 {
            for (key, item) in map {
                self.key(key);
                self.value(item);
            }
            self.body.push(b's');
            return;
        }
        if map.is_empty() {
            return;
        }
        // CPython's do-while writes one more, empty, batch when the size is a multiple of
        // BATCH_SIZE.
        let mut entries = map.iter();
        loop {
            self.body.push(b'(');
            let mut written = 0;
            for (key, item) in entries.by_ref().take(BATCH_SIZE) {
                self.key(key);
                self.value(item);
                written += 1;
            }
            self.body.push(b'u');
            if written < BATCH_SIZE {
                break;
            }
        }
    }
}
