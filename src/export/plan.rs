//! What an export will do, decided before any data moves: which tables, which version, which
//! ranges and time windows. `--dry-run` prints exactly this.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::catalog::detect::{LiveSchema, quote_ident};
use crate::catalog::{Catalog, SchemaVersion};
use crate::error::{Error, Result};

/// Tables that are exported only when asked for, because they hold secrets.
pub const SECRET_TABLES: &[&str] = &["connection"];

/// Which tables to export.
#[derive(Debug, Clone, Default)]
pub struct TableSelection {
    /// Only these (default: every table the catalog knows at the source version).
    pub only: Option<Vec<String>>,
    /// Never these.
    pub exclude: Vec<String>,
    /// Include `connection` (passwords and extras, as stored).
    pub include_connections: bool,
}

impl TableSelection {
    /// The tables to export at `version`, in catalog order.
    ///
    /// # Errors
    /// [`Error::Export`] naming a requested table that the catalog does not know, or that does
    /// not exist at this version or in the database.
    pub fn resolve(
        &self,
        catalog: &Catalog,
        version: &SchemaVersion,
        live: &LiveSchema,
    ) -> Result<Vec<String>> {
        let schema = catalog.schema(version);
        let available: Vec<&str> = catalog
            .canonical()
            .iter()
            .map(|c| c.name.as_str())
            .filter(|name| schema.table(name).is_some() && live.tables.contains_key(*name))
            .collect();
        let known: Vec<&str> = catalog
            .canonical()
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        for name in self.only.iter().flatten().chain(&self.exclude) {
            if !known.contains(&name.as_str()) {
                return Err(Error::Export {
                    message: format!(
                        "unknown table {name}; contrail exports {}",
                        known.join(", ")
                    ),
                });
            }
        }
        if let Some(only) = &self.only
            && let Some(missing) = only.iter().find(|t| !available.contains(&t.as_str()))
        {
            return Err(Error::Export {
                message: format!(
                    "table {missing} does not exist in this Airflow {} database; it has {}",
                    version.id,
                    available.join(", ")
                ),
            });
        }
        Ok(available
            .into_iter()
            .filter(|t| {
                self.only
                    .as_ref()
                    .is_none_or(|only| only.iter().any(|o| o == t))
            })
            .filter(|t| !self.exclude.iter().any(|e| e == t))
            .filter(|t| {
                self.include_connections
                    || !SECRET_TABLES.contains(t)
                    || self
                        .only
                        .as_ref()
                        .is_some_and(|only| only.iter().any(|o| o == t))
            })
            .map(str::to_owned)
            .collect())
    }
}

/// A half-open window `[since, until)` applied to each table's time columns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeWindow {
    /// Inclusive lower bound.
    pub since: Option<DateTime<Utc>>,
    /// Exclusive upper bound.
    pub until: Option<DateTime<Utc>>,
}

impl TimeWindow {
    /// Whether it restricts anything.
    pub fn is_open(&self) -> bool {
        self.since.is_none() && self.until.is_none()
    }

    /// The SQL predicate on `t` for a table with these time columns (first non-NULL wins), or
    /// `None` when the window is open. Tables without time columns are never restricted.
    ///
    /// A row whose time columns are all NULL counts as older than any time: it is in a window
    /// without a lower bound and in no other. So the first of a series of `--incremental`
    /// exports includes it and the next ones do not, and no row falls between two windows.
    pub fn predicate(&self, time_columns: &[String]) -> Option<String> {
        if self.is_open() || time_columns.is_empty() {
            return None;
        }
        let time = format!(
            "coalesce({})",
            time_columns
                .iter()
                .map(|c| format!("t.{}::timestamptz", quote_ident(c)))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut parts = Vec::new();
        if let Some(since) = self.since {
            parts.push(format!("{time} >= '{}'::timestamptz", rfc3339(since)));
        }
        match (self.since, self.until) {
            (None, Some(until)) => parts.push(format!(
                "({time} < '{}'::timestamptz OR {time} IS NULL)",
                rfc3339(until)
            )),
            (Some(_), Some(until)) => {
                parts.push(format!("{time} < '{}'::timestamptz", rfc3339(until)));
            }
            (_, None) => {}
        }
        Some(parts.join(" AND "))
    }
}

/// RFC 3339 with microseconds and `Z`.
pub fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The plan of one table.
#[derive(Debug, Clone, Serialize)]
pub struct TablePlan {
    /// Table name.
    pub table: String,
    /// Planner estimate of the table's rows (before the window).
    pub estimated_rows: i64,
    /// Ranges read in parallel.
    pub ranges: Vec<String>,
    /// Time columns the window applies to.
    pub time_columns: Vec<String>,
    /// The window predicate, if any.
    pub window: Option<String>,
    /// Where its files go.
    pub object_keys: String,
    /// Catalog columns the live table lacks (exported as NULL).
    pub missing_columns: Vec<String>,
}

/// The plan of a whole export.
#[derive(Debug, Clone, Serialize)]
pub struct ExportPlan {
    /// Export identifier.
    pub export_id: String,
    /// Destination.
    pub destination: String,
    /// Source schema version.
    pub airflow_version: String,
    /// Snapshot time.
    pub snapshot_time: String,
    /// Window bounds, RFC 3339.
    pub since: Option<String>,
    /// Window bounds, RFC 3339.
    pub until: Option<String>,
    /// Tables.
    pub tables: Vec<TablePlan>,
    /// Manifest key, written last.
    pub manifest: String,
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn windows_become_predicates_on_the_first_non_null_time() {
        let window = TimeWindow {
            since: Some(Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()),
            until: None,
        };
        assert_eq!(
            window
                .predicate(&["start_date".into(), "end_date".into()])
                .as_deref(),
            Some(
                "coalesce(t.\"start_date\"::timestamptz, t.\"end_date\"::timestamptz) >= '2024-01-01T00:00:00.000000Z'::timestamptz"
            )
        );
        assert_eq!(window.predicate(&[]), None);
        let until = TimeWindow {
            since: None,
            until: Some(Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()),
        };
        assert_eq!(
            until.predicate(&["dttm".into()]).as_deref(),
            Some(
                "(coalesce(t.\"dttm\"::timestamptz) < '2024-01-01T00:00:00.000000Z'::timestamptz \
                 OR coalesce(t.\"dttm\"::timestamptz) IS NULL)"
            )
        );
        assert_eq!(TimeWindow::default().predicate(&["x".into()]), None);
    }
}
