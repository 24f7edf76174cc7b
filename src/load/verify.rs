//! Verification: per table, are the dataset's rows in the target, and is their content the
//! same? Content is compared column by column in the target's own representation (what the
//! import writes), through an MD5 of each row's content columns and an order-independent
//! checksum per table. Environment-local ids and references are not content.

use serde::Serialize;
use tokio_postgres::Client;

use crate::catalog::detect::quote_ident;
use crate::error::Result;
use crate::load::ImportOptions;
use crate::load::mapping::TableMapping;
use crate::load::merge::{import_error, key_match, source_select};
use crate::load::secrets::FernetKeys;
use crate::load::stage::stage_name;

/// Columns holding Fernet ciphertext, compared by plaintext when keys are given.
const SECRET_COLUMNS: &[(&str, &str)] = &[
    ("variable", "val"),
    ("connection", "password"),
    ("connection", "extra"),
];

/// The comparison of one table.
#[derive(Debug, Clone, Serialize)]
pub struct TableCheck {
    /// Table name.
    pub table: String,
    /// Dataset rows the target can hold (rows it cannot take are reported by the import).
    pub expected: u64,
    /// Of those, rows whose natural key is in the target.
    pub found: u64,
    /// Rows not in the target.
    pub missing: u64,
    /// Rows in the target whose content differs from the dataset's.
    pub differing: u64,
    /// MD5 over the sorted per-row content hashes of the dataset's rows found in the target.
    pub dataset_checksum: String,
    /// The same over the target's rows.
    pub target_checksum: String,
}

impl TableCheck {
    /// Whether every row is there with the same content.
    pub fn ok(&self) -> bool {
        self.missing == 0 && self.differing == 0
    }
}

/// The comparison of every table.
#[derive(Debug, Clone, Serialize)]
pub struct VerifySummary {
    /// Per table, in load order.
    pub tables: Vec<TableCheck>,
}

impl VerifySummary {
    /// Whether every table checked out.
    pub fn ok(&self) -> bool {
        self.tables.iter().all(TableCheck::ok)
    }
}

/// `contrail verify`: compares a dataset with a target database without changing it.
///
/// # Errors
/// As `contrail import` before it writes: the dataset, the target version, a failed query.
pub async fn verify(options: &ImportOptions) -> Result<VerifySummary> {
    crate::load::run::verify_only(options).await
}

/// Compares the staged rows of `mapping` with the target. `same_session` says the staging
/// table holds exactly what was written (so re-encrypted secrets compare as they are);
/// otherwise secrets are compared by plaintext under the target key.
///
/// # Errors
/// [`crate::Error::Import`] when a comparison query fails.
pub(crate) async fn check(
    client: &Client,
    mapping: &TableMapping,
    schema: &str,
    keys: &FernetKeys,
    same_session: bool,
) -> Result<TableCheck> {
    let table = mapping.table.as_str();
    let target = format!("{}.{}", quote_ident(schema), quote_ident(table));
    let stage = stage_name(table);
    let src = source_select(mapping, schema, &stage, &[]);
    let secret =
        |column: &str| !same_session && keys.rekeys() && SECRET_COLUMNS.contains(&(table, column));
    let content: Vec<String> = mapping
        .assignments
        .iter()
        .filter(|a| a.content && !secret(&a.column))
        .map(|a| quote_ident(&a.column))
        .collect();
    let row = |alias: &str| {
        if content.is_empty() {
            "''".to_owned()
        } else {
            let cols: Vec<String> = content.iter().map(|c| format!("{alias}.{c}")).collect();
            format!("md5(ROW({})::text)", cols.join(", "))
        }
    };
    let matches = key_match(mapping, "t", "x");
    let sql = format!(
        "SELECT count(*), count(*) FILTER (WHERE found),
                count(*) FILTER (WHERE found AND xh IS DISTINCT FROM th),
                coalesce(md5(string_agg(xh, '' ORDER BY xh) FILTER (WHERE found)), ''),
                coalesce(md5(string_agg(th, '' ORDER BY th) FILTER (WHERE found)), '')
           FROM (SELECT {xh} AS xh, {th} AS th, t.ctid IS NOT NULL AS found
                   FROM ({src}) x LEFT JOIN {target} t ON {matches}) y",
        xh = row("x"),
        th = row("t"),
    );
    let result = client
        .query_one(&sql, &[])
        .await
        .map_err(|e| import_error(table, e))?;
    let count = |i: usize| u64::try_from(result.get::<_, i64>(i)).unwrap_or(0);
    let (expected, found) = (count(0), count(1));
    let mut differing = count(2);
    for column in mapping.assignments.iter().filter(|a| secret(&a.column)) {
        let c = quote_ident(&column.column);
        let pairs = client
            .query(
                &format!(
                    "SELECT x.{c}::text, t.{c}::text FROM ({src}) x JOIN {target} t ON {matches}
                      WHERE x.{c} IS NOT NULL OR t.{c} IS NOT NULL"
                ),
                &[],
            )
            .await
            .map_err(|e| import_error(table, e))?;
        for pair in pairs {
            let (a, b): (Option<String>, Option<String>) = (pair.get(0), pair.get(1));
            let same = match (a, b) {
                (Some(a), Some(b)) => keys.same_plaintext(&a, &b).unwrap_or(a == b) || a == b,
                _ => false,
            };
            differing += u64::from(!same);
        }
    }
    Ok(TableCheck {
        table: table.to_owned(),
        expected,
        found,
        missing: expected.saturating_sub(found),
        differing,
        dataset_checksum: result.get(3),
        target_checksum: result.get(4),
    })
}
