//! The export run: detect, snapshot, plan, read every range in parallel, merge each table's
//! days into files, write the manifest.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use tokio::sync::Notify;

use crate::catalog::Catalog;
use crate::catalog::detect::{self, quote_ident};
use crate::dataset::layout::{self, FileFormat};
use crate::dataset::manifest::{
    FileEntry, MANIFEST_FORMAT, Manifest, SourceInfo, TableEntry, Window,
};
use crate::dataset::spill::{Run, Spill};
use crate::error::{Error, Result};
use crate::export::plan::{ExportPlan, TablePlan, rfc3339};
use crate::export::spill_root::SpillRoot;
use crate::export::task::{self, TableJob, TaskOutput};
use crate::export::{ExportOptions, ExportSummary, TableSummary};
use crate::source::runs::RunIndex;
use crate::source::snapshot::Snapshot;
use crate::source::{connect, query, ranges};
use crate::store::{self, Store};

/// Runs an export (or plans it, with `dry_run`).
///
/// # Errors
/// Anything that stops a complete export: the destination or database unreachable, an unknown
/// version, a table that cannot be read or written. No manifest is written then, and the files
/// this export wrote are removed (best effort).
pub async fn run(options: ExportOptions) -> Result<ExportSummary> {
    let started = Instant::now();
    let started_at = Utc::now();
    let catalog = Catalog::builtin()?;
    let store = store::open(&options.destination, options.store.clone()).await?;
    store.check().await?;

    let client = connect(&options.db).await?;
    let database = options.db.to_string();
    let revisions = detect::read_revisions(&client, &options.schema, &database).await?;
    let version = detect::resolve_version(catalog, &revisions, options.assume_version.as_deref())?;
    let server_version: String = client
        .query_one("SHOW server_version", &[])
        .await
        .map_err(Error::query("server_version"))?
        .get(0);
    let snapshot = Snapshot::export(client).await?;
    let live = detect::introspect(snapshot.client(), &options.schema).await?;
    let tables = options.tables.resolve(catalog, version, &live)?;
    refuse_plaintext_secrets(&options, &tables, &snapshot, store.as_ref()).await?;

    let snapshot_time: DateTime<Utc> = snapshot.taken_at.parse().map_err(|e| Error::Export {
        message: format!("snapshot time {}: {e}", snapshot.taken_at),
    })?;
    let export_id = export_id(snapshot_time);
    let watermarks = if options.incremental {
        latest_watermarks(store.as_ref()).await?
    } else {
        BTreeMap::new()
    };
    let mut window = options.window;
    if let Some(days) = options.max_age_days {
        let bound = snapshot_time - Duration::days(i64::from(days));
        window.until = Some(window.until.map_or(bound, |u| u.min(bound)));
    }

    let schema = catalog.schema(version);
    // Declared before the jobs, so that their spill directories inside it are dropped first; it
    // lives until the export ends, however it ends.
    let spill_root = match options.format {
        FileFormat::Parquet if !options.dry_run => Some(spill_root(&options)?),
        _ => None,
    };
    let mut runs = RunIndexState::default();
    let mut jobs = Vec::new();
    let mut table_plans = Vec::new();
    for name in &tables {
        let (Some(canonical), Some(table), Some(live_table)) = (
            catalog.canonical().iter().find(|c| &c.name == name),
            schema.table(name),
            live.tables.get(name),
        ) else {
            continue;
        };
        let mut plan = query::plan(canonical, version, table, &live, &options.schema)?;
        if options.run_index_memory > 0
            && !options.dry_run
            && let Some(lookup_plan) =
                query::plan_with_run_lookup(canonical, version, table, &live, &options.schema)?
            && runs.serves(&lookup_plan, &snapshot, &options).await?
        {
            plan = lookup_plan;
        }
        let time_columns: Vec<String> = table
            .time_columns
            .iter()
            .filter(|c| live_table.column(c).is_some())
            .cloned()
            .collect();
        let mut table_window = window;
        if options.incremental {
            if let Some(mark) = watermarks.get(name) {
                table_window.since = Some(*mark);
            }
            table_window.until = Some(
                table_window
                    .until
                    .map_or(snapshot_time, |u| u.min(snapshot_time)),
            );
        }
        let window_predicate = table_window.predicate(&time_columns);
        // One CSV file per table means one writer, so one task reads the whole table.
        let ranges = match options.format {
            FileFormat::Csv => vec![ranges::Range::whole()],
            FileFormat::Parquet => {
                ranges::split(
                    snapshot.client(),
                    &options.schema,
                    name,
                    live_table,
                    options.jobs,
                    ranges::DEFAULT_MIN_RANGE_PAGES,
                )
                .await?
            }
        };
        let estimated_rows = estimate_rows(snapshot.client(), &options.schema, name).await?;
        options
            .progress
            .table_planned(name, estimated_rows.max(0) as u64);
        let partitioned =
            !plan.partition_columns.is_empty() && options.format == FileFormat::Parquet;
        let extension = options.format.name();
        table_plans.push(TablePlan {
            table: name.clone(),
            estimated_rows,
            ranges: ranges.iter().map(|r| r.label.clone()).collect(),
            time_columns: time_columns.clone(),
            window: window_predicate.clone(),
            object_keys: if partitioned {
                format!("{name}/date=YYYY-MM-DD/part-{export_id}-NNNNN.{extension}")
            } else {
                format!("{name}/part-{export_id}-NNNNN.{extension}")
            },
            missing_columns: plan.missing_columns.clone(),
        });
        let plan_runs = plan.run_lookup.as_ref().and_then(|_| runs.index.clone());
        let spill = match &spill_root {
            Some(root) => Some(Arc::new(spill_dir(root, name, plan.output_schema.clone())?)),
            None => None,
        };
        let job = Arc::new(TableJob {
            plan,
            store: store.clone(),
            export_id: export_id.clone(),
            file_counter: Arc::new(AtomicUsize::new(0)),
            parquet: options.parquet.clone(),
            batch_rows: options.batch_rows,
            format: options.format,
            memory_budget: options.memory_per_job,
            canonical_version: catalog.canonical_version(),
            source_version: version.id.clone(),
            progress: options.progress.clone(),
            runs: Mutex::new(plan_runs),
            spill,
            max_file_bytes: options.max_file_bytes,
            plain_columns: std::sync::OnceLock::new(),
        });
        let watermark = table_window.until.unwrap_or(snapshot_time);
        jobs.push((job, ranges, window_predicate, time_columns, watermark));
    }
    // The jobs hold the index now, each until its table is read.
    drop(runs);
    let plan = ExportPlan {
        export_id: export_id.clone(),
        destination: store.url().to_owned(),
        airflow_version: version.id.clone(),
        snapshot_time: snapshot.taken_at.clone(),
        since: window.since.map(rfc3339),
        until: window.until.map(rfc3339),
        tables: table_plans,
        manifest: layout::manifest_key(&export_id),
    };
    if options.dry_run {
        return Ok(ExportSummary {
            plan,
            dry_run: true,
            tables: Vec::new(),
            elapsed_seconds: started.elapsed().as_secs_f64(),
        });
    }

    let mut queue = VecDeque::new();
    for (index, (job, ranges, window_predicate, _, _)) in jobs.iter().enumerate() {
        for range in ranges {
            let predicate = match (&range.predicate, window_predicate) {
                (Some(r), Some(w)) => Some(format!("({r}) AND ({w})")),
                (r, w) => r.clone().or_else(|| w.clone()),
            };
            queue.push_back(Work::Range {
                table: index,
                job: job.clone(),
                predicate,
            });
        }
    }
    let remaining: Vec<usize> = {
        let mut counts = vec![0; jobs.len()];
        for work in &queue {
            counts[work.table()] += 1;
        }
        counts
    };
    let state = Arc::new(Shared {
        state: Mutex::new(RunState {
            queue,
            remaining,
            in_flight: 0,
            outputs: BTreeMap::new(),
            failed: None,
        }),
        changed: Notify::new(),
    });
    let snapshot = Arc::new(snapshot);
    let mut workers = Vec::new();
    for _ in 0..options.jobs {
        let state = state.clone();
        let snapshot = snapshot.clone();
        let db = options.db.clone();
        let progress = options.progress.clone();
        workers.push(tokio::spawn(async move {
            worker(state, snapshot, db, progress).await
        }));
    }
    for worker in workers {
        worker.await.map_err(|e| Error::Export {
            message: format!("an export worker failed: {e}"),
        })?;
    }
    let mut state = match Arc::try_unwrap(state) {
        Ok(shared) => shared.state.into_inner().unwrap_or_else(|p| p.into_inner()),
        Err(_) => {
            return Err(Error::Export {
                message: "export workers still running".to_owned(),
            });
        }
    };
    if let Some(error) = state.failed.take() {
        remove_partial_files(store.as_ref(), &tables, &export_id).await;
        return Err(error);
    }

    let mut manifest_tables = BTreeMap::new();
    let mut summaries = Vec::new();
    for (index, (job, _, _, time_columns, watermark)) in jobs.iter().enumerate() {
        let outputs = state.outputs.remove(&index).unwrap_or_default();
        let mut files: Vec<FileEntry> = outputs.iter().flat_map(|o| o.files.clone()).collect();
        files.sort_by(|a, b| a.key.cmp(&b.key));
        let rows: u64 = outputs.iter().map(|o| o.rows).sum();
        let orphan_rows = outputs.iter().map(|o| o.orphan_rows).sum();
        let written: u64 = files.iter().map(|f| f.rows).sum();
        if written != rows {
            remove_partial_files(store.as_ref(), &tables, &export_id).await;
            return Err(Error::Export {
                message: format!(
                    "{} rows of {} were read but {written} written; this is a bug in contrail, \
                     please report it (no manifest was written)",
                    rows, job.plan.table
                ),
            });
        }
        summaries.push(TableSummary {
            table: job.plan.table.clone(),
            rows,
            orphan_rows,
            files: files.len(),
            bytes: files.iter().map(|f| f.bytes).sum(),
            bytes_read: outputs.iter().map(|o| o.bytes_read).sum(),
            runs_indexed: job.plan.run_lookup.is_some(),
            spilled_bytes: job.spill.as_ref().map_or(0, |spill| spill.bytes_written()),
        });
        manifest_tables.insert(
            job.plan.table.clone(),
            TableEntry {
                rows,
                orphan_rows,
                time_columns: time_columns.clone(),
                watermark: Some(rfc3339(*watermark)),
                files,
            },
        );
    }
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        export_id: export_id.clone(),
        tool_version: env!("CARGO_PKG_VERSION").to_owned(),
        canonical_version: catalog.canonical_version(),
        source: SourceInfo {
            airflow_version: version.id.clone(),
            alembic_revisions: revisions,
            database,
            server_version,
        },
        snapshot_time: snapshot.taken_at.clone(),
        window: Window {
            since: window.since.map(rfc3339),
            until: window.until.map(rfc3339),
        },
        started_at: rfc3339(started_at),
        finished_at: rfc3339(Utc::now()),
        file_format: options.format.name().to_owned(),
        tables: manifest_tables,
    };
    let body = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Export {
        message: format!("manifest: {e}"),
    })?;
    if let Err(error) = store.put_if_absent(&plan.manifest, Bytes::from(body)).await {
        remove_partial_files(store.as_ref(), &tables, &export_id).await;
        return Err(error);
    }
    Ok(ExportSummary {
        plan,
        dry_run: false,
        tables: summaries,
        elapsed_seconds: started.elapsed().as_secs_f64(),
    })
}

/// The export's one index of DAG runs, loaded when the first table can use it.
#[derive(Default)]
struct RunIndexState {
    /// Whether loading was tried (`index` stays `None` when `dag_run` did not fit).
    tried: bool,
    index: Option<Arc<RunIndex>>,
}

impl RunIndexState {
    /// Whether `plan`'s run lookups can be served, loading the index on first use.
    async fn serves(
        &mut self,
        plan: &query::ReadPlan,
        snapshot: &Snapshot,
        options: &ExportOptions,
    ) -> Result<bool> {
        let Some(lookup) = &plan.run_lookup else {
            return Ok(false);
        };
        if !self.tried {
            self.tried = true;
            let started = Instant::now();
            self.index = RunIndex::load(
                snapshot.client(),
                &options.schema,
                &lookup.column,
                options.run_index_memory,
            )
            .await?
            .map(Arc::new);
            match &self.index {
                Some(index) => tracing::info!(
                    runs = index.len(),
                    mib = index.memory() / (1024 * 1024),
                    seconds = started.elapsed().as_secs_f64(),
                    "Indexed dag_run; task instances are matched to their runs by contrail."
                ),
                None => tracing::info!(
                    budget_mib = options.run_index_memory / (1024 * 1024),
                    "dag_run does not fit the run index memory (--run-index-memory); \
                     PostgreSQL joins it instead."
                ),
            }
        }
        Ok(self
            .index
            .as_ref()
            .is_some_and(|index| index.column() == lookup.column))
    }
}

/// One unit of work for a worker.
enum Work {
    /// Read one range of a table and spill its rows.
    Range {
        table: usize,
        job: Arc<TableJob>,
        predicate: Option<String>,
    },
    /// Merge one day's spilled runs of a table into files (once every range is read).
    Merge {
        table: usize,
        job: Arc<TableJob>,
        day: Option<String>,
        runs: Vec<Run>,
    },
}

impl Work {
    fn table(&self) -> usize {
        match self {
            Work::Range { table, .. } | Work::Merge { table, .. } => *table,
        }
    }
}

/// The workers' shared state, and a signal for workers waiting for work to appear.
struct Shared {
    state: Mutex<RunState>,
    changed: Notify,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, RunState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a failure: queued work is dropped and every worker stops.
    fn fail(&self, error: Error) {
        let mut state = self.lock();
        state.failed.get_or_insert(error);
        state.queue.clear();
        drop(state);
        self.changed.notify_waiters();
    }
}

struct RunState {
    queue: VecDeque<Work>,
    remaining: Vec<usize>,
    /// Work taken by a worker and not finished; what it finishes may queue more (merges).
    in_flight: usize,
    outputs: BTreeMap<usize, Vec<TaskOutput>>,
    failed: Option<Error>,
}

/// One connection inside the snapshot, taking work until none is left or some fails. With the
/// queue empty it waits while other workers still run: their tables' merges come next.
async fn worker(
    shared: Arc<Shared>,
    snapshot: Arc<Snapshot>,
    db: crate::source::DatabaseUrl,
    progress: Arc<dyn crate::export::ExportProgress>,
) {
    let client = match snapshot.attach(&db).await {
        Ok(client) => client,
        Err(error) => {
            shared.fail(error);
            return;
        }
    };
    loop {
        let changed = shared.changed.notified();
        tokio::pin!(changed);
        // Registered before looking, so a change made after the look still wakes us.
        changed.as_mut().enable();
        let work = {
            let mut state = shared.lock();
            if state.failed.is_some() {
                return;
            }
            match state.queue.pop_front() {
                Some(work) => {
                    state.in_flight += 1;
                    Some(work)
                }
                None if state.in_flight == 0 => return,
                None => None,
            }
        };
        let Some(work) = work else {
            changed.await;
            continue;
        };
        let table = work.table();
        let (job, result) = match work {
            Work::Range { job, predicate, .. } => {
                let result = task::run(&client, job.clone(), predicate).await;
                (job, result)
            }
            Work::Merge { job, day, runs, .. } => {
                let result = task::merge(job.clone(), day, runs).await;
                (job, result)
            }
        };
        let output = match result {
            Ok(output) => output,
            Err(error) => {
                shared.fail(error);
                return;
            }
        };
        let mut state = shared.lock();
        state.in_flight -= 1;
        state.outputs.entry(table).or_default().push(output);
        state.remaining[table] -= 1;
        if state.remaining[table] == 0 {
            job.release_runs();
            state.queue_merges(table, &job);
        }
        // Still zero when there was nothing to merge (or the merges just finished).
        if state.remaining[table] == 0 {
            progress.table_done(&job.plan.table);
        }
        drop(state);
        shared.changed.notify_waiters();
    }
}

impl RunState {
    /// Once every range of a table is read, queues the merge of each of its days, ahead of
    /// other tables' ranges so that spilled runs leave the disk early.
    fn queue_merges(&mut self, table: usize, job: &Arc<TableJob>) {
        let Some(spill) = &job.spill else {
            return;
        };
        for (day, runs) in spill.take().into_iter().rev() {
            self.remaining[table] += 1;
            self.queue.push_front(Work::Merge {
                table,
                job: job.clone(),
                day,
                runs,
            });
        }
    }
}

/// The export's spill directory, inside `--spill-dir` or the system's temporary directory,
/// after removing those that killed exports left there.
fn spill_root(options: &ExportOptions) -> Result<SpillRoot> {
    let root = options.spill_dir.clone().unwrap_or_else(std::env::temp_dir);
    SpillRoot::try_new(&root).map_err(|e| Error::Export {
        message: format!(
            "cannot create a temporary directory in {}: {e}; point --spill-dir at a writable \
             directory",
            root.display()
        ),
    })
}

/// The spill directory of `table`, inside the export's.
fn spill_dir(root: &SpillRoot, table: &str, schema: arrow::datatypes::SchemaRef) -> Result<Spill> {
    Spill::try_new(root.path(), table, schema).map_err(|e| Error::Export {
        message: format!(
            "cannot create a temporary directory in {} for {table}: {e}; point --spill-dir at \
             a writable directory",
            root.path().display()
        ),
    })
}

/// `20240301T000000Z-1a2b3c`: sortable by time, unique across concurrent runs.
fn export_id(snapshot_time: DateTime<Utc>) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(Utc::now().timestamp_nanos_opt().unwrap_or_default() as u128);
    hasher.write_u32(std::process::id());
    format!(
        "{}-{:06x}",
        snapshot_time.format("%Y%m%dT%H%M%SZ"),
        hasher.finish() & 0xff_ffff
    )
}

async fn estimate_rows(client: &tokio_postgres::Client, schema: &str, table: &str) -> Result<i64> {
    let row = client
        .query_one(
            "SELECT greatest(c.reltuples, 0)::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relname = $2",
            &[&schema, &table],
        )
        .await
        .map_err(Error::query(table))?;
    Ok(row.get(0))
}

/// The watermark of every table in the newest manifest at the destination.
async fn latest_watermarks(store: &dyn Store) -> Result<BTreeMap<String, DateTime<Utc>>> {
    let newest = crate::dataset::read::manifests(store).await?.pop();
    let mut out = BTreeMap::new();
    for (table, entry) in newest.map(|m| m.tables).unwrap_or_default() {
        if let Some(mark) = entry
            .watermark
            .and_then(|w| w.parse::<DateTime<Utc>>().ok())
        {
            out.insert(table, mark);
        }
    }
    Ok(out)
}

/// Connections whose passwords are stored unencrypted must not land in plain files.
async fn refuse_plaintext_secrets(
    options: &ExportOptions,
    tables: &[String],
    snapshot: &Snapshot,
    store: &dyn Store,
) -> Result<()> {
    if !tables.iter().any(|t| t == "connection")
        || options.allow_plaintext_secrets
        || options.store.sse().is_some()
    {
        return Ok(());
    }
    let sql = format!(
        "SELECT count(*) FROM {}.connection WHERE (password IS NOT NULL AND NOT coalesce(is_encrypted, false))
            OR (extra IS NOT NULL AND NOT coalesce(is_extra_encrypted, false))",
        quote_ident(&options.schema)
    );
    let plaintext: i64 = snapshot
        .client()
        .query_one(&sql, &[])
        .await
        .map_err(Error::query("connection"))?
        .get(0);
    if plaintext > 0 {
        return Err(Error::Export {
            message: format!(
                "{plaintext} connections have unencrypted passwords or extras, and {} has no server-side encryption; \
                 use --sse aws:kms, or --allow-plaintext-secrets if the destination is protected otherwise",
                store.url()
            ),
        });
    }
    Ok(())
}

/// Deletes the files this export wrote; it failed, and without a manifest they are leftovers.
async fn remove_partial_files(store: &dyn Store, tables: &[String], export_id: &str) {
    let marker = format!("part-{export_id}-");
    for table in tables {
        let Ok(objects) = store.list(&format!("{table}/")).await else {
            continue;
        };
        for object in objects.iter().filter(|o| o.key.contains(&marker)) {
            if let Err(error) = store.delete(&object.key).await {
                tracing::warn!(object = %object.key, error = %error, "Could not remove a file of the failed export.");
            }
        }
    }
}
