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
}

/// Output formats for summaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Tables for people.
    Human,
    /// One JSON document on stdout.
    Json,
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
