//! The unpickling stack machine: opcodes in, an arena of plain Python values out.
//!
//! It follows CPython's `_Unpickler` opcode by opcode (stack, MARK metastack, memo), but GLOBAL
//! and STACK_GLOBAL resolve only the allow-listed callables and REDUCE builds their results
//! itself; every other construct is an error before anything could run.

use std::collections::HashMap;

use super::literal::{escape_decode, latin1, le_to_decimal, raw_unicode_escape};
use crate::remap::error::{DecodeError, describe_global};

/// CPython refuses to turn longer ints into text (`sys.get_int_max_str_digits()`), so
/// `json.dumps` fails on them too.
const MAX_INT_DIGITS: usize = 4300;

pub(super) type Id = usize;

/// A decoded Python value. Containers refer to other nodes by index, because the memo lets one
/// list appear in several places and be appended to after it was memoized.
#[derive(Debug)]
pub(super) enum Node {
    None,
    Bool(bool),
    Int(i128),
    /// Decimal text of an int beyond `i128`.
    BigInt(String),
    Float(f64),
    Str(String),
    List(Vec<Id>),
    Tuple(Vec<Id>),
    Dict(Vec<(Id, Id)>),
    Set {
        items: Vec<Id>,
        frozen: bool,
    },
    Callable(Callable),
}

/// The only globals the decoder resolves; it builds their results itself.
#[derive(Debug, Clone, Copy)]
pub(super) enum Callable {
    Set,
    FrozenSet,
    OrderedDict,
}

/// The unpickler's state: input cursor, value arena, stack, mark stack and memo.
pub(super) struct Machine<'a> {
    input: &'a [u8],
    pos: usize,
    /// Start of the opcode being run, for error offsets.
    op_start: usize,
    nodes: Vec<Node>,
    stack: Vec<Id>,
    /// Stacks saved by MARK, as in CPython's `metastack`.
    marks: Vec<Vec<Id>>,
    memo: HashMap<u64, Id>,
}

impl<'a> Machine<'a> {
    pub(super) fn new(input: &'a [u8]) -> Self {
        Machine {
            input,
            pos: 0,
            op_start: 0,
            nodes: Vec::new(),
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
        }
    }

    pub(super) fn run(mut self) -> Result<(Vec<Node>, Id), DecodeError> {
        loop {
            self.op_start = self.pos;
            let op = self.byte()?;
            match op {
                b'.' => return self.stop(),
                0x80 => {
                    // PROTO
                    if self.byte()? > 5 {
                        return Err(self.malformed("protocol newer than 5"));
                    }
                }
                0x95 => {
                    // FRAME: frames only group opcodes for buffered readers.
                    self.take(8)?;
                }
                b'(' => self.marks.push(std::mem::take(&mut self.stack)),
                b'0' => {
                    // POP removes the top item, or the top mark when the stack is empty.
                    if self.stack.pop().is_none() {
                        self.pop_mark()?;
                    }
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let top = self.top()?;
                    self.stack.push(top);
                }

                b'N' => self.push(Node::None),
                0x88 => self.push(Node::Bool(true)),
                0x89 => self.push(Node::Bool(false)),
                b'I' => {
                    let node = match self.line()? {
                        b"00" => Node::Bool(false),
                        b"01" => Node::Bool(true),
                        text => self.int_text(text)?,
                    };
                    self.push(node);
                }
                b'L' => {
                    let text = self.line()?;
                    let text = text.strip_suffix(b"L").unwrap_or(text);
                    let node = self.int_text(text)?;
                    self.push(node);
                }
                b'J' => {
                    let value = i32::from_le_bytes(self.array()?);
                    self.push(Node::Int(value.into()));
                }
                b'K' => {
                    let value = self.byte()?;
                    self.push(Node::Int(value.into()));
                }
                b'M' => {
                    let value = u16::from_le_bytes(self.array()?);
                    self.push(Node::Int(value.into()));
                }
                0x8a => {
                    let len = self.byte()?;
                    let bytes = self.take(len.into())?;
                    let node = self.int_le(bytes)?;
                    self.push(node);
                }
                0x8b => {
                    let len = self.signed_len()?;
                    let bytes = self.take(len)?;
                    let node = self.int_le(bytes)?;
                    self.push(node);
                }
                b'F' => {
                    let text = self.line()?;
                    let value = std::str::from_utf8(text)
                        .ok()
                        .and_then(|text| text.trim().parse::<f64>().ok())
                        .ok_or_else(|| self.malformed("FLOAT text is not a number"))?;
                    self.push(Node::Float(value));
                }
                b'G' => {
                    let value = f64::from_be_bytes(self.array()?);
                    self.push(Node::Float(value));
                }

                b'S' => {
                    let text = self.line()?;
                    let node = self.quoted_string(text)?;
                    self.push(node);
                }
                b'T' => {
                    let len = self.signed_len()?;
                    let bytes = self.take(len)?;
                    self.push(Node::Str(latin1(bytes)));
                }
                b'U' => {
                    let len = self.byte()?;
                    let bytes = self.take(len.into())?;
                    self.push(Node::Str(latin1(bytes)));
                }
                b'V' => {
                    let text = self.line()?;
                    let text = raw_unicode_escape(text).map_err(|reason| self.malformed(reason))?;
                    self.push(Node::Str(text));
                }
                b'X' => {
                    let len = u32::from_le_bytes(self.array()?);
                    self.utf8(usize::try_from(len).unwrap_or(usize::MAX))?;
                }
                0x8c => {
                    let len = self.byte()?;
                    self.utf8(len.into())?;
                }
                0x8d => {
                    let len = u64::from_le_bytes(self.array()?);
                    self.utf8(usize::try_from(len).unwrap_or(usize::MAX))?;
                }
                b'B' | b'C' | 0x8e | 0x96 => {
                    return Err(DecodeError::NotJson {
                        what: "a bytes object",
                    });
                }

                b']' => self.push(Node::List(Vec::new())),
                b')' => self.push(Node::Tuple(Vec::new())),
                b'}' => self.push(Node::Dict(Vec::new())),
                0x8f => self.push(Node::Set {
                    items: Vec::new(),
                    frozen: false,
                }),
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Node::List(items));
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Node::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    let at = self
                        .stack
                        .len()
                        .checked_sub(n)
                        .ok_or_else(|| self.malformed("stack underflow"))?;
                    let items = self.stack.split_off(at);
                    self.push(Node::Tuple(items));
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(items)?;
                    self.push(Node::Dict(pairs));
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    self.push(Node::Set {
                        items,
                        frozen: true,
                    });
                }
                b'a' => {
                    let item = self.pop()?;
                    self.list_of_top()?.push(item);
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.list_of_top()?.extend(items);
                }
                b's' => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    self.dict_of_top()?.push((key, value));
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(items)?;
                    self.dict_of_top()?.extend(pairs);
                }
                0x90 => {
                    let items = self.pop_mark()?;
                    let top = self.top()?;
                    match &mut self.nodes[top] {
                        Node::Set {
                            items: set,
                            frozen: false,
                        } => set.extend(items),
                        _ => return Err(self.malformed("ADDITEMS to something not a set")),
                    }
                }

                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let callable = resolve(module, name)?;
                    self.push(Node::Callable(callable));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let callable = match (&self.nodes[module], &self.nodes[name]) {
                        (Node::Str(module), Node::Str(name)) => {
                            resolve(module.as_bytes(), name.as_bytes())?
                        }
                        _ => return Err(self.malformed("STACK_GLOBAL operands are not strings")),
                    };
                    self.push(Node::Callable(callable));
                }
                b'i' => {
                    // INST instantiates a class: never one we build.
                    let module = self.line()?;
                    let name = self.line()?;
                    return Err(DecodeError::UnsupportedGlobal {
                        global: describe_global(module, name),
                    });
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let node = self.reduce(callable, args)?;
                    self.push(node);
                }

                b'p' => {
                    let index = self.text_index()?;
                    self.put(index)?;
                }
                b'q' => {
                    let index = self.byte()?;
                    self.put(index.into())?;
                }
                b'r' => {
                    let index = u32::from_le_bytes(self.array()?);
                    self.put(index.into())?;
                }
                0x94 => {
                    let index = self.memo.len() as u64;
                    self.put(index)?;
                }
                b'g' => {
                    let index = self.text_index()?;
                    self.get(index)?;
                }
                b'h' => {
                    let index = self.byte()?;
                    self.get(index.into())?;
                }
                b'j' => {
                    let index = u32::from_le_bytes(self.array()?);
                    self.get(index.into())?;
                }

                _ => {
                    return Err(DecodeError::UnsupportedOpcode {
                        opcode: op,
                        name: opcode_name(op),
                        offset: self.op_start,
                    });
                }
            }
        }
    }

    fn stop(mut self) -> Result<(Vec<Node>, Id), DecodeError> {
        let root = self.pop()?;
        if !self.stack.is_empty() || !self.marks.is_empty() {
            return Err(self.malformed("values left on the stack at STOP"));
        }
        if self.pos != self.input.len() {
            return Err(self.malformed("bytes after STOP"));
        }
        Ok((self.nodes, root))
    }

    fn malformed(&self, reason: &'static str) -> DecodeError {
        DecodeError::Malformed {
            offset: self.op_start,
            reason,
        }
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|end| *end <= self.input.len())
            .ok_or(DecodeError::Truncated {
                offset: self.input.len(),
            })?;
        let bytes = &self.input[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut array = [0; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    /// A 4-byte signed length (BINSTRING, LONG4), which must not be negative.
    fn signed_len(&mut self) -> Result<usize, DecodeError> {
        let len = i32::from_le_bytes(self.array()?);
        usize::try_from(len).map_err(|_| self.malformed("negative length"))
    }

    /// The bytes up to the next newline, which is consumed.
    fn line(&mut self) -> Result<&'a [u8], DecodeError> {
        let rest = &self.input[self.pos..];
        let len = rest
            .iter()
            .position(|b| *b == b'\n')
            .ok_or(DecodeError::Truncated {
                offset: self.input.len(),
            })?;
        self.pos += len + 1;
        Ok(&rest[..len])
    }

    fn text_index(&mut self) -> Result<u64, DecodeError> {
        let text = self.line()?;
        std::str::from_utf8(text)
            .ok()
            .and_then(|text| text.parse().ok())
            .ok_or_else(|| self.malformed("memo index is not a number"))
    }

    fn push(&mut self, node: Node) {
        self.nodes.push(node);
        self.stack.push(self.nodes.len() - 1);
    }

    fn pop(&mut self) -> Result<Id, DecodeError> {
        self.stack
            .pop()
            .ok_or_else(|| self.malformed("stack underflow"))
    }

    fn top(&self) -> Result<Id, DecodeError> {
        self.stack
            .last()
            .copied()
            .ok_or_else(|| self.malformed("stack underflow"))
    }

    fn pop_mark(&mut self) -> Result<Vec<Id>, DecodeError> {
        let outer = self
            .marks
            .pop()
            .ok_or_else(|| self.malformed("no MARK to pop to"))?;
        Ok(std::mem::replace(&mut self.stack, outer))
    }

    fn put(&mut self, index: u64) -> Result<(), DecodeError> {
        let top = self.top()?;
        self.memo.insert(index, top);
        Ok(())
    }

    fn get(&mut self, index: u64) -> Result<(), DecodeError> {
        let id = *self
            .memo
            .get(&index)
            .ok_or_else(|| self.malformed("memo slot never set"))?;
        self.stack.push(id);
        Ok(())
    }

    fn pairs(&self, items: Vec<Id>) -> Result<Vec<(Id, Id)>, DecodeError> {
        if !items.len().is_multiple_of(2) {
            return Err(self.malformed("odd number of items for a dict"));
        }
        Ok(items.chunks_exact(2).map(|kv| (kv[0], kv[1])).collect())
    }

    fn list_of_top(&mut self) -> Result<&mut Vec<Id>, DecodeError> {
        let top = self.top()?;
        let malformed = self.malformed("APPEND to something not a list");
        match &mut self.nodes[top] {
            Node::List(items) => Ok(items),
            _ => Err(malformed),
        }
    }

    fn dict_of_top(&mut self) -> Result<&mut Vec<(Id, Id)>, DecodeError> {
        let top = self.top()?;
        let malformed = self.malformed("SETITEM on something not a dict");
        match &mut self.nodes[top] {
            Node::Dict(pairs) => Ok(pairs),
            _ => Err(malformed),
        }
    }

    fn utf8(&mut self, len: usize) -> Result<(), DecodeError> {
        let bytes = self.take(len)?;
        // CPython writes lone surrogates with `surrogatepass`; they are not UTF-8 and not JSON.
        let text = std::str::from_utf8(bytes).map_err(|_| DecodeError::NotJson {
            what: "a string with a lone surrogate",
        })?;
        self.push(Node::Str(text.to_owned()));
        Ok(())
    }

    /// STRING: a Python 2 `repr` of a byte string, decoded as latin-1.
    fn quoted_string(&self, text: &[u8]) -> Result<Node, DecodeError> {
        let inner = match text {
            [q, inner @ .., last] if q == last && (*q == b'\'' || *q == b'"') => inner,
            _ => return Err(self.malformed("STRING argument is not quoted")),
        };
        let bytes = escape_decode(inner).map_err(|reason| self.malformed(reason))?;
        Ok(Node::Str(latin1(&bytes)))
    }

    /// INT and LONG text: decimal digits with an optional sign.
    fn int_text(&self, text: &[u8]) -> Result<Node, DecodeError> {
        let text = std::str::from_utf8(text)
            .map_err(|_| self.malformed("INT text is not a number"))?
            .trim();
        if let Ok(value) = text.parse::<i128>() {
            return Ok(Node::Int(value));
        }
        let (negative, digits) = match text.as_bytes() {
            [b'-', digits @ ..] => (true, digits),
            [b'+', digits @ ..] => (false, digits),
            digits => (false, digits),
        };
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return Err(self.malformed("INT text is not a number"));
        }
        let digits = std::str::from_utf8(digits).unwrap_or_default();
        let digits = digits.trim_start_matches('0');
        if digits.len() > MAX_INT_DIGITS {
            return Err(DecodeError::TooLarge {
                reason: "an int longer than 4300 digits",
            });
        }
        let sign = if negative { "-" } else { "" };
        Ok(Node::BigInt(format!("{sign}{digits}")))
    }

    /// LONG1 and LONG4: little-endian two's complement.
    fn int_le(&self, bytes: &[u8]) -> Result<Node, DecodeError> {
        let negative = bytes.last().is_some_and(|b| b & 0x80 != 0);
        if bytes.len() <= 16 {
            let mut wide = if negative { [0xff; 16] } else { [0; 16] };
            wide[..bytes.len()].copy_from_slice(bytes);
            return Ok(Node::Int(i128::from_le_bytes(wide)));
        }
        // 1800 bytes hold at most 4336 decimal digits: bound the quadratic conversion first.
        if bytes.len() > 1800 {
            return Err(DecodeError::TooLarge {
                reason: "an int longer than 4300 digits",
            });
        }
        let text = le_to_decimal(bytes, negative);
        if text.trim_start_matches('-').len() > MAX_INT_DIGITS {
            return Err(DecodeError::TooLarge {
                reason: "an int longer than 4300 digits",
            });
        }
        Ok(match text.parse::<i128>() {
            Ok(value) => Node::Int(value),
            Err(_) => Node::BigInt(text),
        })
    }

    fn reduce(&self, callable: Id, args: Id) -> Result<Node, DecodeError> {
        let Node::Callable(callable) = self.nodes[callable] else {
            return Err(self.malformed("REDUCE on something not callable"));
        };
        let Node::Tuple(args) = &self.nodes[args] else {
            return Err(self.malformed("REDUCE arguments are not a tuple"));
        };
        let unexpected = || self.malformed("unexpected arguments to set, frozenset or OrderedDict");
        let items = match args.as_slice() {
            [] => Vec::new(),
            [iterable] => match &self.nodes[*iterable] {
                Node::List(items) | Node::Tuple(items) | Node::Set { items, .. } => items.clone(),
                _ => return Err(unexpected()),
            },
            _ => return Err(unexpected()),
        };
        Ok(match callable {
            Callable::Set => Node::Set {
                items,
                frozen: false,
            },
            Callable::FrozenSet => Node::Set {
                items,
                frozen: true,
            },
            // Python 2's OrderedDict reduces to OrderedDict([[key, value], ...]).
            Callable::OrderedDict => {
                let pairs = items
                    .iter()
                    .map(|item| match &self.nodes[*item] {
                        Node::List(kv) | Node::Tuple(kv) if kv.len() == 2 => Ok((kv[0], kv[1])),
                        _ => Err(unexpected()),
                    })
                    .collect::<Result<_, _>>()?;
                Node::Dict(pairs)
            }
        })
    }
}

fn resolve(module: &[u8], name: &[u8]) -> Result<Callable, DecodeError> {
    match (module, name) {
        (b"builtins" | b"__builtin__", b"set") => Ok(Callable::Set),
        (b"builtins" | b"__builtin__", b"frozenset") => Ok(Callable::FrozenSet),
        (b"collections", b"OrderedDict") => Ok(Callable::OrderedDict),
        _ => Err(DecodeError::UnsupportedGlobal {
            global: describe_global(module, name),
        }),
    }
}

fn opcode_name(op: u8) -> &'static str {
    match op {
        b'P' => "PERSID",
        b'Q' => "BINPERSID",
        b'b' => "BUILD",
        b'o' => "OBJ",
        0x81 => "NEWOBJ",
        0x92 => "NEWOBJ_EX",
        0x82 => "EXT1",
        0x83 => "EXT2",
        0x84 => "EXT4",
        0x97 => "NEXT_BUFFER",
        0x98 => "READONLY_BUFFER",
        _ => "unknown",
    }
}
