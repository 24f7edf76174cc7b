//! Run index lookups: each decoded task instance matched to its DAG run's date
//! (`RunIndex::fill`), against an index of as many runs as a 5M-task-instance history has,
//! so that its tables are far bigger than the CPU's caches, as in the export.
//!
//! Two orders of task instances: `time`, a run's task instances side by side and runs in the
//! order they were created (as `dag_run` is read into the index), and `dag`, DAG by DAG, so
//! that consecutive runs lie far apart in the index.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use contrail::source::query::RunLookup;
use contrail::source::runs::RunIndex;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// Runs in the index: the generator's 5M task instances belong to about 900,000 runs.
const RUNS: usize = 900_000;
/// DAGs the runs are spread over.
const DAGS: usize = 354;
/// Task instances looked up per iteration, in batches as the export decodes them.
const ROWS: usize = 200_000;
const BATCH_ROWS: usize = 8192;

fn dag_id(run: usize) -> String {
    format!("warehouse_pipeline_{:03}", run % DAGS)
}

fn run_id(run: usize) -> String {
    let minutes = run / DAGS * 15;
    format!(
        "scheduled__2024-{:02}-{:02}T{:02}:{:02}:00+00:00",
        1 + minutes / (28 * 24 * 60) % 12,
        1 + minutes / (24 * 60) % 28,
        minutes / 60 % 24,
        minutes % 60,
    )
}

/// Task instances of the runs `order` visits, 1 to 10 per run, a run's rows side by side.
fn batches(order: impl Iterator<Item = usize>, schema: &Arc<Schema>) -> Vec<RecordBatch> {
    let mut dag_ids = Vec::with_capacity(ROWS);
    let mut run_ids = Vec::with_capacity(ROWS);
    for run in order {
        let (dag, id) = (dag_id(run), run_id(run));
        for _ in 0..1 + run * 7 % 10 {
            dag_ids.push(dag.clone());
            run_ids.push(id.clone());
        }
        if dag_ids.len() >= ROWS {
            break;
        }
    }
    dag_ids.truncate(ROWS);
    run_ids.truncate(ROWS);
    (0..ROWS)
        .step_by(BATCH_ROWS)
        .map(|start| {
            let end = (start + BATCH_ROWS).min(ROWS);
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from_iter_values(&dag_ids[start..end])),
                    Arc::new(StringArray::from_iter_values(&run_ids[start..end])),
                ],
            )
            .unwrap()
        })
        .collect()
}

fn fill(c: &mut Criterion) {
    let mut index = RunIndex::with_capacity("logical_date", RUNS);
    for run in 0..RUNS {
        index.insert(&dag_id(run), &run_id(run), Some(run as i64 * 1_000_000));
    }
    assert!(!index.is_ambiguous());

    let decoded = Arc::new(Schema::new(vec![
        Field::new("dag_id", DataType::Utf8, false),
        Field::new("run_id", DataType::Utf8, false),
    ]));
    let date = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let lookup = RunLookup {
        column: "logical_date".to_owned(),
        dag_id: 0,
        run_id: 1,
        fills: vec![2],
        schema: Arc::new(Schema::new(vec![
            Field::new("dag_id", DataType::Utf8, false),
            Field::new("run_id", DataType::Utf8, false),
            Field::new("logical_date", date, true),
        ])),
    };
    // Time order starts a third of the way in, as a range of the table would.
    let time = batches(RUNS / 3..RUNS, &decoded);
    let dag = batches((0..DAGS).flat_map(|d| (d..RUNS).step_by(DAGS)), &decoded);

    let mut group = c.benchmark_group("run_index");
    group.throughput(Throughput::Elements(ROWS as u64));
    for (name, batches) in [("fill_time_order", &time), ("fill_dag_order", &dag)] {
        group.bench_function(name, |b| {
            b.iter(|| {
                for batch in batches {
                    let filled = index.fill(&lookup, None, batch).unwrap();
                    assert_eq!(filled.column(2).null_count(), 0);
                    std::hint::black_box(filled);
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, fill);
criterion_main!(benches);
