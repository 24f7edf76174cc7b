//! Python's text and integer encodings inside pickles: Python 2 `repr` strings, latin-1,
//! `raw-unicode-escape`, and little-endian two's complement integers.

/// Python 2 `str` as Airflow reads it: `encoding="latin1"`, one character per byte.
pub(super) fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|b| char::from(*b)).collect()
}

/// Python's `codecs.escape_decode`, which reads the `repr` of a Python 2 byte string.
pub(super) fn escape_decode(text: &[u8]) -> Result<Vec<u8>, &'static str> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.iter().copied().peekable();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let escaped = bytes.next().ok_or("trailing backslash in STRING")?;
        match escaped {
            b'\n' => {}
            b'\\' | b'\'' | b'"' => out.push(escaped),
            b'a' => out.push(0x07),
            b'b' => out.push(0x08),
            b't' => out.push(b'\t'),
            b'n' => out.push(b'\n'),
            b'v' => out.push(0x0b),
            b'f' => out.push(0x0c),
            b'r' => out.push(b'\r'),
            b'0'..=b'7' => {
                let mut value = u32::from(escaped - b'0');
                for _ in 0..2 {
                    match bytes.peek() {
                        Some(d @ b'0'..=b'7') => {
                            value = value * 8 + u32::from(d - b'0');
                            bytes.next();
                        }
                        _ => break,
                    }
                }
                out.push((value & 0xff) as u8);
            }
            b'x' => {
                let hi = bytes.next().and_then(|d| char::from(d).to_digit(16));
                let lo = bytes.next().and_then(|d| char::from(d).to_digit(16));
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push((hi * 16 + lo) as u8),
                    _ => return Err("invalid \\x escape in STRING"),
                }
            }
            other => out.extend([b'\\', other]),
        }
    }
    Ok(out)
}

/// Python's `raw-unicode-escape` codec: latin-1 bytes plus `\uXXXX` / `\UXXXXXXXX` escapes
/// (only after an odd number of backslashes). Surrogate pairs, which a narrow Python 2 build
/// writes for characters beyond the BMP, are joined.
pub(super) fn raw_unicode_escape(text: &[u8]) -> Result<String, &'static str> {
    let mut units: Vec<u32> = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i] != b'\\' {
            units.push(text[i].into());
            i += 1;
            continue;
        }
        let start = i;
        while i < text.len() && text[i] == b'\\' {
            units.push(b'\\'.into());
            i += 1;
        }
        let digits = match text.get(i) {
            Some(b'u') => 4,
            Some(b'U') => 8,
            _ => continue,
        };
        if (i - start).is_multiple_of(2) {
            continue;
        }
        units.pop();
        let hex = text
            .get(i + 1..i + 1 + digits)
            .filter(|hex| hex.iter().all(u8::is_ascii_hexdigit))
            .ok_or("truncated \\u escape in UNICODE")?;
        let hex = std::str::from_utf8(hex).map_err(|_| "invalid \\u escape in UNICODE")?;
        let unit = u32::from_str_radix(hex, 16).map_err(|_| "invalid \\u escape in UNICODE")?;
        units.push(unit);
        i += 1 + digits;
    }
    let mut out = String::with_capacity(units.len());
    let mut units = units.into_iter().peekable();
    while let Some(unit) = units.next() {
        let code = match (unit, units.peek()) {
            (0xd800..=0xdbff, Some(low @ 0xdc00..=0xdfff)) => {
                let code = 0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00);
                units.next();
                code
            }
            _ => unit,
        };
        out.push(char::from_u32(code).ok_or("lone surrogate or code point beyond U+10FFFF")?);
    }
    Ok(out)
}

/// Decimal text of a little-endian two's complement integer.
pub(super) fn le_to_decimal(bytes: &[u8], negative: bool) -> String {
    let mut magnitude = bytes.to_vec();
    if negative {
        let mut carry = true;
        for byte in &mut magnitude {
            let (value, overflow) = (!*byte).overflowing_add(u8::from(carry));
            *byte = value;
            carry = overflow;
        }
    }
    // Big-endian base-2^32 limbs, divided by 10^9 repeatedly.
    let mut limbs: Vec<u32> = magnitude
        .chunks(4)
        .rev()
        .map(|chunk| {
            let mut word = [0; 4];
            word[..chunk.len()].copy_from_slice(chunk);
            u32::from_le_bytes(word)
        })
        .collect();
    let mut groups = Vec::new();
    let mut first = 0;
    while first < limbs.len() {
        let mut remainder = 0u64;
        for limb in &mut limbs[first..] {
            let current = (remainder << 32) | u64::from(*limb);
            *limb = (current / 1_000_000_000) as u32;
            remainder = current % 1_000_000_000;
        }
        groups.push(remainder);
        while first < limbs.len() && limbs[first] == 0 {
            first += 1;
        }
    }
    let mut text = String::from(if negative { "-" } else { "" });
    match groups.split_last() {
        Some((most, rest)) => {
            text.push_str(&most.to_string());
            for group in rest.iter().rev() {
                text.push_str(&format!("{group:09}"));
            }
        }
        None => text = "0".to_owned(),
    }
    text
}
