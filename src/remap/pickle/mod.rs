//! A restricted Python pickle decoder: protocols 0–5, JSON-like builtins only, nothing executed.
//!
//! Python's unpickler is a small stack machine whose GLOBAL and REDUCE opcodes import and call
//! arbitrary code. This one runs the same machine over plain data (None, bool, int, float, str,
//! list, tuple, dict, set, frozenset) and knows exactly three callables, `set`, `frozenset` and
//! `collections.OrderedDict`, which it builds itself; any other global, and every opcode that
//! builds objects (NEWOBJ, BUILD, INST, OBJ, extensions, persistent ids, out-of-band buffers), is
//! refused. It owns the pickle format only; which column is a pickle is the caller's business.
//!
//! Python 2 `str` (STRING, BINSTRING, SHORT_BINSTRING) decodes as latin-1 text, like
//! `pickle.loads(data, encoding="latin1")` in Airflow. Python 3 `bytes` have no JSON form and are
//! refused, so the caller keeps the original bytes.

mod literal;
mod machine;
mod to_json;

pub use to_json::pickle_to_json;
