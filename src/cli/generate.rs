//! `contrail generate`: builds the options, runs the generator and prints what it wrote.

use std::process::ExitCode;

use comfy_table::{Cell, CellAlignment, Table, presets::UTF8_BORDERS_ONLY};

use crate::cli::args::{GenerateArgs, InsertionOrderArg};
use crate::cli::{database_url, print_summary};
use crate::generate::{self, FernetKey, GenerateOptions, GenerateSummary, InsertionOrder};

pub(super) async fn run(args: GenerateArgs) -> anyhow::Result<ExitCode> {
    let url = database_url(args.db.as_deref())?;
    let fernet_key = args
        .fernet_key
        .as_deref()
        .filter(|k| !k.trim().is_empty())
        .map(FernetKey::try_new)
        .transpose()?;
    let options = GenerateOptions::default()
        .with_schema(args.schema)
        .with_seed(args.seed)
        .with_task_instances(args.task_instances)
        .with_dags(args.dags)
        .with_days(args.days)
        .with_start(&args.start)?
        .with_fernet_key(fernet_key)
        .with_xcom_pickles(args.xcom_pickles)
        .with_insertion_order(match args.insertion_order {
            InsertionOrderArg::Time => InsertionOrder::Time,
            InsertionOrderArg::Dag => InsertionOrder::Dag,
        });
    let summary = generate::run(&url, options).await?;
    print_summary(&summary, args.output, render)
}

fn render(summary: &GenerateSummary) -> String {
    let mut out = format!(
        "Database:  {}\nAirflow schema {}, seed {}\n{} DAGs, {} runs, {} task instances \
         ({} mapped, {} retried, {} orphaned)\n\n",
        summary.database,
        summary.airflow_version,
        summary.seed,
        summary.dags,
        summary.dag_runs,
        summary.task_instances,
        summary.mapped_task_instances,
        summary.retried_task_instances,
        summary.orphan_task_instances,
    );
    let mut table = Table::new();
    table.load_style(UTF8_BORDERS_ONLY);
    table.set_header(["table", "rows", "MiB sent"]);
    for t in &summary.tables {
        table.add_row(vec![
            Cell::new(&t.table),
            Cell::new(t.rows).set_alignment(CellAlignment::Right),
            Cell::new(format!("{:.1}", t.bytes as f64 / (1024.0 * 1024.0)))
                .set_alignment(CellAlignment::Right),
        ]);
    }
    out.push_str(&table.to_string());
    out.push_str(&format!(
        "\n\n{} rows in {:.1} s ({:.0} rows/s).\n",
        summary.total_rows(),
        summary.seconds,
        summary.rows_per_second
    ));
    out
}
