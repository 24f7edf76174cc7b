//! Command-line arguments as the user types them.

use clap::{Args, Parser, Subcommand, ValueEnum};

/// contrail moves the history of Apache Airflow environments.
#[derive(Debug, Parser)]
#[command(name = "contrail", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug). CONTRAIL_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Only errors on stderr; no progress bars.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Look at an Airflow metadata database: version, tables, sizes, time ranges, and what
    /// matters before moving it.
    Inspect(InspectArgs),
    /// Export the history tables, as of one snapshot, to canonical Parquet in a directory or
    /// on S3; the manifest is written last.
    Export(Box<ExportArgs>),
    /// Load a dataset into another environment's Airflow database (made by its own `airflow db
    /// migrate`), any version to any later one, in one transaction.
    Import(Box<ImportArgs>),
    /// Compare a dataset with an Airflow database: rows present, content checksums. Changes
    /// nothing.
    Verify(Box<ImportArgs>),
    /// Fill an empty Airflow metadata database (schema made by `airflow db migrate`) with
    /// realistic, deterministic synthetic history, for tests, demos and benchmarks.
    Generate(GenerateArgs),
    /// Copy task logs between CloudWatch Logs groups (renaming streams across Airflow's log
    /// filename templates), or archive them to Parquet.
    Logs(super::LogsArgs),
}

/// Output formats for summaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Tables for people.
    Human,
    /// One JSON document on stdout.
    Json,
}

/// Data file formats of `contrail export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DataFormat {
    /// Parquet, partitioned by day (the default; what analysts' engines read).
    Parquet,
    /// One CSV file per table.
    Csv,
}

/// `contrail inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// PostgreSQL URL (postgresql://user:pass@host:port/db; SQLAlchemy's
    /// postgresql+psycopg2:// is accepted). Default: $DATABASE_URL, then Airflow's own
    /// $AIRFLOW__DATABASE__SQL_ALCHEMY_CONN.
    #[arg(long, value_name = "URL")]
    pub db: Option<String>,

    /// PostgreSQL schema that holds Airflow's tables.
    #[arg(long, default_value = crate::source::inspect::DEFAULT_SCHEMA)]
    pub schema: String,

    /// Count every table exactly, however large (default: planner estimates above
    /// 5,000,000 rows).
    #[arg(long)]
    pub exact: bool,

    /// Treat the database as this Airflow version instead of detecting it (for alembic
    /// revisions contrail does not know, e.g. 2.6.1); differences are reported as drift.
    #[arg(long, value_name = "VERSION")]
    pub assume_version: Option<String>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,
}

/// `contrail export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// PostgreSQL URL of the Airflow metadata database (default: $DATABASE_URL, then
    /// $AIRFLOW__DATABASE__SQL_ALCHEMY_CONN).
    #[arg(long, value_name = "URL")]
    pub db: Option<String>,

    /// Destination: a directory, or s3://bucket/prefix.
    #[arg(long, value_name = "DEST")]
    pub to: String,

    /// PostgreSQL schema that holds Airflow's tables.
    #[arg(long, default_value = crate::source::inspect::DEFAULT_SCHEMA)]
    pub schema: String,

    /// Treat the database as this Airflow version instead of detecting it.
    #[arg(long, value_name = "VERSION")]
    pub assume_version: Option<String>,

    /// Only these tables (comma separated).
    #[arg(long, value_delimiter = ',', value_name = "TABLE,...")]
    pub tables: Option<Vec<String>>,

    /// Not these tables (comma separated).
    #[arg(long, value_delimiter = ',', value_name = "TABLE,...")]
    pub exclude_tables: Vec<String>,

    /// Also export `connection` (passwords and extras as stored, Fernet-encrypted or not).
    #[arg(long)]
    pub include_connections: bool,

    /// Allow unencrypted connection secrets in a destination without server-side encryption.
    #[arg(long)]
    pub allow_plaintext_secrets: bool,

    /// Only rows at or after this time: 2024-03-01, 2024-03-01T12:00:00Z, or an age like 14d.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,

    /// Only rows before this time (same forms as --since). Without --since, rows with no time
    /// at all are included too.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,

    /// Only rows older than this many days (as Airflow's `db clean` cut-off).
    #[arg(long, value_name = "DAYS")]
    pub max_age_days: Option<u32>,

    /// Continue from where the newest export at the destination stopped.
    #[arg(long)]
    pub incremental: bool,

    /// Parallel readers (database connections).
    #[arg(long, short = 'j', default_value_t = crate::export::DEFAULT_JOBS)]
    pub jobs: usize,

    /// Memory for buffering rows before they are sorted and written, per job, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = crate::export::DEFAULT_MEMORY_PER_JOB / (1024 * 1024))]
    pub memory_per_job: usize,

    /// Memory for the index of DAG runs that lets contrail, not PostgreSQL, attach each task
    /// instance's logical date, in MiB. A larger dag_run table (or 0) leaves the join to
    /// PostgreSQL: slower, same result.
    #[arg(long, value_name = "MIB", default_value_t = crate::source::runs::DEFAULT_RUN_INDEX_MEMORY / (1024 * 1024))]
    pub run_index_memory: usize,

    /// Directory for rows waiting on local disk to be merged into one sorted file per day
    /// (needs about the largest table's size as Arrow data). Default: TMPDIR. What a killed
    /// export left there is removed by the next export using the same directory.
    #[arg(long, value_name = "DIR")]
    pub spill_dir: Option<std::path::PathBuf>,

    /// Size at which a Parquet file is closed and the next one begun, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = crate::export::DEFAULT_MAX_FILE_BYTES / (1024 * 1024))]
    pub max_file_mib: usize,

    /// File format: day-partitioned Parquet, or one CSV file per table (RFC 4180, header row,
    /// NULL as an empty field and the empty string as "").
    #[arg(long, value_enum, default_value_t = DataFormat::Parquet)]
    pub format: DataFormat,

    /// zstd compression level of Parquet files (1-22).
    #[arg(long, default_value_t = crate::dataset::parquet::DEFAULT_ZSTD_LEVEL)]
    pub zstd_level: i32,

    /// S3 server-side encryption: aws:kms or AES256.
    #[arg(long, value_name = "MODE")]
    pub sse: Option<String>,

    /// KMS key for --sse aws:kms (default: the bucket's AWS managed key).
    #[arg(long, value_name = "KEY")]
    pub kms_key_id: Option<String>,

    /// Part size of S3 multipart uploads, in MiB (5 to 5120); files smaller than one part are
    /// sent in one request.
    #[arg(long, value_name = "MIB", default_value_t = crate::store::DEFAULT_PART_SIZE / (1024 * 1024))]
    pub part_size_mib: usize,

    /// Print the plan (tables, estimated rows, ranges, object keys) and write nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Output format of the summary.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,
}

/// `contrail generate --insertion-order`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InsertionOrderArg {
    /// By creation time across DAGs.
    Time,
    /// DAG by DAG.
    Dag,
}

/// What `contrail import` does with rows whose natural key exists in the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConflictArg {
    /// Keep the target's row; count it as skipped.
    Skip,
    /// Abort; nothing is written.
    Fail,
    /// Overwrite the target row's content (its ids and references stay).
    Update,
}

/// Where Airflow 3 dag_version references of imported rows point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DagVersionArg {
    /// Leave them NULL, as Airflow's own 2-to-3 migration does.
    Null,
    /// The newest dag_version of the DAG in the target (parse the DAGs there first).
    Latest,
}

/// `contrail import` and `contrail verify`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The dataset: a directory, or s3://bucket/prefix.
    #[arg(long, value_name = "SRC")]
    pub from: String,

    /// PostgreSQL URL of the target Airflow database (default: $DATABASE_URL, then
    /// $AIRFLOW__DATABASE__SQL_ALCHEMY_CONN).
    #[arg(long, value_name = "URL")]
    pub db: Option<String>,

    /// The export to use (default: the newest manifest at SRC).
    #[arg(long, value_name = "ID")]
    pub export_id: Option<String>,

    /// PostgreSQL schema that holds the target's Airflow tables.
    #[arg(long, default_value = crate::source::inspect::DEFAULT_SCHEMA)]
    pub schema: String,

    /// Treat the target as this Airflow version instead of detecting it.
    #[arg(long, value_name = "VERSION")]
    pub assume_version: Option<String>,

    /// Only these tables (comma separated).
    #[arg(long, value_delimiter = ',', value_name = "TABLE,...")]
    pub tables: Option<Vec<String>>,

    /// Not these tables (comma separated).
    #[arg(long, value_delimiter = ',', value_name = "TABLE,...")]
    pub exclude_tables: Vec<String>,

    /// Rows whose natural key exists in the target (dag_run: dag_id+run_id; task_instance:
    /// dag_id+task_id+run_id+map_index; variable: key; slot_pool: pool).
    #[arg(long, value_enum, default_value_t = ConflictArg::Skip)]
    pub on_conflict: ConflictArg,

    /// Do everything, report what would be inserted, skipped and updated, then roll back.
    #[arg(long)]
    pub dry_run: bool,

    /// Import into a target older than the dataset's source; every column it cannot hold is
    /// reported.
    #[arg(long)]
    pub allow_downgrade: bool,

    /// Airflow 3: what task_instance.dag_version_id and dag_run.created_dag_version_id point at.
    #[arg(long, value_enum, default_value_t = DagVersionArg::Null)]
    pub dag_version: DagVersionArg,

    /// The old environment's [core] fernet_key, to decrypt variables and connection secrets.
    #[arg(
        long,
        value_name = "KEY",
        env = "CONTRAIL_SOURCE_FERNET_KEY",
        hide_env_values = true
    )]
    pub source_fernet_key: Option<String>,

    /// The new environment's [core] fernet_key, to encrypt them again (first key encrypts).
    #[arg(
        long,
        value_name = "KEY",
        env = "CONTRAIL_TARGET_FERNET_KEY",
        hide_env_values = true
    )]
    pub target_fernet_key: Option<String>,

    /// Both environments use the same Fernet key: copy encrypted values as they are.
    #[arg(long)]
    pub same_fernet_key: bool,

    /// Skip the comparison of counts and checksums after the commit.
    #[arg(long)]
    pub no_verify: bool,

    /// Output format of the summary.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,
}

/// `contrail generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// PostgreSQL URL of the database to fill (its dag_run and task_instance must be empty).
    /// Default: $DATABASE_URL, then Airflow's own $AIRFLOW__DATABASE__SQL_ALCHEMY_CONN.
    #[arg(long, value_name = "URL")]
    pub db: Option<String>,

    /// PostgreSQL schema that holds Airflow's tables.
    #[arg(long, default_value = crate::generate::DEFAULT_SCHEMA)]
    pub schema: String,

    /// Seed: the same seed gives the same history.
    #[arg(long, default_value_t = crate::generate::DEFAULT_SEED)]
    pub seed: u64,

    /// Task instances to aim for (the result is within a few percent).
    #[arg(long, value_name = "N", default_value_t = crate::generate::DEFAULT_TASK_INSTANCES)]
    pub task_instances: u64,

    /// Number of DAGs (default: about sqrt(task instances) / 4, at least 3).
    #[arg(long, value_name = "N")]
    pub dags: Option<u32>,

    /// Days of history.
    #[arg(long, value_name = "N", default_value_t = crate::generate::DEFAULT_DAYS)]
    pub days: u32,

    /// First day of the history, YYYY-MM-DD (UTC).
    #[arg(long, value_name = "DATE", default_value = crate::generate::DEFAULT_START)]
    pub start: String,

    /// Fernet key to encrypt variables and connection secrets with, as Airflow's
    /// [core] fernet_key (default: store them in clear, is_encrypted = false).
    #[arg(
        long,
        value_name = "KEY",
        env = "AIRFLOW__CORE__FERNET_KEY",
        hide_env_values = true
    )]
    pub fernet_key: Option<String>,

    /// Store a few XCom values as pickles on Airflow 2.x, as with enable_xcom_pickling
    /// (1.10 always has some; 3.x has none).
    #[arg(long)]
    pub xcom_pickles: bool,

    /// Order runs and their task instances are inserted in (and so their ids and physical
    /// order): `time`, as Airflow's scheduler creates them; `dag`, DAG by DAG, so that each
    /// stretch of a table spans every day (the worst case for an export).
    #[arg(long, value_enum, value_name = "ORDER", default_value_t = InsertionOrderArg::Time)]
    pub insertion_order: InsertionOrderArg,

    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,
}
