//! Splitting a table into ranges that parallel workers read independently.
//!
//! On PostgreSQL 14+ ranges are ctid page ranges sized from the relation's size (a TID range
//! scan reads only those pages). On older servers, tables with an integer `id` key are split by
//! key range; others are read whole.

use tokio_postgres::Client;

use crate::catalog::PgType;
use crate::catalog::detect::{LiveTable, quote_ident};
use crate::error::{Error, Result};

/// Smallest range worth a worker: 1,024 pages of 8 KiB (8 MiB).
pub const DEFAULT_MIN_RANGE_PAGES: i64 = 1024;

/// Ranges per worker. One: every range repeats the query's fixed costs on the server (for
/// task_instance, a scan and hash of all of dag_run, ~0.3 s per range at 356k runs), and each
/// range writes its own files per day, so more ranges mean more and smaller files. Other
/// tables in the queue keep workers busy when ranges end unevenly.
const RANGES_PER_JOB: i64 = 1;

/// A part of a table, as a predicate on the table aliased `t`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// `None` reads the whole table.
    pub predicate: Option<String>,
    /// Human-readable description (`pages 0..1024`).
    pub label: String,
}

/// Plans ranges for `table` for `jobs` workers.
///
/// # Errors
/// [`Error::Query`] on catalog queries.
pub async fn split(
    client: &Client,
    schema: &str,
    table: &str,
    live: &LiveTable,
    jobs: usize,
    min_pages: i64,
) -> Result<Vec<Range>> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int,
                    pg_relation_size(c.oid) / current_setting('block_size')::int
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relname = $2",
            &[&schema, &table],
        )
        .await
        .map_err(Error::query(table))?;
    let server: i32 = row.get(0);
    let pages: i64 = row.get(1);
    let per_range = pages_per_range(pages, jobs, min_pages);
    if pages <= per_range {
        return Ok(vec![Range::whole()]);
    }
    if server >= 140_000 {
        return Ok(page_ranges(pages, per_range));
    }
    let has_int_id = live
        .column("id")
        .is_some_and(|c| matches!(c.ty, PgType::Integer | PgType::BigInt));
    if !has_int_id {
        return Ok(vec![Range::whole()]);
    }
    let bounds = client
        .query_one(
            &format!(
                "SELECT min(id)::int8, max(id)::int8 FROM {}.{}",
                quote_ident(schema),
                quote_ident(table)
            ),
            &[],
        )
        .await
        .map_err(Error::query(table))?;
    let (Some(min), Some(max)): (Option<i64>, Option<i64>) = (bounds.get(0), bounds.get(1)) else {
        return Ok(vec![Range::whole()]);
    };
    Ok(key_ranges(min, max, (pages / per_range).max(1)))
}

/// Pages per range: the table split into `jobs × RANGES_PER_JOB` ranges, rounded up (rounding
/// down left a last range of a few pages that repeated the query's fixed cost), at least
/// `min_pages`.
fn pages_per_range(pages: i64, jobs: usize, min_pages: i64) -> i64 {
    let wanted = (jobs as i64 * RANGES_PER_JOB).max(1);
    ((pages + wanted - 1) / wanted).max(min_pages.max(1))
}

impl Range {
    /// The whole table.
    pub fn whole() -> Range {
        Range {
            predicate: None,
            label: "whole table".to_owned(),
        }
    }
}

/// `[0, per) [per, 2per) … [k·per, ∞)`: the last range is open so pages added since the size
/// was measured are still read (the snapshot decides which of their rows are visible).
fn page_ranges(pages: i64, per_range: i64) -> Vec<Range> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < pages {
        let end = start + per_range;
        let predicate = if end >= pages {
            format!("t.ctid >= '({start},0)'::tid")
        } else {
            format!("t.ctid >= '({start},0)'::tid AND t.ctid < '({end},0)'::tid")
        };
        out.push(Range {
            predicate: Some(predicate),
            label: format!("pages {start}..{}", end.min(pages)),
        });
        start = end;
    }
    out
}

/// `count` contiguous id ranges covering `[min, max]`, the first and last open-ended.
fn key_ranges(min: i64, max: i64, count: i64) -> Vec<Range> {
    let span = (max - min) / count + 1;
    (0..count)
        .map(|i| {
            let lo = min + i * span;
            let hi = lo + span;
            let predicate = match (i == 0, i == count - 1) {
                (true, true) => None,
                (true, false) => Some(format!("t.id < {hi}")),
                (false, true) => Some(format!("t.id >= {lo}")),
                (false, false) => Some(format!("t.id >= {lo} AND t.id < {hi}")),
            };
            Range {
                predicate: predicate.or(Some("true".to_owned())),
                label: format!("ids {lo}..{hi}"),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_ranges_cover_everything_and_leave_the_end_open() {
        let ranges = page_ranges(2500, 1000);
        let predicates: Vec<_> = ranges
            .iter()
            .map(|r| r.predicate.clone().unwrap())
            .collect();
        assert_eq!(
            predicates,
            [
                "t.ctid >= '(0,0)'::tid AND t.ctid < '(1000,0)'::tid",
                "t.ctid >= '(1000,0)'::tid AND t.ctid < '(2000,0)'::tid",
                "t.ctid >= '(2000,0)'::tid",
            ]
        );
    }

    #[test]
    fn a_table_splits_into_one_range_per_job() {
        let per_range = pages_per_range(81_553, 2, DEFAULT_MIN_RANGE_PAGES);
        assert_eq!(page_ranges(81_553, per_range).len(), 2);
        assert_eq!(pages_per_range(100, 2, DEFAULT_MIN_RANGE_PAGES), 1024);
    }

    #[test]
    fn key_ranges_are_open_at_both_ends() {
        let ranges = key_ranges(1, 100, 3);
        assert_eq!(ranges.len(), 3);
        assert_eq!(ranges[0].predicate.as_deref(), Some("t.id < 35"));
        assert_eq!(
            ranges[1].predicate.as_deref(),
            Some("t.id >= 35 AND t.id < 69")
        );
        assert_eq!(ranges[2].predicate.as_deref(), Some("t.id >= 69"));
        assert_eq!(key_ranges(5, 5, 1)[0].predicate.as_deref(), Some("true"));
    }
}
