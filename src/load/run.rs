//! The import, start to finish: choose the export, check versions and secrets, then stage and
//! merge table after table inside one transaction, set sequences, commit (or roll back for a
//! dry run), and verify.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Serialize;
use tokio_postgres::Client;

use crate::catalog::detect::{self, LiveSchema, quote_ident};
use crate::catalog::{Catalog, SchemaVersion};
use crate::dataset::manifest::{Manifest, TableEntry};
use crate::dataset::read::{fetch_checked, manifest};
use crate::error::{Error, Result};
use crate::load::LOAD_ORDER;
use crate::load::mapping::{TableMapping, TargetContext, map_table};
use crate::load::merge::{JOB_MAP, import_error, merge};
use crate::load::options::ImportOptions;
use crate::load::stage::{self, StageInput};
use crate::load::verify::{VerifySummary, check};
use crate::source::connect;
use crate::store::{self, Store};

/// What happened to one table.
#[derive(Debug, Clone, Serialize)]
pub struct TableOutcome {
    /// Table name.
    pub table: String,
    /// Rows in the dataset.
    pub rows: u64,
    /// Rows inserted.
    pub inserted: u64,
    /// Rows whose natural key existed, left as they were.
    pub skipped: u64,
    /// Rows whose natural key existed, overwritten.
    pub updated: u64,
    /// Rows the target cannot take, with the reason.
    pub left_out: Vec<(String, u64)>,
    /// Dataset columns the target version has no place for.
    pub dropped_columns: Vec<String>,
    /// What the mapping did that the user should know (ids NULLed, values changed).
    pub notes: Vec<String>,
}

/// What an import did.
#[derive(Debug, Clone, Serialize)]
pub struct ImportSummary {
    /// The export imported.
    pub export_id: String,
    /// Airflow schema version of the dataset's source.
    pub source_version: String,
    /// Airflow schema version of the target.
    pub target_version: String,
    /// Whether everything was rolled back at the end.
    pub dry_run: bool,
    /// Per table, in load order.
    pub tables: Vec<TableOutcome>,
    /// Tables of the dataset not imported, with the reason.
    pub skipped_tables: Vec<(String, String)>,
    /// The post-commit comparison of dataset and target, when asked for.
    pub verification: Option<VerifySummary>,
}

/// The dataset, the target and the plan agreed on before anything is written.
pub(crate) struct Prepared {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) manifest: Manifest,
    pub(crate) source_version: &'static SchemaVersion,
    pub(crate) target_version: &'static SchemaVersion,
    pub(crate) client: Client,
    pub(crate) live: LiveSchema,
    pub(crate) tables: Vec<String>,
    pub(crate) skipped_tables: Vec<(String, String)>,
}

/// Runs the import `options` describes.
///
/// # Errors
/// Any [`Error`] before the commit leaves the target exactly as it was: a missing or corrupt
/// dataset file, an unknown or older target version, a key that does not decrypt, a row the
/// target refuses, a lost connection.
pub async fn run(options: &ImportOptions) -> Result<ImportSummary> {
    let prepared = prepare(options, true).await?;
    let client = &prepared.client;
    let schema = options.schema.as_str();
    let catalog = Catalog::builtin()?;

    begin(client).await?;
    let outcome = load_tables(options, &prepared, catalog, true).await;
    let (outcomes, mappings) = match outcome {
        Ok(done) => done,
        Err(error) => {
            // The server rolls back on its own when the connection is gone.
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(error);
        }
    };
    let end = if options.dry_run {
        "ROLLBACK"
    } else {
        "COMMIT"
    };
    client
        .batch_execute(end)
        .await
        .map_err(|e| import_error("the target database", e))?;

    let verification = if options.verify && !options.dry_run {
        let mut checks = Vec::new();
        for mapping in &mappings {
            checks.push(check(client, mapping, schema, &options.keys, true).await?);
        }
        Some(VerifySummary { tables: checks })
    } else {
        None
    };
    Ok(ImportSummary {
        export_id: prepared.manifest.export_id.clone(),
        source_version: prepared.source_version.id.clone(),
        target_version: prepared.target_version.id.clone(),
        dry_run: options.dry_run,
        tables: outcomes,
        skipped_tables: prepared.skipped_tables.clone(),
        verification,
    })
}

/// Compares a dataset with a target without changing it: stages the dataset in a transaction
/// that is rolled back, and checks counts and content per table.
///
/// # Errors
/// As [`run`]'s checks before writing.
pub(crate) async fn verify_only(options: &ImportOptions) -> Result<VerifySummary> {
    let prepared = prepare(options, false).await?;
    let client = &prepared.client;
    let catalog = Catalog::builtin()?;
    begin(client).await?;
    let result = async {
        let (_, mappings) = load_tables(options, &prepared, catalog, false).await?;
        let mut checks = Vec::new();
        for mapping in &mappings {
            checks.push(check(client, mapping, &options.schema, &options.keys, false).await?);
        }
        Ok(VerifySummary { tables: checks })
    }
    .await;
    let _ = client.batch_execute("ROLLBACK").await;
    result
}

/// Starts the one transaction of an import or a verification, with timestamps written and
/// compared in UTC.
async fn begin(client: &Client) -> Result<()> {
    client
        .batch_execute("BEGIN; SET LOCAL TIME ZONE 'UTC'")
        .await
        .map_err(|e| import_error("the target database", e))
}

/// Opens the dataset and the target, checks versions, tables and secrets.
async fn prepare(options: &ImportOptions, importing: bool) -> Result<Prepared> {
    let catalog = Catalog::builtin()?;
    let store = store::open(&options.source, options.store.clone()).await?;
    let manifest = manifest(store.as_ref(), options.export_id.as_deref()).await?;
    if manifest.file_format != "parquet" {
        return Err(Error::Dataset {
            object: store.url().to_owned(),
            message: format!(
                "export {} is {}; import reads Parquet datasets (export again without --format)",
                manifest.export_id, manifest.file_format
            ),
        });
    }
    if manifest.canonical_version > catalog.canonical_version() {
        return Err(Error::Dataset {
            object: store.url().to_owned(),
            message: format!(
                "written with canonical model version {}, newer than this contrail's {}; \
                 use the contrail that exported it, or a newer one",
                manifest.canonical_version,
                catalog.canonical_version()
            ),
        });
    }
    let source_version = catalog
        .version(&manifest.source.airflow_version)
        .ok_or_else(|| Error::UnknownVersion {
            given: manifest.source.airflow_version.clone(),
            known: catalog.known_versions(),
        })?;

    let client = connect(&options.db).await?;
    let database = options.db.dbname().unwrap_or("?").to_owned();
    let revisions = detect::read_revisions(&client, &options.schema, &database).await?;
    let target_version =
        detect::resolve_version(catalog, &revisions, options.assume_version.as_deref())?;
    if target_version.index < source_version.index && !options.allow_downgrade {
        return Err(Error::Import {
            table: "the target database".to_owned(),
            message: format!(
                "the target is Airflow {} but the dataset comes from Airflow {}: an older \
                 target cannot hold everything a newer source has. Upgrade the target, or pass \
                 --allow-downgrade to import anyway (every column that cannot be kept is \
                 reported)",
                target_version.id, source_version.id
            ),
        });
    }
    let live = detect::introspect(&client, &options.schema).await?;
    let target_schema = catalog.schema(target_version);

    let mut tables = Vec::new();
    let mut skipped_tables = Vec::new();
    for name in manifest.tables.keys() {
        if !LOAD_ORDER.contains(&name.as_str()) {
            skipped_tables.push((
                name.clone(),
                "contrail does not import this table".to_owned(),
            ));
        }
    }
    for &name in LOAD_ORDER {
        if !manifest.tables.contains_key(name) {
            continue;
        }
        if options
            .only
            .as_ref()
            .is_some_and(|o| !o.iter().any(|t| t == name))
            || options.exclude.iter().any(|t| t == name)
        {
            skipped_tables.push((name.to_owned(), "not selected".to_owned()));
        } else if target_schema.table(name).is_none() || !live.tables.contains_key(name) {
            skipped_tables.push((
                name.to_owned(),
                format!("Airflow {} has no such table", target_version.id),
            ));
        } else {
            tables.push(name.to_owned());
        }
    }
    for requested in options.only.iter().flatten() {
        if !manifest.tables.contains_key(requested) {
            return Err(Error::Import {
                table: requested.clone(),
                message: format!(
                    "export {} holds no such table; it holds: {}",
                    manifest.export_id,
                    manifest
                        .tables
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
    }
    if importing {
        check_secrets(options, store.as_ref(), &manifest, &tables).await?;
    }
    Ok(Prepared {
        store,
        manifest,
        source_version,
        target_version,
        client,
        live,
        tables,
        skipped_tables,
    })
}

/// Decrypts every encrypted value before anything is written, so a missing or wrong key stops
/// the import at once.
async fn check_secrets(
    options: &ImportOptions,
    store: &dyn Store,
    manifest: &Manifest,
    tables: &[String],
) -> Result<()> {
    for table in tables
        .iter()
        .filter(|t| *t == "variable" || *t == "connection")
    {
        let Some(entry) = manifest.tables.get(table) else {
            continue;
        };
        for file in &entry.files {
            let checked = fetch_checked(store, file).await?;
            for batch in checked.batches(&file.key, options.batch_rows)? {
                options.keys.carry_batch(table, batch?)?;
            }
        }
    }
    Ok(())
}

/// Stages and (when `merging`) merges every table in load order. Returns the outcomes and
/// the mappings (the staging tables stay for verification).
async fn load_tables(
    options: &ImportOptions,
    prepared: &Prepared,
    catalog: &Catalog,
    merging: bool,
) -> Result<(Vec<TableOutcome>, Vec<TableMapping>)> {
    let client = &prepared.client;
    let schema = options.schema.as_str();
    let job_map =
        (merging && prepared.tables.iter().any(|t| t == "job")).then(|| quote_ident(JOB_MAP));
    let ctx = TargetContext {
        schema,
        version: prepared.target_version,
        job_map: job_map.as_deref(),
        dag_version: options.dag_version,
        has_dag_version: prepared.live.tables.contains_key("dag_version"),
    };
    let source_schema = catalog.schema(prepared.source_version);
    let target_schema = catalog.schema(prepared.target_version);
    let mut outcomes = Vec::new();
    let mut mappings = Vec::new();
    for name in &prepared.tables {
        let (Some(canonical), Some(target), Some(live), Some(entry)) = (
            catalog.canonical().iter().find(|c| &c.name == name),
            target_schema.table(name),
            prepared.live.tables.get(name),
            prepared.manifest.tables.get(name),
        ) else {
            continue;
        };
        let present = dataset_columns(prepared.store.as_ref(), entry, canonical).await?;
        let defaults = column_defaults(client, schema, name).await?;
        let mapping = map_table(
            canonical,
            prepared.source_version,
            source_schema.table(name),
            &present,
            target,
            live,
            &defaults,
            &ctx,
        )?;
        options.progress.table_started(name, entry.rows);
        let stage_table = stage::create(client, &mapping).await?;
        let staged = stage::copy_files(
            client,
            &mapping,
            &stage_table,
            StageInput {
                store: prepared.store.clone(),
                files: entry.files.clone(),
                keys: options.keys.clone(),
                batch_rows: options.batch_rows,
                progress: options.progress.clone(),
            },
        )
        .await?;
        client
            .batch_execute(&format!("ANALYZE {}", quote_ident(&stage_table)))
            .await
            .map_err(|e| import_error(name, e))?;
        let merged = if merging {
            merge(
                client,
                &mapping,
                schema,
                &stage_table,
                staged,
                options.on_conflict,
            )
            .await?
        } else {
            Default::default()
        };
        options.progress.table_done(name);
        outcomes.push(TableOutcome {
            table: name.clone(),
            rows: staged,
            inserted: merged.inserted,
            skipped: merged.skipped,
            updated: merged.updated,
            left_out: merged.left_out,
            dropped_columns: mapping.dropped.clone(),
            notes: mapping.notes.clone(),
        });
        mappings.push(mapping);
    }
    if merging {
        advance_sequences(client, schema, &prepared.live, &prepared.tables).await?;
    }
    Ok((outcomes, mappings))
}

/// The canonical columns the table's files hold (older exports may lack newer columns).
async fn dataset_columns(
    store: &dyn Store,
    entry: &TableEntry,
    canonical: &crate::catalog::CanonicalTable,
) -> Result<BTreeSet<String>> {
    let Some(file) = entry.files.first() else {
        // No rows: the canonical columns, so the mapping is complete; nothing is staged.
        return Ok(canonical.columns.iter().map(|c| c.name.clone()).collect());
    };
    let schema = fetch_checked(store, file).await?.schema(&file.key)?;
    let names = schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|n| canonical.column(n).is_some())
        .collect();
    Ok(names)
}

/// Default expressions of the target table's columns.
async fn column_defaults(
    client: &Client,
    schema: &str,
    table: &str,
) -> Result<BTreeMap<String, String>> {
    let rows = client
        .query(
            "SELECT a.attname::text, pg_get_expr(d.adbin, d.adrelid)
               FROM pg_attrdef d
               JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
              WHERE d.adrelid = to_regclass(format('%I.%I', $1::text, $2::text))",
            &[&schema, &table],
        )
        .await
        .map_err(|e| import_error(table, e))?;
    Ok(rows
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
        .filter(|(_, default)| !default.starts_with("nextval("))
        .collect())
}

/// Moves each loaded table's id sequence past its highest id.
async fn advance_sequences(
    client: &Client,
    schema: &str,
    live: &LiveSchema,
    tables: &[String],
) -> Result<()> {
    let serial = |t: &str| {
        live.tables
            .get(t)
            .and_then(|t| t.column("id"))
            .is_some_and(|c| c.serial)
    };
    for table in tables.iter().filter(|t| serial(t)) {
        let qualified = format!("{}.{}", quote_ident(schema), quote_ident(table));
        let sequence: Option<String> = client
            .query_one("SELECT pg_get_serial_sequence($1, 'id')", &[&qualified])
            .await
            .map_err(|e| import_error(table, e))?
            .get(0);
        let Some(sequence) = sequence else {
            continue;
        };
        let sql = format!(
            "SELECT setval('{seq}', m, true) FROM (SELECT max(id)::bigint AS m FROM {qualified}) x
              WHERE m IS NOT NULL AND m > (SELECT last_value FROM {sequence})",
            seq = sequence.replace('\'', "''"),
        );
        client
            .batch_execute(&sql)
            .await
            .map_err(|e| import_error(table, e))?;
    }
    Ok(())
}
