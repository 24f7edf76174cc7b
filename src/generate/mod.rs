//! The synthetic history generator: fills an Airflow metadata database, whose schema Airflow
//! created, with realistic and deterministic run history for any schema version the catalog
//! knows.
//!
//! It owns the model of a synthetic environment ([`world`](self) — DAGs, schedules, runs, task
//! instances, all pure functions of the seed) and the writers that turn it into rows of each
//! table the catalog describes at the detected version. It loads them in foreign-key order with
//! binary `COPY` in one transaction, one pass per table, so memory stays bounded whatever the
//! size. It does not create Airflow's schema, and it refuses a database that already has runs.

mod content;
mod copy;
mod options;
pub(crate) mod rng;
mod runs;
mod tables;
mod time;
mod world;

use std::collections::{BTreeMap, BTreeSet};
use std::pin::pin;
use std::sync::Arc;
use std::time::Instant;

use futures_util::SinkExt as _;
use tokio::sync::mpsc;
use tokio_postgres::Client;

pub use options::{
    DEFAULT_CHANNEL_CHUNKS, DEFAULT_CHUNK_BYTES, DEFAULT_DAYS, DEFAULT_SCHEMA, DEFAULT_SEED,
    DEFAULT_START, DEFAULT_TASK_INSTANCES, FernetKey, GenerateOptions, GenerateSummary,
    InsertionOrder, TableCount,
};

use crate::catalog::detect::{self, LiveSchema, quote_ident};
use crate::catalog::{Catalog, VersionSchema};
use crate::error::{Error, Result};
use crate::generate::copy::{Encoder, Plan, Written};
use crate::generate::tables::{Ctx, Stats, TableGen};
use crate::generate::world::{Features, World};
use crate::source::{DatabaseUrl, connect};

/// Where to generate: a URL to connect to, or a client the caller already has.
pub enum Database<'a> {
    /// Connect to this URL.
    Url(&'a DatabaseUrl),
    /// Use this connection (its session time zone should be UTC; the generator does not care).
    Client(&'a Client),
}

impl<'a> From<&'a DatabaseUrl> for Database<'a> {
    fn from(url: &'a DatabaseUrl) -> Self {
        Database::Url(url)
    }
}

impl<'a> From<&'a Client> for Database<'a> {
    fn from(client: &'a Client) -> Self {
        Database::Client(client)
    }
}

/// Fills the database with synthetic history and reports what it wrote.
///
/// Detects the Airflow version from `alembic_version`, writes every table the catalog describes
/// at that version in foreign-key order, sets sequences past the ids it used, and commits once.
///
/// ```no_run
/// # async fn demo() -> contrail::Result<()> {
/// use contrail::generate::{self, GenerateOptions};
/// use contrail::source::DatabaseUrl;
///
/// let url = DatabaseUrl::parse("postgresql://airflow@localhost/airflow")?;
/// let options = GenerateOptions::default().with_seed(7).with_task_instances(50_000);
/// let summary = generate::run(&url, options).await?;
/// println!("{} task instances", summary.task_instances);
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// Connection and query failures; [`Error::NotAirflow`] / [`Error::UnknownRevision`] for a
/// database the catalog does not recognise; [`Error::Generate`] when `dag_run` or
/// `task_instance` already has rows or the schema differs from the catalog in a way the
/// generator cannot fill. Nothing is committed on error.
pub async fn run<'a>(
    database: impl Into<Database<'a>>,
    options: GenerateOptions,
) -> Result<GenerateSummary> {
    let began = Instant::now();
    match database.into() {
        Database::Url(url) => {
            let client = connect(url).await?;
            generate(&client, url.to_string(), options, began).await
        }
        Database::Client(client) => {
            generate(client, "(connection)".to_owned(), options, began).await
        }
    }
}

async fn generate(
    client: &Client,
    database: String,
    options: GenerateOptions,
    began: Instant,
) -> Result<GenerateSummary> {
    let catalog = Catalog::builtin()?;
    let revisions = detect::read_revisions(client, &options.schema, &database).await?;
    let version = detect::version_for_revisions(catalog, &revisions)?;
    let schema = catalog.schema(version);
    let live = detect::introspect(client, &options.schema).await?;
    refuse_existing_history(client, &options.schema, &live).await?;

    let mut plans: Vec<(TableGen, Plan)> = Vec::new();
    for name in schema.load_order() {
        let (Some(generator), Some(table), Some(live_table)) = (
            tables::generator(name),
            schema.table(name),
            live.tables.get(name),
        ) else {
            tracing::debug!(
                table = name,
                "Table left empty: the generator does not fill it."
            );
            continue;
        };
        plans.push((generator, (generator.plan)(table, live_table)?));
    }

    let features = Features::new(catalog, version, schema, options.xcom_pickles);
    let world = Arc::new(World::build(&options, features));
    let ctx = Arc::new(read_context(client, &options, schema, &live, &plans).await?);
    tracing::info!(
        version = %version,
        dags = world.dags.len(),
        seed = options.seed,
        "Generating history."
    );

    client
        .batch_execute("BEGIN")
        .await
        .map_err(Error::query("BEGIN"))?;
    let result = load(client, &options, &world, &ctx, &plans).await;
    let tables = match result {
        Ok(tables) => tables,
        Err(error) => {
            // The COPY error is the one worth reporting; a failed rollback adds nothing.
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(error);
        }
    };
    client
        .batch_execute("COMMIT")
        .await
        .map_err(Error::query("COMMIT"))?;

    let seconds = began.elapsed().as_secs_f64();
    let mut summary = GenerateSummary {
        database,
        airflow_version: version.id.clone(),
        seed: options.seed,
        dags: world.dags.len() as u64,
        dag_runs: 0,
        task_instances: 0,
        mapped_task_instances: Stats::get(&ctx.stats.mapped),
        retried_task_instances: Stats::get(&ctx.stats.retried),
        orphan_task_instances: Stats::get(&ctx.stats.orphans),
        tables,
        seconds,
        rows_per_second: 0.0,
    };
    summary.dag_runs = summary.rows("dag_run");
    summary.task_instances = summary.rows("task_instance");
    summary.rows_per_second = summary.total_rows() as f64 / seconds.max(1e-9);
    Ok(summary)
}

/// Writes every planned table and repairs sequences; runs inside the caller's transaction.
async fn load(
    client: &Client,
    options: &GenerateOptions,
    world: &Arc<World>,
    ctx: &Arc<Ctx>,
    plans: &[(TableGen, Plan)],
) -> Result<Vec<TableCount>> {
    let mut tables = Vec::new();
    for (generator, plan) in plans {
        let table_began = Instant::now();
        let written = copy_table(client, options, world, ctx, *generator, plan).await?;
        tracing::info!(
            table = %plan.table,
            rows = written.rows,
            bytes = written.bytes,
            seconds = table_began.elapsed().as_secs_f64(),
            "Table written."
        );
        tables.push(TableCount {
            table: plan.table.clone(),
            rows: written.rows,
            bytes: written.bytes,
        });
    }
    for table in ctx.id_base.keys() {
        repair_sequence(client, &options.schema, table).await?;
    }
    Ok(tables)
}

/// Streams one table: rows are encoded on a blocking thread while this task sends them.
async fn copy_table(
    client: &Client,
    options: &GenerateOptions,
    world: &Arc<World>,
    ctx: &Arc<Ctx>,
    generator: TableGen,
    plan: &Plan,
) -> Result<Written> {
    let sink = client
        .copy_in::<_, bytes::Bytes>(&plan.copy_sql(&options.schema))
        .await
        .map_err(Error::query(plan.table.clone()))?;
    let mut sink = pin!(sink);
    let (tx, mut rx) = mpsc::channel(DEFAULT_CHANNEL_CHUNKS);
    let producer = {
        let (world, ctx, plan) = (Arc::clone(world), Arc::clone(ctx), plan.clone());
        let chunk = options.chunk_bytes;
        tokio::task::spawn_blocking(move || {
            let mut encoder = Encoder::new(&plan.table, chunk, tx);
            (generator.produce)(&world, &ctx, &plan, &mut encoder)?;
            encoder.finish()
        })
    };
    let mut sent: Result<()> = Ok(());
    while let Some(chunk) = rx.recv().await {
        if let Err(e) = sink.send(chunk).await {
            sent = Err(Error::query(plan.table.clone())(e));
            break;
        }
    }
    // Unblocks a producer waiting on a full channel after a failed send.
    drop(rx);
    let produced = producer.await.map_err(|e| Error::Generate {
        table: plan.table.clone(),
        message: format!("the row encoder stopped: {e}"),
    });
    sent?;
    let written = produced??;
    let rows = sink
        .as_mut()
        .finish()
        .await
        .map_err(Error::query(plan.table.clone()))?;
    if rows != written.rows {
        return Err(Error::Generate {
            table: plan.table.clone(),
            message: format!("PostgreSQL took {rows} rows of the {} sent", written.rows),
        });
    }
    Ok(written)
}

/// The generator writes a history, not into one: existing runs would collide with its ids.
async fn refuse_existing_history(client: &Client, schema: &str, live: &LiveSchema) -> Result<()> {
    for table in ["dag_run", "task_instance"] {
        if !live.tables.contains_key(table) {
            continue;
        }
        let sql = format!(
            "SELECT EXISTS (SELECT 1 FROM {}.{})",
            quote_ident(schema),
            quote_ident(table)
        );
        let present: bool = client
            .query_one(&sql, &[])
            .await
            .map_err(Error::query(table))?
            .get(0);
        if present {
            return Err(Error::Generate {
                table: table.to_owned(),
                message: "already has rows; generate fills an empty history, so use a fresh \
                          database made by `airflow db migrate`"
                    .to_owned(),
            });
        }
    }
    Ok(())
}

/// Reads what the writers must not collide with (ids, natural keys) and prepares the secrets.
async fn read_context(
    client: &Client,
    options: &GenerateOptions,
    schema: &VersionSchema,
    live: &LiveSchema,
    plans: &[(TableGen, Plan)],
) -> Result<Ctx> {
    let mut id_base = BTreeMap::new();
    for (_, plan) in plans {
        if plan.columns.iter().any(|(name, _)| *name == "id")
            && live
                .tables
                .get(&plan.table)
                .and_then(|t| t.column("id"))
                .is_some_and(|c| c.serial)
        {
            let sql = format!(
                "SELECT coalesce(max(id), 0)::bigint FROM {}.{}",
                quote_ident(&options.schema),
                quote_ident(&plan.table)
            );
            let max: i64 = client
                .query_one(&sql, &[])
                .await
                .map_err(Error::query(plan.table.clone()))?
                .get(0);
            id_base.insert(plan.table.clone(), max);
        }
    }
    let mut existing = BTreeSet::new();
    for (table, key) in [
        ("slot_pool", "pool"),
        ("variable", "key"),
        ("connection", "conn_id"),
    ] {
        if !live.tables.contains_key(table) {
            continue;
        }
        let sql = format!(
            "SELECT {key}::text FROM {}.{} WHERE {key} IS NOT NULL",
            quote_ident(&options.schema),
            quote_ident(table)
        );
        for row in client.query(&sql, &[]).await.map_err(Error::query(table))? {
            existing.insert(format!("{table}:{}", row.get::<_, String>(0)));
        }
    }
    let has_templates =
        schema.table("log_template").is_some() && live.tables.contains_key("log_template");
    let first_template = id_base.get("log_template").copied().unwrap_or(0) + 1;
    Ok(Ctx {
        id_base,
        existing,
        fernet: options
            .fernet_key
            .as_ref()
            .and_then(|key| fernet::Fernet::new(key.expose())),
        log_templates: has_templates.then_some((first_template, first_template + 1)),
        empty_pickle: crate::remap::json_to_pickle(&serde_json::Value::Object(Default::default())),
        stats: Stats::default(),
    })
}

/// Moves the sequence behind `table.id` past the largest id, as Airflow's next insert expects.
async fn repair_sequence(client: &Client, schema: &str, table: &str) -> Result<()> {
    let qualified = format!("{}.{}", quote_ident(schema), quote_ident(table));
    let sql = format!(
        "SELECT setval(seq, max_id) FROM (SELECT pg_get_serial_sequence($1, 'id') AS seq, \
         (SELECT max(id) FROM {qualified}) AS max_id) s WHERE seq IS NOT NULL AND max_id IS NOT NULL"
    );
    client
        .query(&sql, &[&qualified])
        .await
        .map_err(Error::query(format!("{table} id sequence")))?;
    Ok(())
}
