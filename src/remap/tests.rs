//! Payload codec tests against bytes real CPython 3.11 and 2.7 wrote (`testdata/gen.py`); none
//! needs Python to run.

use arrow::array::{Array, BinaryArray};
use serde_json::Value;

use super::*;

/// `name/pN<TAB>pickle hex<TAB>expected JSON or !`.
const PICKLES: &str = include_str!("testdata/pickles.tsv");
/// `json<TAB>CPython pickle.dumps(protocol=5) hex<TAB>CPython json.dumps().encode() hex`.
const ENCODED: &str = include_str!("testdata/encode.tsv");

fn rows(table: &str) -> impl Iterator<Item = Vec<&str>> {
    table
        .lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| line.split('\t').collect())
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn fixture(name: &str) -> Vec<u8> {
    let row = rows(PICKLES).find(|row| row[0] == name).unwrap();
    unhex(row[1])
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

#[test]
fn cpython_pickles_decode_to_expected_json_or_are_refused() {
    let (mut decoded, mut refused, mut failures) = (0, 0, Vec::new());
    for row in rows(PICKLES) {
        let [name, data, expected] = row[..] else {
            panic!("bad row {row:?}");
        };
        match (expected, pickle_to_json(&unhex(data))) {
            ("!", Err(_)) => refused += 1,
            (expected, Ok(json)) if json == expected => decoded += 1,
            (_, result) => failures.push(format!("{name}: expected {expected}, got {result:?}")),
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    // Pins the fixture table: 6 protocols x Python 3 cases, 3 x Python 2 cases.
    assert_eq!((decoded, refused), (174, 92));
}

#[test]
fn every_protocol_is_covered() {
    for protocol in 0..=5 {
        let suffix = format!("/p{protocol}");
        let n = rows(PICKLES)
            .filter(|row| row[0].ends_with(&suffix))
            .count();
        assert!(n >= 30, "protocol {protocol}: {n} fixtures");
    }
}

#[test]
fn refusals_name_the_construct() {
    let global = |name: &str| match pickle_to_json(&fixture(name)) {
        Err(DecodeError::UnsupportedGlobal { global }) => global,
        other => panic!("{name}: {other:?}"),
    };
    for protocol in 0..=5 {
        // os.system pickles as posix.system; nothing is imported or called.
        assert_eq!(global(&format!("os_system/p{protocol}")), "posix.system");
        assert_eq!(
            global(&format!("datetime/p{protocol}")),
            "datetime.datetime"
        );
        assert_eq!(global(&format!("decimal/p{protocol}")), "decimal.Decimal");
        assert!(matches!(
            pickle_to_json(&fixture(&format!("recursive_list/p{protocol}"))),
            Err(DecodeError::NotJson { .. })
        ));
        assert!(matches!(
            pickle_to_json(&fixture(&format!("shared_bomb/p{protocol}"))),
            Err(DecodeError::TooLarge { .. })
        ));
        assert!(matches!(
            pickle_to_json(&fixture(&format!("tuple_key/p{protocol}"))),
            Err(DecodeError::NotJson { .. })
        ));
    }
    // Before protocol 2 an instance is rebuilt through copyreg; from 2 on the class is named.
    assert_eq!(global("custom_class/p0"), "copy_reg._reconstructor");
    assert_eq!(global("custom_class/p2"), "__main__.Custom");
    assert_eq!(global("py2_datetime/p2"), "datetime.datetime");
    assert_eq!(global("py3_bytes/p2"), "_codecs.encode");
    assert_eq!(
        pickle_to_json(&fixture("py3_bytes/p3")),
        Err(DecodeError::NotJson {
            what: "a bytes object"
        })
    );
    assert!(matches!(
        pickle_to_json(&fixture("out_of_band_buffer/p5")),
        Err(DecodeError::UnsupportedOpcode {
            name: "NEXT_BUFFER",
            ..
        })
    ));
    assert!(matches!(
        pickle_to_json(&fixture("huge_int/p5")),
        Err(DecodeError::TooLarge { .. })
    ));
}

#[test]
fn errors_never_contain_payload_values() {
    // Every prefix of pickles holding "airflow" and "café": the errors name offsets, not values.
    for name in [
        "conf/p0",
        "conf/p2",
        "conf/p5",
        "unicode/p0",
        "py2_conf/p0",
        "py2_conf/p1",
    ] {
        let data = fixture(name);
        for end in 0..data.len() {
            for decode in [pickle_to_json, xcom_bytes_to_json] {
                if let Err(error) = decode(&data[..end]) {
                    let text = error.to_string();
                    assert!(!text.contains("airflow") && !text.contains("caf"), "{text}");
                }
            }
        }
    }
    let error = xcom_bytes_to_json(br#"{"password": "hunter2" oops}"#).unwrap_err();
    assert!(!error.to_string().contains("hunter2"), "{error}");
}

#[test]
fn malformed_pickles_are_errors_not_panics() {
    let cases: &[(&[u8], DecodeError)] = &[
        (b"", DecodeError::Empty),
        (b"\x80\x05", DecodeError::Truncated { offset: 2 }),
        (b"\x80\x06N.", malformed(0, "protocol newer than 5")),
        (b"a.", malformed(0, "stack underflow")),
        (b"N0.", malformed(2, "stack underflow")),
        (b"h\x07.", malformed(0, "memo slot never set")),
        (b"NN.", malformed(2, "values left on the stack at STOP")),
        (b"N.N", malformed(1, "bytes after STOP")),
        (b"(K\x01d.", malformed(3, "odd number of items for a dict")),
        (
            b"K\x01K\x02a.",
            malformed(4, "APPEND to something not a list"),
        ),
        (b"S'abc\n.", malformed(0, "STRING argument is not quoted")),
        (b"\x8b\xff\xff\xff\xff.", malformed(0, "negative length")),
        (b"X\xff\xff\xff\x7f", DecodeError::Truncated { offset: 5 }),
    ];
    for (data, expected) in cases {
        assert_eq!(pickle_to_json(data).as_ref(), Err(expected), "{data:?}");
    }
    assert!(matches!(
        pickle_to_json(b"\x80\x04\x81."),
        Err(DecodeError::UnsupportedOpcode { name: "NEWOBJ", .. })
    ));
    assert!(matches!(
        pickle_to_json(b"cos\nsystem\n."),
        Err(DecodeError::UnsupportedGlobal { .. })
    ));
    // A global name that is not a Python name is not echoed.
    assert_eq!(
        pickle_to_json(b"cmy secret\nvalue\n."),
        Err(DecodeError::UnsupportedGlobal {
            global: "<unprintable>".into()
        })
    );
}

fn malformed(offset: usize, reason: &'static str) -> DecodeError {
    DecodeError::Malformed { offset, reason }
}

#[test]
fn deep_nesting_is_refused() {
    let mut data = b"\x80\x04".to_vec();
    data.extend(std::iter::repeat_n(b']', 600));
    data.extend(std::iter::repeat_n(b'a', 599));
    data.push(b'.');
    assert!(matches!(
        pickle_to_json(&data),
        Err(DecodeError::TooLarge { .. })
    ));
    data = b"\x80\x04".to_vec();
    data.extend(std::iter::repeat_n(b']', 500));
    data.extend(std::iter::repeat_n(b'a', 499));
    data.push(b'.');
    assert_eq!(
        pickle_to_json(&data).unwrap(),
        "[".repeat(500) + &"]".repeat(500)
    );
}

#[test]
fn encoders_match_cpython_bytes() {
    let mut n = 0;
    for row in rows(ENCODED) {
        let [doc, pickle, xcom] = row[..] else {
            panic!("bad row {row:?}");
        };
        let value = json(doc);
        assert_eq!(json_to_pickle(&value), unhex(pickle), "pickle of {doc}");
        assert_eq!(json_to_xcom_bytes(&value), unhex(xcom), "xcom of {doc}");
        assert_eq!(pickle_to_json(&unhex(pickle)).unwrap(), doc);
        assert_eq!(json(&xcom_bytes_to_json(&unhex(xcom)).unwrap()), value);
        n += 1;
    }
    assert_eq!(n, 30);
}

#[test]
fn json_round_trips_through_pickle() {
    // Checked once with CPython 3.11 during development: for a 450 KiB document (20,000 dicts, a
    // 70,000-character string, non-ASCII, i64::MIN, 1e300) `pickle.loads(json_to_pickle(v))` and
    // `json.loads(json_to_xcom_bytes(v))` equal `json.loads(v)`, and the XCom bytes equal
    // `json.dumps(json.loads(v)).encode()`; smaller documents are compared byte for byte in
    // `encoders_match_cpython_bytes`.
    let docs = [
        "{}",
        "[]",
        "null",
        "true",
        r#""""#,
        "0",
        "-1",
        "127",
        "-129",
        "4294967296",
        "-4294967297",
        "9223372036854775807",
        "-9223372036854775808",
        "18446744073709551615",
        "0.5",
        "-0.0",
        "1e+16",
        "2.5e-08",
        "1.7976931348623157e+308",
        r#""NaN""#,
        r#""Infinity""#,
        r#""18446744073709551616""#,
        r#""line\nbreak \"quoted\" \\ \u0000 é 😀""#,
        r#"{"a":{"b":{"c":[1,[2,[3,{}]]]}},"a2":[]}"#,
        r#"[{"k":1,"v":"x"},{"k":2,"v":"y"},{"k":3,"v":"z"}]"#,
        r#"{"z":1,"a":2,"m":3}"#,
        r#"{"conf":{"retries":3,"tags":["a","b"],"on":false,"owner":null}}"#,
    ];
    for doc in docs {
        let pickle = json_to_pickle(&json(doc));
        assert_eq!(pickle_to_json(&pickle).unwrap(), doc);
        let xcom = json_to_xcom_bytes(&json(doc));
        assert_eq!(
            json(&xcom_bytes_to_json(&xcom).unwrap()),
            json(doc),
            "{doc}"
        );
    }
}

#[test]
fn xcom_json_text_is_kept_with_non_finite_numbers_quoted() {
    // Left: `json.dumps(value).encode()` from CPython 3.11; right: what Airflow 3.2's migration
    // would store before jsonb normalizes it.
    let cases: &[(&[u8], &str)] = &[
        (
            br#"{"a": 1, "b": [1.5, "x"]}"#,
            r#"{"a": 1, "b": [1.5, "x"]}"#,
        ),
        (
            br#"{"x": NaN, "y": [Infinity, -Infinity], "s": "NaN -Infinity"}"#,
            r#"{"x": "NaN", "y": ["Infinity", "-Infinity"], "s": "NaN -Infinity"}"#,
        ),
        (br#"NaN"#, r#""NaN""#),
        (br#""a \"NaN\" \\""#, r#""a \"NaN\" \\""#),
        (br#""\u00e9""#, r#""\u00e9""#),
        (b"\"caf\xc3\xa9\"", "\"café\""),
        (b" [1, 2] \n", " [1, 2] \n"),
        (
            b"123456789012345678901234567890",
            "123456789012345678901234567890",
        ),
    ];
    for (bytes, expected) in cases {
        assert_eq!(xcom_bytes_to_json(bytes).unwrap(), *expected);
    }
}

#[test]
fn xcom_pickles_and_refusals() {
    assert_eq!(
        xcom_bytes_to_json(&fixture("conf/p5")).unwrap(),
        pickle_to_json(&fixture("conf/p5")).unwrap()
    );
    // Airflow 1.10 on Python 2 pickled XComs with protocol 0, which does not start with 0x80.
    assert_eq!(
        xcom_bytes_to_json(&fixture("py2_conf/p0")).unwrap(),
        pickle_to_json(&fixture("py2_conf/p0")).unwrap()
    );
    assert!(matches!(
        xcom_bytes_to_json(&fixture("datetime/p5")),
        Err(DecodeError::UnsupportedGlobal { .. })
    ));
    assert_eq!(xcom_bytes_to_json(b""), Err(DecodeError::Empty));
    for bad in [
        &b"{\"a\":"[..],
        b"NaNx",
        b"nan",
        b"\xff\xfe",
        b"[1,]",
        b"'single'",
    ] {
        assert!(
            matches!(
                xcom_bytes_to_json(bad),
                Err(DecodeError::InvalidJson { .. })
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn payload_columns_split_into_json_and_raw() {
    let datetime = fixture("datetime/p5");
    let values = BinaryArray::from(vec![
        Some(&b"\x80\x05}\x94."[..]),
        None,
        Some(&datetime[..]),
        Some(&b"garbage"[..]),
        Some(&fixture("py2_str_latin1/p0")[..]),
        Some(&b""[..]),
    ]);
    let (json, raw) = split_payload_column(PayloadKind::Pickle, &values);
    assert_eq!(json.len(), 6);
    assert_eq!(raw.len(), 6);
    let json: Vec<_> = json.iter().collect();
    let raw: Vec<_> = raw.iter().collect();
    assert_eq!(json, [Some("{}"), None, None, None, Some("\"été\""), None]);
    assert_eq!(
        raw,
        [
            None,
            None,
            Some(&datetime[..]),
            Some(&b"garbage"[..]),
            None,
            Some(&b""[..])
        ]
    );

    let values = BinaryArray::from(vec![
        Some(&br#"{"a": NaN}"#[..]),
        None,
        Some(&b"not json"[..]),
    ]);
    let (json, raw) = split_payload_column(PayloadKind::XCom, &values);
    assert_eq!(
        json.iter().collect::<Vec<_>>(),
        [Some(r#"{"a": "NaN"}"#), None, None]
    );
    assert_eq!(
        raw.iter().collect::<Vec<_>>(),
        [None, None, Some(&b"not json"[..])]
    );
    assert_eq!(raw.null_count(), 2);

    let (json, raw) = split_payload_column(
        PayloadKind::Pickle,
        &BinaryArray::from(Vec::<Option<&[u8]>>::new()),
    );
    assert_eq!((json.len(), raw.len()), (0, 0));
}

#[test]
fn split_payload_keeps_bytes_it_cannot_decode() {
    assert_eq!(split_payload(PayloadKind::Pickle, None), (None, None));
    assert_eq!(
        split_payload(PayloadKind::Pickle, Some(b"\x80\x05}\x94.")),
        (Some("{}".into()), None)
    );
    assert_eq!(
        split_payload(PayloadKind::XCom, Some(b"\x80\x04\x81.")),
        (None, Some(b"\x80\x04\x81.".to_vec()))
    );
}
