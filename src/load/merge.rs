//! From a staging table into the Airflow table: conflicts decided by the natural key, ids
//! and references resolved through the target's rows, inside the import's transaction.

use tokio_postgres::Client;

use crate::catalog::detect::quote_ident;
use crate::error::{Error, Result};
use crate::load::mapping::{S, TableMapping};
use crate::load::options::OnConflict;

/// Name of the temporary table mapping source job ids to the target's.
pub(crate) const JOB_MAP: &str = "contrail_job_map";

/// What merging one table did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Merged {
    /// Rows inserted.
    pub(crate) inserted: u64,
    /// Rows whose natural key existed and that were left as they were.
    pub(crate) skipped: u64,
    /// Rows whose natural key existed and that were overwritten.
    pub(crate) updated: u64,
    /// Rows the target cannot take, per reason.
    pub(crate) left_out: Vec<(String, u64)>,
}

/// The `SELECT` of the values to load: every assignment, over the staging table and the
/// joins, of the rows that pass every filter. `extra` adds leading select items.
pub(crate) fn source_select(mapping: &TableMapping, stage: &str, extra: &[String]) -> String {
    let mut items: Vec<String> = extra.to_vec();
    items.extend(
        mapping
            .assignments
            .iter()
            .map(|a| format!("{} AS {}", a.expr, quote_ident(&a.column))),
    );
    let filter = if mapping.filters.is_empty() {
        String::new()
    } else {
        let keep: Vec<&str> = mapping.filters.iter().map(|f| f.keep.as_str()).collect();
        format!(" WHERE {}", keep.join(" AND "))
    };
    format!(
        "SELECT {} FROM {} {S} {}{filter}",
        items.join(", "),
        quote_ident(stage),
        mapping.joins.join(" ")
    )
}

/// The join condition between target row `t` and loaded row `x` on the natural key. NULLable
/// key columns compare NULL-safely through their text form, which keeps the join hashable.
pub(crate) fn key_match(mapping: &TableMapping, t: &str, x: &str) -> String {
    mapping
        .key
        .iter()
        .map(|k| {
            let c = quote_ident(&k.column);
            if k.nullable {
                format!("coalesce({t}.{c}::text, E'\\\\N') = coalesce({x}.{c}::text, E'\\\\N')")
            } else {
                format!("{t}.{c} = {x}.{c}")
            }
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// Merges the staging table `stage` into `mapping.table`.
///
/// # Errors
/// [`Error::Import`] when `--on-conflict fail` finds existing rows, or the target refuses a
/// row (a constraint, a value too long); the caller rolls back.
pub(crate) async fn merge(
    client: &Client,
    mapping: &TableMapping,
    schema: &str,
    stage: &str,
    staged: u64,
    on_conflict: OnConflict,
) -> Result<Merged> {
    let table = mapping.table.as_str();
    let target = format!("{}.{}", quote_ident(schema), quote_ident(table));
    let query_error = |e: tokio_postgres::Error| import_error(table, e);
    if mapping.key.is_empty() {
        return Err(Error::Import {
            table: table.to_owned(),
            message: "no natural key can be formed in this target version; nothing can be \
                      matched safely"
                .to_owned(),
        });
    }
    if table == "job" {
        return merge_jobs(client, mapping, &target, stage, on_conflict).await;
    }
    let src = source_select(mapping, stage, &[]);
    let matches = key_match(mapping, "t", "x");
    let columns = assigned_columns(mapping);
    let loadable = count(client, &format!("SELECT count(*) FROM ({src}) x"), table).await?;
    let target_empty = !client
        .query_one(&format!("SELECT EXISTS (SELECT 1 FROM {target})"), &[])
        .await
        .map_err(query_error)?
        .get::<_, bool>(0);
    let existing = if target_empty {
        0
    } else {
        count(
            client,
            &format!(
                "SELECT count(*) FROM ({src}) x WHERE EXISTS (SELECT 1 FROM {target} t WHERE {matches})"
            ),
            table,
        )
        .await?
    };
    let mut merged = Merged::default();
    if existing > 0 {
        match on_conflict {
            OnConflict::Fail => return Err(conflicts_refused(mapping, existing)),
            OnConflict::Update => {
                merged.updated = update(client, mapping, &target, &src, &matches, None).await?;
            }
            OnConflict::Skip => {
                merged.skipped = existing;
                // Every environment is seeded with default_pool: its slots follow the source.
                if table == "slot_pool" {
                    let updated = update(
                        client,
                        mapping,
                        &target,
                        &src,
                        &matches,
                        Some("x.pool = 'default_pool'"),
                    )
                    .await?;
                    merged.skipped -= updated;
                    merged.updated = updated;
                }
            }
        }
    }
    let anti_join = if target_empty {
        String::new()
    } else {
        format!(" WHERE NOT EXISTS (SELECT 1 FROM {target} t WHERE {matches})")
    };
    let insert = format!(
        "INSERT INTO {target} ({cols}) SELECT {cols} FROM ({src}) x{anti_join}",
        cols = columns.join(", ")
    );
    merged.inserted = client.execute(&insert, &[]).await.map_err(query_error)?;
    merged.left_out = left_out(client, mapping, stage, staged.saturating_sub(loadable)).await?;
    Ok(merged)
}

/// The target columns the load fills, quoted.
fn assigned_columns(mapping: &TableMapping) -> Vec<String> {
    mapping
        .assignments
        .iter()
        .map(|a| quote_ident(&a.column))
        .collect()
}

/// `col = x.col` for every content column outside the natural key: what `--on-conflict update`
/// overwrites (ids and references stay the target's).
fn update_sets(mapping: &TableMapping) -> Vec<String> {
    mapping
        .assignments
        .iter()
        .filter(|a| a.content && !mapping.key.iter().any(|k| k.column == a.column))
        .map(|a| format!("{c} = x.{c}", c = quote_ident(&a.column)))
        .collect()
}

/// `--on-conflict fail` found `existing` rows whose natural key is in the target.
fn conflicts_refused(mapping: &TableMapping, existing: u64) -> Error {
    let key: Vec<&str> = mapping.key.iter().map(|k| k.column.as_str()).collect();
    Error::Import {
        table: mapping.table.clone(),
        message: format!(
            "{existing} rows of the dataset already exist in the target (same {}); nothing was \
             written. Use --on-conflict skip or update",
            key.join(", ")
        ),
    }
}

/// Overwrites the content columns of existing rows; returns how many.
async fn update(
    client: &Client,
    mapping: &TableMapping,
    target: &str,
    src: &str,
    matches: &str,
    only: Option<&str>,
) -> Result<u64> {
    let sets = update_sets(mapping);
    if sets.is_empty() {
        return Ok(0);
    }
    let only = only.map(|o| format!(" AND {o}")).unwrap_or_default();
    let sql = format!(
        "UPDATE {target} t SET {} FROM ({src}) x WHERE {matches}{only}",
        sets.join(", ")
    );
    client
        .execute(&sql, &[])
        .await
        .map_err(|e| import_error(&mapping.table, e))
}

/// Jobs have serial ids that other tables name: each staged job gets the id of the target's
/// job with the same natural key, or a new one from the target's sequence, recorded in
/// [`JOB_MAP`] for the tables loaded after it.
async fn merge_jobs(
    client: &Client,
    mapping: &TableMapping,
    target: &str,
    stage: &str,
    on_conflict: OnConflict,
) -> Result<Merged> {
    let table = mapping.table.as_str();
    let src = source_select(mapping, stage, &[format!("{S}.id AS _contrail_old_id")]);
    let keys: Vec<String> = mapping.key.iter().map(|k| quote_ident(&k.column)).collect();
    let matches = key_match(mapping, "e", "x");
    let sql = format!(
        "DROP TABLE IF EXISTS {JOB_MAP};
         CREATE TEMPORARY TABLE {JOB_MAP} (old_id integer PRIMARY KEY, existing_id integer, new_id integer);
         INSERT INTO {JOB_MAP} (old_id, existing_id)
           SELECT x._contrail_old_id, e.id FROM ({src}) x
           LEFT JOIN (SELECT DISTINCT ON ({k}) {k}, id FROM {target} ORDER BY {k}, id) e ON {matches};
         UPDATE {JOB_MAP} SET new_id = coalesce(existing_id, nextval(pg_get_serial_sequence('{target_literal}', 'id')));
         ANALYZE {JOB_MAP};",
        k = keys.join(", "),
        target_literal = target.replace('\'', "''"),
    );
    client
        .batch_execute(&sql)
        .await
        .map_err(|e| import_error(table, e))?;
    let existing = count(
        client,
        &format!("SELECT count(*) FROM {JOB_MAP} WHERE existing_id IS NOT NULL"),
        table,
    )
    .await?;
    let mut merged = Merged::default();
    if existing > 0 {
        match on_conflict {
            OnConflict::Fail => return Err(conflicts_refused(mapping, existing)),
            OnConflict::Skip => merged.skipped = existing,
            OnConflict::Update => {
                let sets = update_sets(mapping);
                merged.updated = client
                    .execute(
                        &format!(
                            "UPDATE {target} t SET {} FROM ({src}) x JOIN {JOB_MAP} m ON m.old_id = x._contrail_old_id
                             WHERE t.id = m.existing_id",
                            sets.join(", ")
                        ),
                        &[],
                    )
                    .await
                    .map_err(|e| import_error(table, e))?;
            }
        }
    }
    let columns = assigned_columns(mapping);
    let insert = format!(
        "INSERT INTO {target} (id, {cols}) SELECT m.new_id, {xcols} FROM ({src}) x
         JOIN {JOB_MAP} m ON m.old_id = x._contrail_old_id WHERE m.existing_id IS NULL",
        cols = columns.join(", "),
        xcols = columns
            .iter()
            .map(|c| format!("x.{c}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    merged.inserted = client
        .execute(&insert, &[])
        .await
        .map_err(|e| import_error(table, e))?;
    Ok(merged)
}

/// Counts, per filter, the staged rows it leaves out (only when some were).
async fn left_out(
    client: &Client,
    mapping: &TableMapping,
    stage: &str,
    total: u64,
) -> Result<Vec<(String, u64)>> {
    if total == 0 {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for (i, filter) in mapping.filters.iter().enumerate() {
        // Each row is counted once, under the first filter that leaves it out.
        let mut conditions: Vec<String> = mapping.filters[..i]
            .iter()
            .map(|f| format!("({})", f.keep))
            .collect();
        conditions.push(format!("NOT ({})", filter.keep));
        let sql = format!(
            "SELECT count(*) FROM {} {S} {} WHERE {}",
            quote_ident(stage),
            mapping.joins.join(" "),
            conditions.join(" AND ")
        );
        let n = count(client, &sql, &mapping.table).await?;
        if n > 0 {
            out.push((filter.reason.clone(), n));
        }
    }
    Ok(out)
}

async fn count(client: &Client, sql: &str, table: &str) -> Result<u64> {
    let n: i64 = client
        .query_one(sql, &[])
        .await
        .map_err(|e| import_error(table, e))?
        .get(0);
    Ok(u64::try_from(n).unwrap_or(0))
}

/// A failed statement: the server's own message (constraint, column, value) and what it means
/// for the user.
pub(crate) fn import_error(table: &str, error: tokio_postgres::Error) -> Error {
    // A failing row of these tables would print secrets (constraint messages quote values).
    let secret = matches!(table, "variable" | "connection");
    let detail = match error.as_db_error() {
        Some(db) if secret => db.message().to_owned(),
        Some(db) => {
            let mut text = db.message().to_owned();
            if let Some(detail) = db.detail() {
                text.push_str(&format!(" ({detail})"));
            }
            if let Some(constraint) = db.constraint() {
                text.push_str(&format!(" [constraint {constraint}]"));
            }
            text
        }
        None if error.is_closed() => "the connection to the target database was lost".to_owned(),
        None => error.to_string(),
    };
    Error::Import {
        table: table.to_owned(),
        message: format!("{detail}; the import was rolled back and the target is unchanged"),
    }
}
