//! The framing of PostgreSQL's binary COPY format: a signature header, then one tuple per row
//! (a 16-bit field count, then per field a 32-bit length, -1 for NULL, and the bytes), then a
//! trailer of field count -1. Chunks from the server split tuples anywhere.

use bytes::{Buf, BytesMut};

use crate::catalog::COPY_HEADER;
use crate::source::decode::DecodeError;

/// `PGCOPY\n\xff\r\n\0`: the header's first 11 bytes (flags and extension length follow).
const SIGNATURE: &[u8] = COPY_HEADER.split_at(11).0;

/// Splits a binary COPY byte stream into tuples.
#[derive(Debug, Default)]
pub struct CopyFramer {
    buffer: BytesMut,
    header_done: bool,
    finished: bool,
}

impl CopyFramer {
    /// A framer waiting for the header.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes received from the server.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buffer.extend_from_slice(chunk);
    }

    /// Whether the trailer has been seen.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Calls `rows` with the fields of every complete tuple buffered so far (`None` = NULL),
    /// one tuple after another in one slice, and keeps an incomplete tail for the next chunk.
    /// Returns the number of tuples.
    ///
    /// # Errors
    /// A bad signature, a header extension that is not understood, a field count that does not
    /// match `columns`, or data after the trailer; whatever `rows` returns.
    pub fn drain<F>(&mut self, columns: usize, mut rows: F) -> Result<usize, DecodeError>
    where
        F: FnMut(&[Option<&[u8]>]) -> Result<(), DecodeError>,
    {
        if !self.header_done {
            if self.buffer.len() < SIGNATURE.len() + 8 {
                return Ok(0);
            }
            if &self.buffer[..SIGNATURE.len()] != SIGNATURE {
                return Err(DecodeError::new(
                    "the COPY stream does not start with the binary signature",
                ));
            }
            let extension_len = u32::from_be_bytes(read4(&self.buffer[15..19])) as usize;
            if self.buffer.len() < 19 + extension_len {
                return Ok(0);
            }
            self.buffer.advance(19 + extension_len);
            self.header_done = true;
        }
        let mut fields = Vec::new();
        let (used, count) = tuples(&self.buffer, columns, &mut self.finished, &mut fields)?;
        if count > 0 {
            rows(&fields)?;
        }
        drop(fields);
        self.buffer.advance(used);
        Ok(count)
    }

    /// [`push`](Self::push) and [`drain`](Self::drain) for each of `pieces`, without copying
    /// them while they hold whole tuples: tuples are decoded where they lie, and `rows` gets
    /// the tuples of consecutive such pieces in one call. After a tuple split between pieces
    /// (and the header), pieces are buffered until one ends where a tuple does. PostgreSQL
    /// sends every tuple in a message of its own, so that is the header's message only.
    ///
    /// # Errors
    /// As [`drain`](Self::drain).
    pub fn feed<P, F>(
        &mut self,
        pieces: &[P],
        columns: usize,
        mut rows: F,
    ) -> Result<usize, DecodeError>
    where
        P: AsRef<[u8]>,
        F: FnMut(&[Option<&[u8]>]) -> Result<(), DecodeError>,
    {
        // A piece is a tuple, mostly: room for all of them up front.
        let mut fields = Vec::with_capacity(pieces.len() * columns);
        let mut count = 0;
        for piece in pieces {
            let piece = piece.as_ref();
            if !self.buffer.is_empty() || !self.header_done {
                // Tuples before this piece go first.
                if !fields.is_empty() {
                    rows(&fields)?;
                    fields.clear();
                }
                self.push(piece);
                count += self.drain(columns, &mut rows)?;
                continue;
            }
            let (used, n) = tuples(piece, columns, &mut self.finished, &mut fields)?;
            count += n;
            self.buffer.extend_from_slice(&piece[used..]);
        }
        if !fields.is_empty() {
            rows(&fields)?;
        }
        Ok(count)
    }
}

/// Appends to `fields` the fields of every complete tuple at the start of `data` (the header
/// already consumed), one tuple after another, and sets `finished` at the trailer. Returns the
/// bytes used and the number of tuples.
fn tuples<'a>(
    data: &'a [u8],
    columns: usize,
    finished: &mut bool,
    fields: &mut Vec<Option<&'a [u8]>>,
) -> Result<(usize, usize), DecodeError> {
    let mut offset = 0;
    let mut rows = 0;
    loop {
        if *finished {
            if offset < data.len() {
                return Err(DecodeError::new("data after the end of the COPY stream"));
            }
            break;
        }
        let Some(count) = data.get(offset..offset + 2) else {
            break;
        };
        let count = i16::from_be_bytes([count[0], count[1]]);
        if count == -1 {
            offset += 2;
            *finished = true;
            continue;
        }
        if count as usize != columns {
            return Err(DecodeError::new(format!(
                "a COPY row has {count} fields, expected {columns}"
            )));
        }
        let start = fields.len();
        let mut cursor = offset + 2;
        let mut complete = true;
        for _ in 0..columns {
            let Some(len) = data.get(cursor..cursor + 4) else {
                complete = false;
                break;
            };
            let len = i32::from_be_bytes(read4(len));
            cursor += 4;
            if len < 0 {
                fields.push(None);
                continue;
            }
            let end = cursor + len as usize;
            let Some(value) = data.get(cursor..end) else {
                complete = false;
                break;
            };
            fields.push(Some(value));
            cursor = end;
        }
        if !complete {
            fields.truncate(start);
            break;
        }
        rows += 1;
        offset = cursor;
    }
    Ok((offset, rows))
}

fn read4(bytes: &[u8]) -> [u8; 4] {
    let mut out = [0; 4];
    out.copy_from_slice(&bytes[..4]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Header + two rows of (int4, text) + trailer, as PostgreSQL sends
    /// `COPY (VALUES (1, 'a'), (NULL, 'bc')) TO STDOUT (FORMAT binary)`.
    fn stream() -> Vec<u8> {
        let mut s = SIGNATURE.to_vec();
        s.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        s.extend_from_slice(&[0, 2, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0, 1, b'a']);
        s.extend_from_slice(&[0, 2, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 2, b'b', b'c']);
        s.extend_from_slice(&[0xff, 0xff]);
        s
    }

    /// The rows of two fields each that a callback got, one after another.
    fn rows_of(fields: &[Option<&[u8]>]) -> Vec<Vec<Option<Vec<u8>>>> {
        assert!(fields.len().is_multiple_of(2));
        fields
            .chunks(2)
            .map(|row| row.iter().map(|f| f.map(<[u8]>::to_vec)).collect())
            .collect()
    }

    fn collect(framer: &mut CopyFramer, out: &mut Vec<Vec<Option<Vec<u8>>>>) -> usize {
        framer
            .drain(2, |fields| {
                out.extend(rows_of(fields));
                Ok(())
            })
            .unwrap()
    }

    #[test]
    fn tuples_survive_any_chunking() {
        let bytes = stream();
        for chunk in 1..bytes.len() {
            let mut framer = CopyFramer::new();
            let mut rows = Vec::new();
            for piece in bytes.chunks(chunk) {
                framer.push(piece);
                collect(&mut framer, &mut rows);
            }
            assert!(framer.is_finished(), "chunk size {chunk}");
            assert_eq!(rows.len(), 2, "chunk size {chunk}");
            assert_eq!(rows[0], vec![Some(vec![0, 0, 0, 1]), Some(b"a".to_vec())]);
            assert_eq!(rows[1], vec![None, Some(b"bc".to_vec())]);
        }
    }

    #[test]
    fn fed_pieces_decode_in_place_however_they_split_tuples() {
        let bytes = stream();
        for size in 1..bytes.len() {
            // Pieces of `size` bytes, handed over two and three at a time.
            let pieces: Vec<&[u8]> = bytes.chunks(size).collect();
            for group in [2, 3] {
                let mut framer = CopyFramer::new();
                let mut rows: Vec<Vec<Option<Vec<u8>>>> = Vec::new();
                for chunk in pieces.chunks(group) {
                    framer
                        .feed(chunk, 2, |fields| {
                            rows.extend(rows_of(fields));
                            Ok(())
                        })
                        .unwrap();
                }
                assert!(framer.is_finished(), "piece size {size}");
                assert_eq!(
                    rows,
                    vec![
                        vec![Some(vec![0, 0, 0, 1]), Some(b"a".to_vec())],
                        vec![None, Some(b"bc".to_vec())],
                    ],
                    "piece size {size}, {group} at a time"
                );
                assert!(framer.buffer.is_empty());
            }
        }
        // Each tuple in a piece of its own, as PostgreSQL sends them: nothing is buffered
        // after the header's piece.
        let header = 19;
        let first = header + 15;
        let pieces = [
            &bytes[..first],
            &bytes[first..first + 12],
            &bytes[first + 12..],
        ];
        let mut framer = CopyFramer::new();
        assert_eq!(framer.feed(&pieces, 2, |_| Ok(())).unwrap(), 2);
        assert!(framer.is_finished() && framer.buffer.is_empty());
        let mut framer = CopyFramer::new();
        let mut after_trailer = bytes.clone();
        after_trailer.push(0);
        let error = framer.feed(&[&after_trailer], 2, |_| Ok(())).unwrap_err();
        assert!(error.to_string().contains("after the end"), "{error}");
    }

    #[test]
    fn bad_signature_and_field_counts_are_errors() {
        let mut framer = CopyFramer::new();
        framer.push(b"PGCOPY\nXXXXXXXXXXXXXXXXXXX");
        assert!(framer.drain(2, |_| Ok(())).is_err());
        let mut framer = CopyFramer::new();
        framer.push(&stream());
        assert!(
            framer
                .drain(3, |_| Ok(()))
                .unwrap_err()
                .to_string()
                .contains("2 fields, expected 3")
        );
    }
}
