//! The command line: clap arguments as typed, turned into library options, and the human or
//! JSON rendering of what the library returns. The library never sees clap.

mod args;
mod export;
mod generate;
mod import;
mod inspect;
mod logs;
mod progress;
mod time;

use std::io::{IsTerminal, Write as _};
use std::process::ExitCode;

pub use args::{Cli, Command, OutputFormat};
pub use logs::{
    LogsArchiveArgs, LogsArgs, LogsCommand, LogsCopyArgs, OldEventsArg, QuotaArgs, SelectionArgs,
    TemplateArg,
};

use anyhow::Context as _;
use serde::Serialize;

use crate::error::Error;
use crate::source::{DATABASE_URL_VARIABLES, DatabaseUrl};

/// Exit code for success.
pub const EXIT_OK: u8 = 0;
/// Exit code for "ran, and found problems the user asked about".
pub const EXIT_PROBLEMS: u8 = 1;
/// Exit code for an error: nothing useful was done.
pub const EXIT_ERROR: u8 = 2;
/// Exit code for "completed, but some events were rejected" (`contrail logs copy`).
pub const EXIT_PARTIAL: u8 = 3;

/// Runs the parsed command line and returns the process exit code.
///
/// # Errors
/// Whatever the command failed with; `main` prints the chain and exits with [`EXIT_ERROR`].
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    init_tracing(cli.verbose, cli.quiet);
    match cli.command {
        Command::Inspect(args) => inspect::run(args).await,
        Command::Export(args) => export::run(*args, cli.quiet).await,
        Command::Import(args) => import::run(*args, cli.quiet).await,
        Command::Verify(args) => import::verify(*args).await,
        Command::Generate(args) => generate::run(args).await,
        Command::Logs(args) => logs::run(args, cli.quiet).await,
    }
}

/// Picks the database URL: the flag, else the first of [`DATABASE_URL_VARIABLES`] that is set.
pub(crate) fn database_url(flag: Option<&str>) -> Result<DatabaseUrl, Error> {
    if let Some(url) = flag {
        return DatabaseUrl::parse(url);
    }
    for variable in DATABASE_URL_VARIABLES {
        if let Ok(url) = std::env::var(variable)
            && !url.trim().is_empty()
        {
            return DatabaseUrl::parse(&url);
        }
    }
    Err(Error::DatabaseUrl {
        message: format!(
            "no database given: pass --db URL or set {}",
            DATABASE_URL_VARIABLES.join(" or ")
        ),
    })
}

fn init_tracing(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CONTRAIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // A second initialisation (tests calling run twice) is harmless; ignore it.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// Prints a command's summary on stdout, as JSON or through `render`, and returns success.
///
/// # Errors
/// When the summary cannot be serialised or stdout cannot be written.
pub(crate) fn print_summary<T: Serialize>(
    summary: &T,
    format: OutputFormat,
    render: impl FnOnce(&T) -> String,
) -> anyhow::Result<ExitCode> {
    let text = match format {
        OutputFormat::Json => serde_json::to_string_pretty(summary)? + "\n",
        OutputFormat::Human => render(summary),
    };
    std::io::stdout()
        .write_all(text.as_bytes())
        .context("writing the summary to stdout")?;
    Ok(ExitCode::from(EXIT_OK))
}
