//! The Airflow DDL fixtures under `tests/fixtures/ddl/`, made by `scripts/airflow-ddl.sh`.

use std::path::PathBuf;

/// How a fixture's schema was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// `airflow db migrate` of that version on an empty database (ORM create_all + stamp).
    CreateAll,
    /// The alembic migration chain run up to the version's head.
    Migrations,
    /// A database of an older version upgraded by this version's `airflow db migrate`.
    Upgraded,
}

/// One DDL fixture.
#[derive(Debug, Clone)]
pub struct DdlFixture {
    /// File stem, e.g. `airflow-2.10.5`.
    pub name: String,
    /// Airflow release whose schema it is.
    pub airflow: String,
    /// Alembic revision it is at.
    pub revision: String,
    /// How it was made.
    pub method: Method,
}

/// Path of fixture `name`.
pub fn ddl_path(name: &str) -> PathBuf {
    super::repo_root()
        .join("tests/fixtures/ddl")
        .join(format!("{name}.sql"))
}

/// Every DDL fixture, from the header line each file starts with.
pub fn ddl_fixtures() -> Vec<DdlFixture> {
    let dir = super::repo_root().join("tests/fixtures/ddl");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("reading tests/fixtures/ddl") {
        let path = entry.expect("listing fixtures").path();
        if path.extension().is_none_or(|e| e != "sql") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("reading a fixture");
        let header = text.lines().next().unwrap_or_default();
        let field = |key: &str| {
            header
                .split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{key}=")))
                .unwrap_or_else(|| panic!("{}: header lacks {key}=", path.display()))
                .to_owned()
        };
        assert!(
            header.starts_with("-- contrail-fixture:"),
            "{}: no contrail-fixture header",
            path.display()
        );
        let method = match field("method").as_str() {
            "create_all" => Method::CreateAll,
            "migrations" => Method::Migrations,
            "upgraded" => Method::Upgraded,
            other => panic!("{}: unknown method {other}", path.display()),
        };
        out.push(DdlFixture {
            name: path
                .file_stem()
                .and_then(|s| s.to_str())
                .expect("utf-8 name")
                .to_owned(),
            airflow: field("airflow"),
            revision: field("revision"),
            method,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}
