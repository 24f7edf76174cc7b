//! `contrail export --format csv`: one RFC 4180 file per table with a header, read back with the
//! `csv` crate and compared with PostgreSQL's own text, and loaded back into PostgreSQL with
//! `COPY … (FORMAT csv)`, which tells NULL from the empty string.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::export::{demo_db, export_to, only_manifest, source_rows};
use crate::util::pg::cluster;

/// A CSV value as PostgreSQL's text output spells it (the empty field is NULL here; the
/// `csv` crate cannot tell it from `""`, which the COPY check below covers).
fn pg_text(value: &str) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(value)
        && value.ends_with('Z')
        && value.len() == 27
    {
        let mut text = time.format("%Y-%m-%d %H:%M:%S%.6f").to_string();
        while text.ends_with('0') {
            text.pop();
        }
        if text.ends_with('.') {
            text.pop();
        }
        return Some(format!("{text}+00"));
    }
    Some(value.to_owned())
}

/// Header and rows of a CSV file.
fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let header = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    let rows = reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect();
    (header, rows)
}

#[test]
fn csv_is_one_file_per_table_with_a_header_and_null_apart_from_empty() {
    let db = demo_db();
    cluster().psql(
        &db,
        "INSERT INTO variable (key, val, is_encrypted, description) VALUES \
           ('empty', '', false, NULL), ('quoted', 'a \"b\", c\r\nd', false, '')",
    );
    let dir = tempfile::tempdir().unwrap();
    export_to(&db, dir.path(), &["--format", "csv"]);
    let manifest = only_manifest(dir.path());
    assert_eq!(manifest.file_format, "csv");
    for (table, entry) in &manifest.tables {
        assert_eq!(entry.files.len(), 1, "{table}");
        let file = &entry.files[0];
        assert!(file.key.starts_with(&format!("{table}/part-")) && file.key.ends_with(".csv"));
        let bytes = std::fs::read(dir.path().join(&file.key)).unwrap();
        assert_eq!(bytes.len() as u64, file.bytes, "{table}");
        let digest: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(digest, file.sha256, "{table}");
        let (header, rows) = read_csv(&dir.path().join(&file.key));
        assert!(!header.is_empty(), "{table}");
        assert_eq!(rows.len() as u64, entry.rows, "{table}");
        assert!(rows.iter().all(|r| r.len() == header.len()), "{table}");
    }

    // Values equal PostgreSQL's text of the source columns.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cases: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::from([
        (
            "dag_run",
            vec![
                ("dag_id", "dag_id"),
                ("logical_date", "execution_date"),
                ("external_trigger", "external_trigger"),
                ("conf", "NULL"),
            ],
        ),
        (
            "task_instance",
            vec![
                ("task_id", "task_id"),
                ("map_index", "map_index"),
                ("duration", "duration"),
                ("queued_dttm", "queued_dttm"),
                ("executor_config", "executor_config"),
            ],
        ),
        ("variable", vec![("key", "key"), ("val", "val")]),
    ]);
    for (table, pairs) in cases {
        let file = dir.path().join(&manifest.tables[table].files[0].key);
        let (header, rows) = read_csv(&file);
        let mut actual: Vec<Vec<Option<String>>> = rows
            .iter()
            .map(|row| {
                pairs
                    .iter()
                    .filter(|(_, s)| *s != "NULL")
                    .map(|(c, _)| pg_text(&row[header.iter().position(|h| h == c).unwrap()]))
                    .collect()
            })
            .collect();
        actual.sort();
        let source: Vec<(String, String)> = pairs
            .iter()
            .filter(|(_, s)| *s != "NULL")
            .map(|(c, s)| (format!("t.{s}"), (*c).to_owned()))
            .collect();
        let mut expected = rt.block_on(source_rows(&db, table, &source));
        // The CSV crate reads "" as empty, like NULL.
        for row in &mut expected {
            for value in row.iter_mut() {
                if value.as_deref() == Some("") {
                    *value = None;
                }
            }
        }
        expected.sort();
        assert_eq!(actual, expected, "{table}");
    }
    // The pickled conf became JSON text.
    let (header, rows) = read_csv(&dir.path().join(&manifest.tables["dag_run"].files[0].key));
    let conf = header.iter().position(|h| h == "conf").unwrap();
    assert!(
        rows.iter()
            .any(|r| r[conf] == r#"{"source":"demo","retries":2}"#)
    );

    // PostgreSQL's CSV reader loads it back with NULL and "" apart, exactly as in the source.
    let file = dir.path().join(&manifest.tables["variable"].files[0].key);
    let (header, _) = read_csv(&file);
    let columns: Vec<String> = header.iter().map(|h| format!("\"{h}\" text")).collect();
    cluster().psql(
        &db,
        &format!("CREATE TABLE variable_csv ({})", columns.join(", ")),
    );
    cluster().psql(
        &db,
        &format!(
            "\\copy variable_csv FROM '{}' (FORMAT csv, HEADER)",
            file.display()
        ),
    );
    let differences = cluster().psql_value(
        &db,
        "SELECT count(*) FROM variable v FULL JOIN variable_csv c ON c.key = v.key \
         WHERE c.key IS NULL OR v.key IS NULL \
            OR c.val IS DISTINCT FROM v.val OR c.description IS DISTINCT FROM v.description",
    );
    assert_eq!(differences, "0");
    assert_eq!(
        cluster().psql_value(
            &db,
            "SELECT val = '' AND description IS NULL FROM variable_csv WHERE key = 'empty'"
        ),
        "t"
    );
}
