//! Why a payload could not be decoded to JSON.
//!
//! Payloads (dag run confs, XComs) may hold secrets, so no variant ever carries a value from the
//! payload: only byte offsets, opcodes, and the dotted name of a Python global when it looks like
//! one.

/// Why a payload could not be turned into JSON. The exporter keeps the original bytes instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Zero bytes: neither a pickle nor JSON text.
    #[error("the payload is empty")]
    Empty,

    /// The pickle stops in the middle of an opcode or has no STOP.
    #[error("the pickle ends early at byte {offset}")]
    Truncated {
        /// Where more bytes were needed.
        offset: usize,
    },

    /// The pickle breaks the pickle machine's rules (stack underflow, unknown memo slot, bad text).
    #[error("malformed pickle at byte {offset}: {reason}")]
    Malformed {
        /// The start of the offending opcode.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },

    /// An opcode the restricted decoder refuses (object construction, persistent ids, buffers).
    #[error("unsupported pickle opcode {name} ({opcode:#04x}) at byte {offset}")]
    UnsupportedOpcode {
        /// The opcode byte.
        opcode: u8,
        /// Its name in Python's `pickletools`.
        name: &'static str,
        /// Where it starts.
        offset: usize,
    },

    /// A reference to a Python class or function outside the allow-list (set, frozenset,
    /// OrderedDict). Nothing is ever imported or called.
    #[error("the pickle refers to the Python global {global}, which contrail does not decode")]
    UnsupportedGlobal {
        /// `module.name`, or `<unprintable>` when it does not look like a Python name.
        global: String,
    },

    /// The value decodes but has no JSON form (bytes, a tuple dict key, a cycle, a lone surrogate).
    #[error("the value holds {what}, which has no JSON form")]
    NotJson {
        /// What was found.
        what: &'static str,
    },

    /// Decoding would produce an unreasonable amount of output or nesting.
    #[error("the value is too large to decode: {reason}")]
    TooLarge {
        /// Which limit was hit.
        reason: &'static str,
    },

    /// Non-pickle bytes that are not UTF-8 JSON text.
    #[error(
        "the payload is neither a pickle nor JSON text ({reason} at line {line}, column {column})"
    )]
    InvalidJson {
        /// The kind of problem.
        reason: &'static str,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
    },
}

/// `module.name` if both parts look like Python identifiers, else a placeholder: the bytes come
/// from the payload and must not smuggle its content into logs.
pub(crate) fn describe_global(module: &[u8], name: &[u8]) -> String {
    const MAX_LEN: usize = 120;
    let dotted = |part: &[u8]| {
        !part.is_empty()
            && part
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'.')
    };
    if dotted(module) && dotted(name) && module.len() + name.len() < MAX_LEN {
        format!(
            "{}.{}",
            String::from_utf8_lossy(module),
            String::from_utf8_lossy(name)
        )
    } else {
        "<unprintable>".to_owned()
    }
}
