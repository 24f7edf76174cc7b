//! `contrail export`: arguments to [`ExportOptions`], progress bars, and the summary.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use chrono::Utc;
use comfy_table::{Cell, CellAlignment, Table, presets::UTF8_BORDERS_ONLY};

use crate::cli::args::{DataFormat, ExportArgs, OutputFormat};
use crate::cli::progress::Bars;
use crate::cli::time::parse_time;
use crate::cli::{database_url, print_summary};
use crate::dataset::layout::FileFormat;
use crate::dataset::parquet::ParquetOptions;
use crate::export::{self, ExportOptions, ExportSummary, TableSelection, TimeWindow};
use crate::store::StoreOptions;

pub(super) async fn run(args: ExportArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let url = database_url(args.db.as_deref())?;
    let now = Utc::now();
    let window = TimeWindow {
        since: args
            .since
            .as_deref()
            .map(|t| parse_time(t, now))
            .transpose()
            .map_err(anyhow::Error::msg)
            .context("--since")?,
        until: args
            .until
            .as_deref()
            .map(|t| parse_time(t, now))
            .transpose()
            .map_err(anyhow::Error::msg)
            .context("--until")?,
    };
    if let (Some(since), Some(until)) = (window.since, window.until)
        && since >= until
    {
        bail!("--since must be before --until");
    }
    if args.incremental && window.since.is_some() {
        bail!(
            "--incremental continues from the last export's watermark; it cannot be combined with --since"
        );
    }
    let mut store =
        StoreOptions::default().with_part_size(args.part_size_mib.saturating_mul(1024 * 1024));
    match args.sse.as_deref() {
        None => {}
        Some("aws:kms") => store = store.with_sse_kms(args.kms_key_id.clone()),
        Some("AES256") => store = store.with_sse_s3(),
        Some(other) => bail!("--sse {other}: use aws:kms or AES256"),
    }
    if args.kms_key_id.is_some() && args.sse.as_deref() != Some("aws:kms") {
        bail!("--kms-key-id needs --sse aws:kms");
    }
    let visible = !quiet
        && args.output == OutputFormat::Human
        && !args.dry_run
        && std::io::stderr().is_terminal();
    let bars = Arc::new(Bars::new(visible));
    let options = ExportOptions::new(url, args.to)
        .with_schema(args.schema)
        .with_assumed_version(args.assume_version)
        .with_tables(TableSelection {
            only: args.tables,
            exclude: args.exclude_tables,
            include_connections: args.include_connections,
        })
        .with_window(window)
        .with_max_age_days(args.max_age_days)
        .with_incremental(args.incremental)
        .with_jobs(args.jobs)
        .with_memory_per_job(args.memory_per_job.saturating_mul(1024 * 1024))
        .with_run_index_memory(args.run_index_memory.saturating_mul(1024 * 1024))
        .with_spill_dir(args.spill_dir)
        .with_max_file_bytes(args.max_file_mib.saturating_mul(1024 * 1024))
        .with_format(match args.format {
            DataFormat::Parquet => FileFormat::Parquet,
            DataFormat::Csv => FileFormat::Csv,
        })
        .with_parquet(ParquetOptions::default().with_zstd_level(args.zstd_level))
        .with_store(store)
        .with_dry_run(args.dry_run)
        .with_allow_plaintext_secrets(args.allow_plaintext_secrets)
        .with_progress(bars);
    let summary = export::run(options).await?;
    print_summary(&summary, args.output, render)
}

fn render(summary: &ExportSummary) -> String {
    let plan = &summary.plan;
    let mut out = format!(
        "{} Airflow {} as of {} to {}\n",
        if summary.dry_run {
            "Would export"
        } else {
            "Exported"
        },
        plan.airflow_version,
        plan.snapshot_time,
        plan.destination
    );
    if plan.since.is_some() || plan.until.is_some() {
        out.push_str(&format!(
            "Window: {} .. {}\n",
            plan.since.as_deref().unwrap_or("beginning"),
            plan.until.as_deref().unwrap_or("snapshot")
        ));
    }
    let mut table = Table::new();
    table.load_style(UTF8_BORDERS_ONLY);
    if summary.dry_run {
        table.set_header(["table", "estimated rows", "ranges", "object keys"]);
        for t in &plan.tables {
            table.add_row(vec![
                Cell::new(&t.table),
                Cell::new(t.estimated_rows).set_alignment(CellAlignment::Right),
                Cell::new(t.ranges.len()).set_alignment(CellAlignment::Right),
                Cell::new(&t.object_keys),
            ]);
        }
        out.push_str(&format!(
            "{table}\nManifest (written last): {}\n",
            plan.manifest
        ));
        return out;
    }
    table.set_header(["table", "rows", "orphans", "files", "size"]);
    for t in &summary.tables {
        table.add_row(vec![
            Cell::new(&t.table),
            Cell::new(t.rows).set_alignment(CellAlignment::Right),
            Cell::new(t.orphan_rows).set_alignment(CellAlignment::Right),
            Cell::new(t.files).set_alignment(CellAlignment::Right),
            Cell::new(crate::cli::inspect::human_bytes(t.bytes as i64))
                .set_alignment(CellAlignment::Right),
        ]);
    }
    let rows: u64 = summary.tables.iter().map(|t| t.rows).sum();
    out.push_str(&format!(
        "{table}\n{rows} rows in {:.1} s. Manifest: {}/{}\n",
        summary.elapsed_seconds, plan.destination, plan.manifest
    ));
    out
}
