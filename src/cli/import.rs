//! `contrail import` and `contrail verify`: arguments to [`ImportOptions`], progress, and the
//! summaries.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use comfy_table::{Cell, CellAlignment, Table, presets::UTF8_BORDERS_ONLY};

use crate::cli::args::{ConflictArg, DagVersionArg, ImportArgs, OutputFormat};
use crate::cli::progress::Bars;
use crate::cli::{EXIT_PROBLEMS, database_url, print_summary};
use crate::load::{
    self, DagVersionPolicy, FernetKeys, ImportOptions, ImportSummary, OnConflict, VerifySummary,
};

fn options(args: &ImportArgs) -> anyhow::Result<ImportOptions> {
    let url = database_url(args.db.as_deref())?;
    let keys = FernetKeys::new(
        args.source_fernet_key.as_deref(),
        args.target_fernet_key.as_deref(),
        args.same_fernet_key,
    )?;
    Ok(ImportOptions::new(url, args.from.clone())
        .with_export_id(args.export_id.clone())
        .with_schema(args.schema.clone())
        .with_assumed_version(args.assume_version.clone())
        .with_only_tables(args.tables.clone())
        .with_excluded_tables(args.exclude_tables.clone())
        .with_on_conflict(match args.on_conflict {
            ConflictArg::Skip => OnConflict::Skip,
            ConflictArg::Fail => OnConflict::Fail,
            ConflictArg::Update => OnConflict::Update,
        })
        .with_dry_run(args.dry_run)
        .with_allow_downgrade(args.allow_downgrade)
        .with_dag_version(match args.dag_version {
            DagVersionArg::Null => DagVersionPolicy::Null,
            DagVersionArg::Latest => DagVersionPolicy::Latest,
        })
        .with_keys(keys)
        .with_verify(!args.no_verify))
}

pub(super) async fn run(args: ImportArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let visible = !quiet && args.output == OutputFormat::Human && std::io::stderr().is_terminal();
    let options = options(&args)?.with_progress(Arc::new(Bars::new(visible)));
    let summary = load::run(&options).await?;
    let code = print_summary(&summary, args.output, render)?;
    if summary.verification.as_ref().is_some_and(|v| !v.ok()) {
        return Ok(ExitCode::from(EXIT_PROBLEMS));
    }
    Ok(code)
}

pub(super) async fn verify(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let summary = load::verify(&options(&args)?).await?;
    let code = print_summary(&summary, args.output, render_checks)?;
    if !summary.ok() {
        return Ok(ExitCode::from(EXIT_PROBLEMS));
    }
    Ok(code)
}

fn render(summary: &ImportSummary) -> String {
    let mut out = format!(
        "{} export {} (Airflow {}) into Airflow {}\n",
        if summary.dry_run {
            "Dry run (rolled back): would import"
        } else {
            "Imported"
        },
        summary.export_id,
        summary.source_version,
        summary.target_version
    );
    let mut table = Table::new();
    table.load_style(UTF8_BORDERS_ONLY);
    table.set_header([
        "table", "rows", "inserted", "skipped", "updated", "left out",
    ]);
    let right = |n: u64| Cell::new(n).set_alignment(CellAlignment::Right);
    for t in &summary.tables {
        let left_out: u64 = t.left_out.iter().map(|(_, n)| n).sum();
        table.add_row(vec![
            Cell::new(&t.table),
            right(t.rows),
            right(t.inserted),
            right(t.skipped),
            right(t.updated),
            right(left_out),
        ]);
    }
    out.push_str(&format!("{table}\n"));
    for t in &summary.tables {
        for (reason, n) in &t.left_out {
            out.push_str(&format!("{}: {n} rows left out: {reason}\n", t.table));
        }
        if !t.dropped_columns.is_empty() {
            out.push_str(&format!(
                "{}: not kept by Airflow {}: {}\n",
                t.table,
                summary.target_version,
                t.dropped_columns.join(", ")
            ));
        }
        for note in &t.notes {
            out.push_str(&format!("{note}\n"));
        }
    }
    for (name, reason) in &summary.skipped_tables {
        out.push_str(&format!("{name}: not imported: {reason}\n"));
    }
    if let Some(verification) = &summary.verification {
        out.push_str(&render_checks(verification));
    }
    out
}

fn render_checks(summary: &VerifySummary) -> String {
    let mut table = Table::new();
    table.load_style(UTF8_BORDERS_ONLY);
    table.set_header([
        "table",
        "expected",
        "found",
        "missing",
        "differing",
        "checksum",
    ]);
    let right = |n: u64| Cell::new(n).set_alignment(CellAlignment::Right);
    for c in &summary.tables {
        let checksum = if c.dataset_checksum == c.target_checksum {
            format!("= {}", c.target_checksum.get(..12).unwrap_or(""))
        } else {
            "differs".to_owned()
        };
        table.add_row(vec![
            Cell::new(&c.table),
            right(c.expected),
            right(c.found),
            right(c.missing),
            right(c.differing),
            Cell::new(checksum),
        ]);
    }
    let verdict = if summary.ok() {
        "Verified: every row is in the target with the same content."
    } else {
        "Verification found missing or differing rows (rows skipped because they existed \
         before keep the target's content)."
    };
    format!("{table}\n{verdict}\n")
}
