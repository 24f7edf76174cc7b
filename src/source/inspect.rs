//! `contrail inspect`: what an Airflow database holds and what will matter when moving it.
//!
//! Reads only; every query is a catalog lookup, a count or a min/max.

use serde::Serialize;
use tokio_postgres::Client;

use crate::catalog::detect::{self, Difference, LiveSchema, LiveTable, quote_ident};
use crate::catalog::{Catalog, TableSchema};
use crate::error::{Error, Result};
use crate::source::{DatabaseUrl, connect};

/// Tables whose planner estimate exceeds this many rows are counted from the estimate unless
/// exact counts are asked for: an exact `count(*)` of a billion-row `log` table takes minutes.
pub const DEFAULT_EXACT_COUNT_LIMIT: i64 = 5_000_000;

/// The schema Airflow's tables live in unless configured otherwise.
pub const DEFAULT_SCHEMA: &str = "public";

/// Task-instance states that mean "not finished".
const IN_FLIGHT_TI_STATES: &[&str] = &[
    "running",
    "queued",
    "scheduled",
    "deferred",
    "up_for_reschedule",
    "up_for_retry",
    "restarting",
];

/// Dag-run states that mean "not finished".
const IN_FLIGHT_RUN_STATES: &[&str] = &["running", "queued"];

/// Options for [`inspect`].
#[derive(Debug, Clone)]
pub struct InspectOptions {
    schema: String,
    exact_count_limit: i64,
    assume_version: Option<String>,
}

impl Default for InspectOptions {
    fn default() -> Self {
        Self {
            schema: DEFAULT_SCHEMA.to_owned(),
            exact_count_limit: DEFAULT_EXACT_COUNT_LIMIT,
            assume_version: None,
        }
    }
}

impl InspectOptions {
    /// The PostgreSQL schema holding Airflow's tables. Default [`DEFAULT_SCHEMA`].
    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Count exactly up to this many (estimated) rows; `i64::MAX` always counts exactly.
    /// Default [`DEFAULT_EXACT_COUNT_LIMIT`].
    pub fn with_exact_count_limit(mut self, limit: i64) -> Self {
        self.exact_count_limit = limit;
        self
    }

    /// Treat the database as this Airflow version (`2.6.1`, `2.10`) instead of detecting it
    /// from `alembic_version`; for revisions the catalog does not know. Default: detect.
    pub fn with_assumed_version(mut self, version: Option<String>) -> Self {
        self.assume_version = version;
        self
    }
}

/// What `inspect` found.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    /// The database, without password.
    pub database: String,
    /// PostgreSQL server version.
    pub server_version: String,
    /// Catalog schema version detected.
    pub airflow_version: String,
    /// Airflow releases with that schema.
    pub airflow_releases: String,
    /// Revisions in `alembic_version`.
    pub alembic_revisions: Vec<String>,
    /// Whether the version was given by the user rather than detected.
    pub version_assumed: bool,
    /// One entry per catalog table present at that version.
    pub tables: Vec<TableReport>,
    /// Where the database differs from the catalog's description of its version.
    pub drift: Vec<Drift>,
    /// Things that matter for an export or import.
    pub warnings: Vec<Warning>,
}

/// Size and time range of one table.
#[derive(Debug, Clone, Serialize)]
pub struct TableReport {
    /// Table name.
    pub table: String,
    /// Row count.
    pub rows: i64,
    /// Whether `rows` is an exact count (else the planner's estimate).
    pub rows_exact: bool,
    /// Size on disk including indexes and TOAST, in bytes.
    pub bytes: i64,
    /// The time column(s), first non-NULL wins.
    pub time_column: String,
    /// Earliest time, RFC 3339 UTC.
    pub min_time: Option<String>,
    /// Latest time, RFC 3339 UTC.
    pub max_time: Option<String>,
}

/// One difference between the database and the catalog.
#[derive(Debug, Clone, Serialize)]
pub struct Drift {
    /// Table name.
    pub table: String,
    /// The difference.
    #[serde(flatten)]
    pub difference: Difference,
    /// Human-readable form.
    pub message: String,
}

/// Something that matters for moving this database.
#[derive(Debug, Clone, Serialize)]
pub struct Warning {
    /// Table concerned.
    pub table: String,
    /// Stable key: `pickled_xcom`, `archived_pickled_xcom`, `pickled_conf`, `no_dag_run`,
    /// `in_flight`, `encrypted_variables`, `encrypted_connections`, `moved_aside`.
    pub kind: &'static str,
    /// Rows concerned.
    pub rows: i64,
    /// What it means and what contrail will do.
    pub message: String,
}

/// Connects to `url`, detects the Airflow version and reports tables, drift and warnings.
///
/// # Errors
/// Connection and query failures; [`Error::NotAirflow`] and [`Error::UnknownRevision`] when the
/// database is not one the catalog recognises.
pub async fn inspect(url: &DatabaseUrl, options: &InspectOptions) -> Result<Inspection> {
    let catalog = Catalog::builtin()?;
    let client = connect(url).await?;
    let database = url.to_string();
    let revisions = detect::read_revisions(&client, &options.schema, &database).await?;
    let version = detect::resolve_version(catalog, &revisions, options.assume_version.as_deref())?;
    let live = detect::introspect(&client, &options.schema).await?;
    let server_version: String = client
        .query_one("SHOW server_version", &[])
        .await
        .map_err(Error::query("server_version"))?
        .get(0);

    let drift = detect::compare_schema(catalog, version, &live)
        .into_iter()
        .map(|(table, difference)| Drift {
            message: difference.to_string(),
            table,
            difference,
        })
        .collect();

    let mut tables = Vec::new();
    for table in catalog.schema(version).tables() {
        if let Some(live_table) = live.tables.get(&table.name) {
            tables.push(report_table(&client, options, table, live_table).await?);
        }
    }
    let warnings = Probe {
        client: &client,
        schema: &options.schema,
        live: &live,
    }
    .warnings()
    .await?;
    Ok(Inspection {
        database,
        server_version,
        airflow_version: version.id.clone(),
        airflow_releases: version.releases.clone(),
        alembic_revisions: revisions,
        version_assumed: options.assume_version.is_some(),
        tables,
        drift,
        warnings,
    })
}

async fn report_table(
    client: &Client,
    options: &InspectOptions,
    table: &TableSchema,
    live: &LiveTable,
) -> Result<TableReport> {
    let qualified = format!(
        "{}.{}",
        quote_ident(&options.schema),
        quote_ident(&table.name)
    );
    let stats = client
        .query_one(
            "SELECT c.reltuples::bigint, pg_total_relation_size(c.oid)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relname = $2",
            &[&options.schema, &table.name],
        )
        .await
        .map_err(Error::query(&table.name))?;
    let estimate: i64 = stats.get(0);
    let bytes: i64 = stats.get(1);
    // reltuples is -1 for a table never vacuumed or analysed: count it.
    let exact = estimate < 0 || estimate <= options.exact_count_limit;
    let rows = if exact {
        client
            .query_one(&format!("SELECT count(*) FROM {qualified}"), &[])
            .await
            .map_err(Error::query(&table.name))?
            .get(0)
    } else {
        estimate
    };
    // Only columns the database really has; naive timestamps are UTC (the session is UTC).
    let time_columns: Vec<&String> = table
        .time_columns
        .iter()
        .filter(|c| live.column(c).is_some())
        .collect();
    let (min_time, max_time) = if time_columns.is_empty() {
        (None, None)
    } else {
        let expr = time_columns
            .iter()
            .map(|c| format!("{}::timestamptz", quote_ident(c)))
            .collect::<Vec<_>>()
            .join(", ");
        let format = "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'";
        let row = client
            .query_one(
                &format!(
                    "SELECT to_char(min(coalesce({expr})), {format}), to_char(max(coalesce({expr})), {format}) FROM {qualified}"
                ),
                &[],
            )
            .await
            .map_err(Error::query(&table.name))?;
        (row.get(0), row.get(1))
    };
    Ok(TableReport {
        table: table.name.clone(),
        rows,
        rows_exact: exact,
        bytes,
        time_column: table.time_columns.join(" | "),
        min_time,
        max_time,
    })
}

/// Runs the warning queries, each only where the tables and columns it needs exist.
struct Probe<'a> {
    client: &'a Client,
    schema: &'a str,
    live: &'a LiveSchema,
}

impl Probe<'_> {
    fn has(&self, table: &str, column: &str) -> bool {
        self.live
            .tables
            .get(table)
            .is_some_and(|t| t.column(column).is_some())
    }

    fn is_bytea(&self, table: &str, column: &str) -> bool {
        self.live
            .tables
            .get(table)
            .and_then(|t| t.column(column))
            .is_some_and(|c| c.ty == crate::catalog::PgType::Bytea)
    }

    fn table(&self, name: &str) -> String {
        format!("{}.{}", quote_ident(self.schema), quote_ident(name))
    }

    async fn count(&self, table: &str, sql: &str) -> Result<i64> {
        let row = self
            .client
            .query_one(sql, &[])
            .await
            .map_err(Error::query(table))?;
        Ok(row.get(0))
    }

    async fn warnings(&self) -> Result<Vec<Warning>> {
        let mut out = Vec::new();
        let mut push = |table: &str, kind, rows: i64, message: String| {
            if rows > 0 {
                out.push(Warning {
                    table: table.to_owned(),
                    kind,
                    rows,
                    message,
                });
            }
        };

        if self.is_bytea("xcom", "value") {
            let n = self
                .count("xcom", &format!("SELECT count(*) FROM {} WHERE length(value) > 0 AND get_byte(value, 0) = 128", self.table("xcom")))
                .await?;
            push(
                "xcom",
                "pickled_xcom",
                n,
                format!(
                    "{n} XCom values are Python pickles; export decodes them to JSON without executing anything and keeps the bytes of any it cannot decode. Airflow 3 does not accept pickled XComs"
                ),
            );
        }
        if self.live.tables.contains_key("_xcom_archive") {
            let n = self
                .count(
                    "_xcom_archive",
                    &format!("SELECT count(*) FROM {}", self.table("_xcom_archive")),
                )
                .await?;
            push(
                "_xcom_archive",
                "archived_pickled_xcom",
                n,
                format!(
                    "{n} pickled XComs were moved to _xcom_archive by Airflow 3's upgrade and are no longer visible to Airflow"
                ),
            );
        }
        if self.is_bytea("dag_run", "conf") {
            let n = self
                .count(
                    "dag_run",
                    &format!(
                        "SELECT count(*) FROM {} WHERE conf IS NOT NULL",
                        self.table("dag_run")
                    ),
                )
                .await?;
            push(
                "dag_run",
                "pickled_conf",
                n,
                format!(
                    "{n} dag runs carry a pickled conf; export decodes it to JSON without executing anything and keeps the bytes of any it cannot decode"
                ),
            );
        }
        for table in [
            "task_instance",
            "xcom",
            "task_fail",
            "task_reschedule",
            "rendered_task_instance_fields",
        ] {
            if self.has(table, "execution_date")
                && self.has(table, "dag_id")
                && self.has("dag_run", "execution_date")
            {
                let n = self
                    .count(table, &format!(
                        "SELECT count(*) FROM {} t WHERE NOT EXISTS (SELECT 1 FROM {} r WHERE r.dag_id = t.dag_id AND r.execution_date = t.execution_date)",
                        self.table(table), self.table("dag_run")
                    ))
                    .await?;
                push(
                    table,
                    "no_dag_run",
                    n,
                    format!(
                        "{n} rows have no dag_run with the same dag_id and execution_date; Airflow 2.2+ cannot hold them. Export keeps and flags them; import reports and skips them"
                    ),
                );
            }
        }
        if self.has("task_instance", "state") {
            let n = self
                .count(
                    "task_instance",
                    &format!(
                        "SELECT count(*) FROM {} WHERE state IN ({})",
                        self.table("task_instance"),
                        sql_list(IN_FLIGHT_TI_STATES)
                    ),
                )
                .await?;
            push(
                "task_instance",
                "in_flight",
                n,
                format!(
                    "{n} task instances are not finished ({}); an export taken now sees them mid-flight and import will not carry them as runnable",
                    IN_FLIGHT_TI_STATES.join(", ")
                ),
            );
        }
        if self.has("dag_run", "state") {
            let n = self
                .count(
                    "dag_run",
                    &format!(
                        "SELECT count(*) FROM {} WHERE state IN ({})",
                        self.table("dag_run"),
                        sql_list(IN_FLIGHT_RUN_STATES)
                    ),
                )
                .await?;
            push(
                "dag_run",
                "in_flight",
                n,
                format!("{n} dag runs are running or queued"),
            );
        }
        if self.has("variable", "is_encrypted") {
            let n = self
                .count(
                    "variable",
                    &format!(
                        "SELECT count(*) FROM {} WHERE is_encrypted",
                        self.table("variable")
                    ),
                )
                .await?;
            push(
                "variable",
                "encrypted_variables",
                n,
                format!(
                    "{n} variables are Fernet-encrypted; importing them elsewhere needs --source-fernet-key and --target-fernet-key (or the same key on both sides)"
                ),
            );
        }
        if self.has("connection", "is_encrypted") && self.has("connection", "is_extra_encrypted") {
            let n = self
                .count(
                    "connection",
                    &format!(
                        "SELECT count(*) FROM {} WHERE is_encrypted OR is_extra_encrypted",
                        self.table("connection")
                    ),
                )
                .await?;
            push(
                "connection",
                "encrypted_connections",
                n,
                format!(
                    "{n} connections have Fernet-encrypted passwords or extras; they are exported only with --include-connections"
                ),
            );
        }
        for name in self
            .live
            .tables
            .keys()
            .filter(|t| t.starts_with("_airflow_moved"))
        {
            let n = self
                .count(name, &format!("SELECT count(*) FROM {}", self.table(name)))
                .await?;
            push(
                name,
                "moved_aside",
                n,
                format!(
                    "{n} rows were moved aside by an Airflow upgrade (dangling references); Airflow no longer reads them"
                ),
            );
        }
        Ok(out)
    }
}

fn sql_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ")
}
