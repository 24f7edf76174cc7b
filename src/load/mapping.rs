//! How one canonical table becomes rows of one Airflow table at the target's version.
//!
//! The catalog says, per version, which Airflow column each canonical column is read from.
//! Importing inverts that: a target column read as a plain column (a rename included) takes
//! that canonical column; a target column read through a rule takes the rule's inverse
//! ([`inverse_rule`]); environment-local ids and references are resolved through the target's
//! own rows ([`reference`]). Every expression is SQL over the staging table `s`, so PostgreSQL
//! does the work inside one `INSERT … SELECT`.

use std::collections::BTreeSet;

use crate::catalog::detect::{LiveTable, quote_ident};
use crate::catalog::{CanonicalTable, CanonicalType, PgType, SchemaVersion, Source, TableSchema};
use crate::error::{Error, Result};
use crate::load::options::DagVersionPolicy;

/// Alias of the staging table in every expression.
pub(crate) const S: &str = "s";

/// Staged column holding `dag_run.conf` pickled for targets that store bytes.
pub(crate) const CONF_PICKLE: &str = "_contrail_conf_pickle";
/// Staged column holding a fresh UUIDv7 per row (Airflow 3 task instance ids).
pub(crate) const NEW_UUID: &str = "_contrail_new_uuid";

/// Task-instance states that mean "still in flight"; imported as `failed`.
pub(crate) const IN_FLIGHT_TI: &[&str] = &[
    "running",
    "queued",
    "scheduled",
    "deferred",
    "up_for_reschedule",
    "up_for_retry",
    "restarting",
];
/// Dag-run states that mean "still in flight"; imported as `failed`.
pub(crate) const IN_FLIGHT_RUN: &[&str] = &["running", "queued"];

/// A column of the staging table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StageColumn {
    /// Name: the canonical column's, or one of the `_contrail_*` derived names.
    pub(crate) name: String,
    /// Its PostgreSQL type.
    pub(crate) ty: PgType,
}

/// One target column and the expression that fills it.
#[derive(Debug, Clone)]
pub(crate) struct Assignment {
    /// Target column.
    pub(crate) column: String,
    /// SQL over `s` and the joins.
    pub(crate) expr: String,
    /// Whether the value is the row's content (compared by verification and written by
    /// `--on-conflict update`), rather than an environment-local id or reference.
    pub(crate) content: bool,
}

/// Rows of the staging table the target cannot take, and why.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    /// SQL condition over `s` and the joins that keeps a row.
    pub(crate) keep: String,
    /// What the dropped rows are, for the report.
    pub(crate) reason: String,
}

/// The complete recipe for loading one table.
#[derive(Debug, Clone)]
pub(crate) struct TableMapping {
    /// Target table name.
    pub(crate) table: String,
    /// Staging table columns, in COPY order.
    pub(crate) stage: Vec<StageColumn>,
    /// Target columns to fill.
    pub(crate) assignments: Vec<Assignment>,
    /// `LEFT JOIN` clauses resolving references.
    pub(crate) joins: Vec<String>,
    /// Conditions a staged row must meet to be loaded.
    pub(crate) filters: Vec<Filter>,
    /// Target columns that identify a row (the natural key as the target spells it).
    pub(crate) key: Vec<KeyColumn>,
    /// Canonical columns with no place in the target, for the report.
    pub(crate) dropped: Vec<String>,
    /// Notes on what the mapping did (ids NULLed, values changed), for the report.
    pub(crate) notes: Vec<String>,
}

/// One column of the natural key in the target.
#[derive(Debug, Clone)]
pub(crate) struct KeyColumn {
    /// Target column.
    pub(crate) column: String,
    /// Whether it may be NULL (then compared NULL-safely).
    pub(crate) nullable: bool,
}

/// What the mapping needs to know about the target besides its schema.
#[derive(Debug, Clone)]
pub(crate) struct TargetContext<'a> {
    /// Qualified-name prefix of the target schema (`"public".`).
    pub(crate) schema: &'a str,
    /// The target's version.
    pub(crate) version: &'a SchemaVersion,
    /// Whether `job` rows are imported in this run (so job ids can be remapped).
    pub(crate) job_map: Option<&'a str>,
    /// Where dag_version references point.
    pub(crate) dag_version: DagVersionPolicy,
    /// Whether the target has a `dag_version` table.
    pub(crate) has_dag_version: bool,
}

impl TargetContext<'_> {
    fn qualified(&self, table: &str) -> String {
        format!("{}.{}", quote_ident(self.schema), quote_ident(table))
    }
}

/// Builds the mapping of `canonical` (files written from `source_version`, holding the
/// columns `present`) onto `target` as the live database has it.
///
/// # Errors
/// [`Error::Import`] when a NOT NULL target column has no value and no default.
#[allow(clippy::too_many_arguments)]
pub(crate) fn map_table(
    canonical: &CanonicalTable,
    source_version: &SchemaVersion,
    source_table: Option<&TableSchema>,
    present: &BTreeSet<String>,
    target: &TableSchema,
    live: &LiveTable,
    defaults: &std::collections::BTreeMap<String, String>,
    ctx: &TargetContext<'_>,
) -> Result<TableMapping> {
    let table = canonical.name.as_str();
    let mut builder = Builder {
        canonical,
        present,
        ctx,
        stage: Vec::new(),
        joins: Vec::new(),
        used: BTreeSet::new(),
        notes: Vec::new(),
        filters: Vec::new(),
    };
    for column in &canonical.columns {
        if present.contains(&column.name) {
            builder.stage.push(StageColumn {
                name: column.name.clone(),
                ty: crate::source::query::pg_type_for(column.ty),
            });
        }
    }

    let mut assignments = Vec::new();
    for live_column in &live.columns {
        let name = live_column.name.as_str();
        let Some(mut assignment) = builder.assign(table, name, &live_column.ty, target)? else {
            if !live_column.nullable && !defaults.contains_key(name) && !live_column.serial {
                return Err(Error::Import {
                    table: table.to_owned(),
                    message: format!(
                        "the target's column {name} is NOT NULL, but nothing in the dataset fills \
                         it and it has no default; this target schema is not one contrail knows \
                         how to fill (is it an Airflow version newer than the catalog's?)"
                    ),
                });
            }
            continue;
        };
        if !live_column.nullable
            && let Some(default) = defaults.get(name)
        {
            assignment.expr = format!("coalesce({}, {default})", assignment.expr);
        }
        assignments.push(assignment);
    }

    builder.reference_filters(target, &assignments);
    if table == "xcom"
        && matches!(
            live.column("value").map(|c| &c.ty),
            Some(PgType::Json | PgType::Jsonb)
        )
        && present.contains("value_raw")
    {
        builder.filters.push(Filter {
            keep: format!("{S}.value_raw IS NULL"),
            reason: "XCom values kept as undecodable bytes (pickles): this Airflow version \
                     stores JSON only"
                .to_owned(),
        });
    }
    let key = builder.key(target, live, &assignments);
    let dropped = canonical
        .columns
        .iter()
        .filter(|c| present.contains(&c.name) && !builder.used.contains(&c.name))
        .filter(|c| {
            // Carried by the source, and not derivable from what the target keeps.
            source_table.is_some_and(|read| {
                !matches!(canonical.source_of(c, source_version, read), Source::Null)
            }) && matches!(canonical.source_of(c, ctx.version, target), Source::Null)
        })
        .map(|c| c.name.clone())
        .collect();
    Ok(TableMapping {
        table: table.to_owned(),
        stage: builder.stage,
        assignments,
        joins: builder.joins,
        filters: builder.filters,
        key,
        dropped,
        notes: builder.notes,
    })
}

struct Builder<'a> {
    canonical: &'a CanonicalTable,
    present: &'a BTreeSet<String>,
    ctx: &'a TargetContext<'a>,
    stage: Vec<StageColumn>,
    joins: Vec<String>,
    used: BTreeSet<String>,
    notes: Vec<String>,
    filters: Vec<Filter>,
}

impl Builder<'_> {
    /// `s."name"` when the dataset has the column, else NULL.
    fn col(&mut self, name: &str) -> String {
        if self.present.contains(name) {
            self.used.insert(name.to_owned());
            format!("{S}.{}", quote_ident(name))
        } else {
            "NULL".to_owned()
        }
    }

    fn join(&mut self, clause: String) {
        if !self.joins.contains(&clause) {
            self.joins.push(clause);
        }
    }

    fn note(&mut self, note: String) {
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }

    fn derived(&mut self, name: &str, ty: PgType) -> String {
        if !self.stage.iter().any(|c| c.name == name) {
            self.stage.push(StageColumn {
                name: name.to_owned(),
                ty,
            });
        }
        format!("{S}.{}", quote_ident(name))
    }

    /// The assignment for target column `name`, or `None` to leave it to its default.
    fn assign(
        &mut self,
        table: &str,
        name: &str,
        ty: &PgType,
        target: &TableSchema,
    ) -> Result<Option<Assignment>> {
        let local = |expr: String| Assignment {
            column: name.to_owned(),
            expr,
            content: false,
        };
        if let Some(expr) = self.reference(table, name, ty)? {
            return Ok(expr.map(local));
        }
        let version = self.ctx.version;
        // A canonical column read from this target column as is (a rename included). When
        // several are (dag_run.logical_date and run_after both come from execution_date before
        // 2.2), the same-named one wins, then the first.
        let mut plain = None;
        let mut ruled = None;
        for column in &self.canonical.columns {
            match self.canonical.source_of(column, version, target) {
                Source::Column(from)
                    if from == name && (plain.is_none() || column.name == name) =>
                {
                    plain = Some(column);
                }
                Source::Rule { name: rule, args } if args.first().is_some_and(|a| a == name) => {
                    ruled.get_or_insert((column, rule));
                }
                _ => {}
            }
        }
        if let Some(column) = plain {
            let expr = self.col(&column.name);
            let expr = self.state_rule(table, name, expr);
            let Some(expr) = self.convert(table, name, expr, column.ty, ty) else {
                return Ok(None);
            };
            return Ok(Some(Assignment {
                column: name.to_owned(),
                expr,
                content: true,
            }));
        }
        if let Some((column, rule)) = ruled {
            let expr = self.inverse_rule(table, name, &column.name, &rule, ty)?;
            return Ok(expr.map(|expr| Assignment {
                column: name.to_owned(),
                expr,
                content: true,
            }));
        }
        Ok(None)
    }

    /// Airflow 3's jsonb, bytea and the like from a canonical value; `None` when the value
    /// cannot be kept in this column type (it is then left to the column's default).
    fn convert(
        &mut self,
        table: &str,
        name: &str,
        expr: String,
        from: CanonicalType,
        to: &PgType,
    ) -> Option<String> {
        use CanonicalType as C;
        Some(match (from, to) {
            (C::Json | C::Utf8, PgType::Jsonb) => format!("({expr})::jsonb"),
            (C::Json | C::Utf8, PgType::Json) => format!("({expr})::json"),
            (C::Json | C::Utf8, PgType::Bytea) => format!("convert_to({expr}, 'UTF8')"),
            (C::Timestamp, PgType::Timestamp) => format!("(({expr}) AT TIME ZONE 'UTC')"),
            (C::Utf8, PgType::SmallInt | PgType::Integer | PgType::BigInt) => {
                // Notes' user_id: a user id of the old environment's auth database, text in
                // canonical form; an integer column refers to the target's ab_user rows.
                self.note(format!(
                    "{table}.{name}: the source's user ids do not exist in the target's user \
                     table; left NULL"
                ));
                return None;
            }
            _ => expr,
        })
    }

    /// In-flight states become `failed` (nothing resumes or re-runs in the new environment).
    fn state_rule(&mut self, table: &str, name: &str, expr: String) -> String {
        let states = match (table, name) {
            ("dag_run", "state") => IN_FLIGHT_RUN,
            ("task_instance", "state") => IN_FLIGHT_TI,
            _ => return expr,
        };
        format!(
            "CASE WHEN {expr} IN ({}) THEN 'failed' ELSE {expr} END",
            sql_list(states)
        )
    }

    /// Whether the row was in flight at export time (its deferral state is then dropped).
    fn in_flight(&mut self) -> String {
        let state = self.col("state");
        format!("coalesce({state} IN ({}), false)", sql_list(IN_FLIGHT_TI))
    }

    /// Environment-local ids and references: `Some(None)` leaves the column to its default,
    /// `Some(Some(expr))` resolves it, `None` says the column is not a reference.
    fn reference(
        &mut self,
        table: &str,
        name: &str,
        ty: &PgType,
    ) -> Result<Option<Option<String>>> {
        let ctx = self.ctx;
        if self.present.contains(name) {
            self.used.insert(name.to_owned());
        }
        Ok(Some(match (table, name) {
            // Fresh UUIDv7 per row, made when the row is staged.
            ("task_instance", "id") | ("task_instance_history", "task_instance_id")
                if *ty == PgType::Uuid =>
            {
                Some(self.derived(NEW_UUID, PgType::Uuid))
            }
            // Serial ids are the target's: left to their sequence.
            (_, "id") => None,
            (_, "dag_run_id") => {
                let (dag_id, run_id) = (self.col("dag_id"), self.col("run_id"));
                let dag_run = ctx.qualified("dag_run");
                self.join(format!(
                    "LEFT JOIN {dag_run} dr ON dr.dag_id = {dag_id} AND dr.run_id = {run_id}"
                ));
                self.filters.push(Filter {
                    keep: "dr.id IS NOT NULL".to_owned(),
                    reason: "no dag run with this (dag_id, run_id) in the dataset or the target"
                        .to_owned(),
                });
                Some("dr.id".to_owned())
            }
            (_, "ti_id") => {
                let on = ["dag_id", "task_id", "run_id", "map_index"]
                    .map(|c| format!("ti.{c} = {}", self.col(c)))
                    .join(" AND ");
                let task_instance = ctx.qualified("task_instance");
                self.join(format!("LEFT JOIN {task_instance} ti ON {on}"));
                self.filters.push(Filter {
                    keep: "ti.id IS NOT NULL".to_owned(),
                    reason: "no task instance with this key in the dataset or the target"
                        .to_owned(),
                });
                Some("ti.id".to_owned())
            }
            (_, "job_id" | "queued_by_job_id" | "creating_job_id" | "scheduled_by_job_id") => {
                let old = self.col(name);
                match ctx.job_map {
                    Some(map) if old != "NULL" => {
                        let alias = format!("jm_{name}");
                        self.join(format!("LEFT JOIN {map} {alias} ON {alias}.old_id = {old}"));
                        Some(format!("{alias}.new_id"))
                    }
                    _ => {
                        if old != "NULL" {
                            self.note(format!(
                                "{table}.{name} left NULL: job rows are not imported in this run"
                            ));
                        }
                        None
                    }
                }
            }
            (_, "log_template_id") => {
                let filename = self.col("log_filename_template");
                let log_template = ctx.qualified("log_template");
                self.join(format!(
                    "LEFT JOIN (SELECT DISTINCT ON (filename) filename, id FROM {log_template} \
                     ORDER BY filename, id) lt ON lt.filename = {filename}"
                ));
                Some("lt.id".to_owned())
            }
            (_, "dag_version_id" | "created_dag_version_id") => {
                match (ctx.dag_version, ctx.has_dag_version) {
                    (DagVersionPolicy::Latest, true) => {
                        let dag_id = self.col("dag_id");
                        let dag_version = ctx.qualified("dag_version");
                        self.join(format!(
                            "LEFT JOIN (SELECT DISTINCT ON (dag_id) dag_id, id FROM {dag_version} \
                             ORDER BY dag_id, version_number DESC) dv ON dv.dag_id = {dag_id}"
                        ));
                        Some("dv.id".to_owned())
                    }
                    _ => None,
                }
            }
            (_, "trigger_id" | "backfill_id") => None,
            ("task_instance" | "task_instance_history", "next_method" | "next_kwargs")
            | ("task_instance" | "task_instance_history", "trigger_timeout") => {
                let value = self.col(name);
                let Some(canonical) = self.canonical.column(name) else {
                    return Ok(Some(None));
                };
                let Some(value) = self.convert(table, name, value, canonical.ty, ty) else {
                    return Ok(Some(None));
                };
                let in_flight = self.in_flight();
                Some(format!("CASE WHEN {in_flight} THEN NULL ELSE {value} END"))
            }
            _ => return Ok(None),
        }))
    }

    /// Rows whose foreign key into `dag_run` or `task_instance` would find nothing are left
    /// out and reported (task instances whose run was never exported, for one), instead of
    /// failing the whole import on the constraint.
    fn reference_filters(&mut self, target: &TableSchema, assignments: &[Assignment]) {
        for fk in &target.foreign_keys {
            if !matches!(fk.ref_table.as_str(), "dag_run" | "task_instance") {
                continue;
            }
            let exprs: Option<Vec<&str>> = fk
                .columns
                .iter()
                .map(|c| {
                    assignments
                        .iter()
                        .find(|a| &a.column == c)
                        .map(|a| a.expr.as_str())
                })
                .collect();
            let Some(exprs) = exprs else { continue };
            if exprs.iter().any(|e| !e.contains(&format!("{S}."))) {
                // Resolved through a join (dag_run_id, ti_id): filtered where it is joined.
                continue;
            }
            let on = fk
                .ref_columns
                .iter()
                .zip(&exprs)
                .map(|(r, e)| format!("r.{} = {e}", quote_ident(r)))
                .collect::<Vec<_>>()
                .join(" AND ");
            self.filters.push(Filter {
                keep: format!(
                    "EXISTS (SELECT 1 FROM {} r WHERE {on})",
                    self.ctx.qualified(&fk.ref_table)
                ),
                reason: format!(
                    "no matching {} in the dataset or the target (rows the source kept \
                     without one)",
                    fk.ref_table
                ),
            });
        }
    }

    /// The inverse of the rule that reads `canonical` from target column `name`.
    fn inverse_rule(
        &mut self,
        table: &str,
        name: &str,
        canonical: &str,
        rule: &str,
        ty: &PgType,
    ) -> Result<Option<String>> {
        Ok(match rule {
            // Pickled conf for targets before 3.0: made when the row is staged, or the
            // original bytes when the dataset kept them undecoded.
            "json_from_pickle" => {
                self.used.insert(canonical.to_owned());
                self.used.insert(format!("{canonical}_raw"));
                Some(self.derived(CONF_PICKLE, PgType::Bytea))
            }
            // XCom bytes: the original bytes when kept (pickles), else the JSON text.
            "json_from_bytes" => {
                let raw = self.col(&format!("{canonical}_raw"));
                let json = self.col(canonical);
                Some(format!("coalesce({raw}, convert_to({json}, 'UTF8'))"))
            }
            "asset_run_type" => {
                let run_type = self.col(canonical);
                Some(format!(
                    "CASE WHEN {run_type} = 'asset_triggered' THEN 'dataset_triggered' ELSE {run_type} END"
                ))
            }
            // Terminal states mean the same try on both sides of 2.10, and in-flight rows are
            // imported as failed, so the canonical (2.10) number is the target's.
            "try_number_2_10" => Some(self.col(canonical)),
            "coalesce"
            | "run_type_from_run_id"
            | "undecoded_bytes"
            | "dag_run"
            | "task_instance"
            | "log_template_filename" => None,
            other => {
                return Err(Error::Import {
                    table: table.to_owned(),
                    message: format!(
                        "column {name} ({ty}) is read with rule {other}, which import cannot invert"
                    ),
                });
            }
        })
    }

    /// The natural key in the target's columns: the canonical key columns the target has,
    /// and for those it has not, the column that stands for them (the run's execution date,
    /// the dag run or task instance reference).
    fn key(
        &mut self,
        target: &TableSchema,
        live: &LiveTable,
        assignments: &[Assignment],
    ) -> Vec<KeyColumn> {
        let version = self.ctx.version;
        let mut key: Vec<String> = Vec::new();
        let mut missing = Vec::new();
        for name in &self.canonical.natural_key {
            let Some(column) = self.canonical.column(name) else {
                continue;
            };
            match self.canonical.source_of(column, version, target) {
                Source::Column(from) if live.column(&from).is_some() => key.push(from),
                _ => missing.push(name.as_str()),
            }
        }
        let has = |c: &str| live.column(c).is_some();
        if !missing.is_empty() {
            if has("ti_id") {
                key.push("ti_id".to_owned());
            } else if has("dag_run_id") && missing.iter().any(|m| *m == "run_id" || *m == "dag_id")
            {
                key.push("dag_run_id".to_owned());
            } else if missing.contains(&"run_id") && has("execution_date") {
                key.push("execution_date".to_owned());
            }
        }
        let mut unique: Vec<String> = Vec::new();
        for column in key {
            if !unique.contains(&column) {
                unique.push(column);
            }
        }
        unique
            .into_iter()
            .filter(|k| assignments.iter().any(|a| &a.column == k))
            .map(|column| KeyColumn {
                nullable: live.column(&column).is_none_or(|c| c.nullable),
                column,
            })
            .collect()
    }
}

/// `'a', 'b'` for an SQL `IN` list of known words.
fn sql_list(words: &[&str]) -> String {
    words
        .iter()
        .map(|w| format!("'{w}'"))
        .collect::<Vec<_>>()
        .join(", ")
}
