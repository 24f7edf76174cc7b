//! Writing the machine's values as JSON, the way `json.dumps` would, within size limits.

use std::collections::HashSet;

use super::machine::{Id, Machine, Node};
use crate::remap::error::DecodeError;
use crate::remap::json::{float_name, write_float, write_float_or_name, write_str};

/// Deepest nesting written; CPython's `json.dumps` stops near 1000 (its recursion limit).
const MAX_DEPTH: usize = 512;
/// Output is capped at this many bytes plus [`MAX_EXPANSION`] times the pickle's size, so a
/// pickle that references one list from many places cannot expand without bound.
const MIN_OUTPUT_LIMIT: usize = 1 << 20;
/// See [`MIN_OUTPUT_LIMIT`].
const MAX_EXPANSION: usize = 64;

/// Decodes a pickle (protocol 0 to 5) into compact JSON text without executing anything.
///
/// Ints that fit in 64 bits (signed or unsigned) are JSON numbers, larger ones decimal strings;
/// NaN and the infinities are the strings `"NaN"`, `"Infinity"`, `"-Infinity"`; tuples and sets
/// are arrays; dict keys that are int, float, bool or None become the text `json.dumps` gives
/// them. Dict order is the pickle's order.
///
/// # Errors
///
/// [`DecodeError`] when the bytes are not a well-formed pickle, use an opcode or global outside
/// the JSON-like subset, or hold a value with no JSON form. The error never contains payload values.
///
/// # Examples
///
/// ```
/// use contrail::remap::{DecodeError, pickle_to_json};
///
/// // What Airflow 2.x stores in dag_run.conf when a run has no conf.
/// assert_eq!(pickle_to_json(b"\x80\x05}\x94.").unwrap(), "{}");
/// // os.system("...") as a pickle: refused at the GLOBAL opcode, never called.
/// let evil = b"cposix\nsystem\n(S'touch /tmp/x'\ntR.";
/// assert!(matches!(pickle_to_json(evil), Err(DecodeError::UnsupportedGlobal { .. })));
/// ```
pub fn pickle_to_json(bytes: &[u8]) -> Result<String, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    let (nodes, root) = Machine::new(bytes).run()?;
    let mut emitter = Emitter {
        nodes: &nodes,
        out: String::with_capacity(bytes.len()),
        open: vec![false; nodes.len()],
        limit: MIN_OUTPUT_LIMIT.saturating_add(bytes.len().saturating_mul(MAX_EXPANSION)),
    };
    emitter.value(root, 0)?;
    Ok(emitter.out)
}

/// Writes the decoded value as compact JSON, refusing cycles and unbounded expansion.
struct Emitter<'a> {
    nodes: &'a [Node],
    out: String,
    /// Containers being written, to detect a container inside itself.
    open: Vec<bool>,
    limit: usize,
}

impl Emitter<'_> {
    fn value(&mut self, id: Id, depth: usize) -> Result<(), DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::TooLarge {
                reason: "nesting deeper than 512",
            });
        }
        if self.out.len() > self.limit {
            return Err(DecodeError::TooLarge {
                reason: "JSON more than 64 times the size of the pickle",
            });
        }
        let nodes = self.nodes;
        match &nodes[id] {
            Node::None => self.out.push_str("null"),
            Node::Bool(value) => self.out.push_str(if *value { "true" } else { "false" }),
            Node::Int(value) => {
                if (i128::from(i64::MIN)..=i128::from(u64::MAX)).contains(value) {
                    self.out.push_str(&value.to_string());
                } else {
                    write_str(&mut self.out, &value.to_string(), false);
                }
            }
            Node::BigInt(text) => write_str(&mut self.out, text, false),
            Node::Float(value) => write_float_or_name(&mut self.out, *value),
            Node::Str(text) => write_str(&mut self.out, text, false),
            Node::List(items) | Node::Tuple(items) | Node::Set { items, .. } => {
                self.enter(id)?;
                self.out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    self.value(*item, depth + 1)?;
                }
                self.out.push(']');
                self.open[id] = false;
            }
            Node::Dict(pairs) => {
                self.enter(id)?;
                let mut seen = HashSet::with_capacity(pairs.len());
                self.out.push('{');
                for (i, (key, value)) in pairs.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    let key = self.key(*key)?;
                    write_str(&mut self.out, &key, false);
                    if !seen.insert(key) {
                        return Err(DecodeError::NotJson {
                            what: "two dict keys with the same JSON text (such as 1 and '1')",
                        });
                    }
                    self.out.push(':');
                    self.value(*value, depth + 1)?;
                }
                self.out.push('}');
                self.open[id] = false;
            }
            Node::Callable(_) => {
                return Err(DecodeError::NotJson {
                    what: "a Python class",
                });
            }
        }
        Ok(())
    }

    fn enter(&mut self, id: Id) -> Result<(), DecodeError> {
        if std::mem::replace(&mut self.open[id], true) {
            return Err(DecodeError::NotJson {
                what: "a container that contains itself",
            });
        }
        Ok(())
    }

    /// A dict key as `json.dumps` writes it.
    fn key(&self, id: Id) -> Result<String, DecodeError> {
        Ok(match &self.nodes[id] {
            Node::Str(text) => text.clone(),
            Node::Int(value) => value.to_string(),
            Node::BigInt(text) => text.clone(),
            Node::Float(value) => match float_name(*value) {
                Some(name) => name.to_owned(),
                None => {
                    let mut text = String::new();
                    write_float(&mut text, *value);
                    text
                }
            },
            Node::Bool(value) => (if *value { "true" } else { "false" }).to_owned(),
            Node::None => "null".to_owned(),
            _ => {
                return Err(DecodeError::NotJson {
                    what: "a dict key that is not a str, int, float, bool or None",
                });
            }
        })
    }
}
