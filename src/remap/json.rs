//! JSON text the way CPython's `json.dumps` writes it: string escapes and `float.__repr__`.
//!
//! Shared by the pickle decoder (compact, UTF-8) and the XCom encoder (Python's defaults,
//! `ensure_ascii`). Writing the same float text as Python keeps dict keys such as `1e+16` equal to
//! what Airflow's own migration produced.

use std::fmt::Write as _;

/// Appends `s` as a JSON string. With `ascii_only`, every character outside printable ASCII is a
/// `\uXXXX` escape (Python's `ensure_ascii=True`); otherwise only `"`, `\` and controls are.
pub(crate) fn write_str(out: &mut String, s: &str, ascii_only: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c < ' ' => push_u_escape(out, c as u32),
            c if ascii_only && !(' '..='~').contains(&c) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    push_u_escape(out, u32::from(*unit));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn push_u_escape(out: &mut String, unit: u32) {
    // Lowercase hex, as Python writes it.
    let _ = write!(out, "\\u{unit:04x}");
}

/// Appends a finite float as Python's `repr` writes it: the shortest text that reads back as the
/// same number, positional for exponents -4..16 (`0.0001`, `1e+16`, `1.5e-07`, `100.0`).
pub(crate) fn write_float(out: &mut String, value: f64) {
    debug_assert!(value.is_finite());
    // Rust's `{:e}` is also shortest-round-trip: "1.5e-7", "-1e16", "0e0".
    let scientific = format!("{value:e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if negative {
        out.push('-');
    }
    if (-4..16).contains(&exponent) {
        if exponent < 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-exponent - 1) as usize));
            out.push_str(&digits);
        } else {
            let point = exponent as usize + 1;
            if digits.len() > point {
                out.push_str(&digits[..point]);
                out.push('.');
                out.push_str(&digits[point..]);
            } else {
                out.push_str(&digits);
                out.extend(std::iter::repeat_n('0', point - digits.len()));
                out.push_str(".0");
            }
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let sign = if exponent < 0 { '-' } else { '+' };
        let _ = write!(out, "e{sign}{:02}", exponent.unsigned_abs());
    }
}

/// The JSON for a float: its Python repr, or the strings Airflow 3.2's XCom migration uses for
/// values JSON cannot hold.
pub(crate) fn write_float_or_name(out: &mut String, value: f64) {
    match float_name(value) {
        Some(name) => write_str(out, name, false),
        None => write_float(out, value),
    }
}

/// `NaN`, `Infinity` or `-Infinity` for non-finite floats.
pub(crate) fn float_name(value: f64) -> Option<&'static str> {
    if value.is_nan() {
        Some("NaN")
    } else if value == f64::INFINITY {
        Some("Infinity")
    } else if value == f64::NEG_INFINITY {
        Some("-Infinity")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn float(value: f64) -> String {
        let mut out = String::new();
        write_float(&mut out, value);
        out
    }

    #[test]
    fn floats_match_python_repr() {
        // Each right-hand side is `repr(x)` from CPython 3.11.
        let cases = [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (100.0, "100.0"),
            (0.1, "0.1"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (0.0001, "0.0001"),
            (0.00012, "0.00012"),
            (1e-5, "1e-05"),
            (-1.5e-7, "-1.5e-07"),
            (123456789.125, "123456789.125"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
            (2.5e22, "2.5e+22"),
        ];
        for (value, repr) in cases {
            assert_eq!(float(value), repr, "{value:e}");
        }
    }

    #[test]
    fn strings_escape_like_python() {
        let mut out = String::new();
        write_str(&mut out, "a\"\\\n\u{1}\u{7f}é😀", true);
        assert_eq!(out, r#""a\"\\\n\u0001\u007f\u00e9\ud83d\ude00""#);
        out.clear();
        write_str(&mut out, "a\"\\\n\u{1}\u{7f}é😀", false);
        assert_eq!(out, "\"a\\\"\\\\\\n\\u0001\u{7f}é😀\"");
    }
}
