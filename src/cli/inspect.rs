//! `contrail inspect`: runs the inspection and renders it.

use std::process::ExitCode;

use comfy_table::{Cell, CellAlignment, Table, presets::UTF8_BORDERS_ONLY};

use crate::cli::args::InspectArgs;
use crate::cli::{database_url, print_summary};
use crate::source::inspect::{InspectOptions, Inspection, inspect};

pub(super) async fn run(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let url = database_url(args.db.as_deref())?;
    let mut options = InspectOptions::default()
        .with_schema(args.schema)
        .with_assumed_version(args.assume_version);
    if args.exact {
        options = options.with_exact_count_limit(i64::MAX);
    }
    let inspection = inspect(&url, &options).await?;
    print_summary(&inspection, args.output, render)
}

fn render(report: &Inspection) -> String {
    let mut out = format!(
        "Database:  {}\nPostgreSQL {}\nAirflow schema {} ({}), alembic revision {}{}\n\n",
        report.database,
        report.server_version,
        report.airflow_version,
        report.airflow_releases,
        report.alembic_revisions.join(", "),
        if report.version_assumed {
            " (version assumed, not detected)"
        } else {
            ""
        }
    );
    let mut tables = Table::new();
    tables.load_style(UTF8_BORDERS_ONLY);
    tables.set_header([
        "table",
        "rows",
        "count",
        "size",
        "time column",
        "from",
        "to",
    ]);
    for t in &report.tables {
        tables.add_row(vec![
            Cell::new(&t.table),
            Cell::new(t.rows).set_alignment(CellAlignment::Right),
            Cell::new(if t.rows_exact { "exact" } else { "estimate" }),
            Cell::new(human_bytes(t.bytes)).set_alignment(CellAlignment::Right),
            Cell::new(&t.time_column),
            Cell::new(t.min_time.as_deref().unwrap_or("-")),
            Cell::new(t.max_time.as_deref().unwrap_or("-")),
        ]);
    }
    out.push_str(&tables.to_string());
    out.push('\n');
    if report.drift.is_empty() {
        out.push_str("\nSchema matches the catalog's description of this version.\n");
    } else {
        out.push_str("\nSchema differences from a fresh database of this version:\n");
        for d in &report.drift {
            out.push_str(&format!("  {}: {}\n", d.table, d.message));
        }
    }
    if report.warnings.is_empty() {
        out.push_str("\nNo warnings.\n");
    } else {
        out.push_str("\nWarnings:\n");
        for w in &report.warnings {
            out.push_str(&format!("  {} [{}]: {}\n", w.table, w.kind, w.message));
        }
    }
    out
}

pub(super) fn human_bytes(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_like_people_write_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(8192), "8.0 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024 + 1024 * 512), "5.5 MiB");
    }
}
