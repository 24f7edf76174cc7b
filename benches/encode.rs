//! Arrow → zstd Parquet encoding throughput, and payload (pickle) decoding, the export's other
//! CPU stages.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use arrow::array::{Array, BinaryArray, RecordBatch};
use contrail::dataset::parquet::{ParquetOptions, write_file};
use contrail::remap::{PayloadKind, json_to_pickle, split_payload_column};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

mod common;

const ROWS: usize = 100_000;

fn batch() -> RecordBatch {
    common::decoded(ROWS, ROWS).remove(0)
}

fn encode(c: &mut Criterion) {
    let batch = batch();
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Bytes(batch.get_array_memory_size() as u64));
    // As exports write files: no dictionary on the columns the first rows show to be mostly
    // distinct. The second measures what a dictionary on every column would cost.
    let sampled = ParquetOptions::default()
        .properties_for(&batch, Vec::new())
        .unwrap();
    let everywhere = ParquetOptions::default()
        .properties(&batch.schema(), Vec::new())
        .unwrap();
    for (name, props) in [
        ("parquet_zstd_task_instance_100k_rows", sampled),
        (
            "parquet_zstd_task_instance_100k_rows_dictionary_everywhere",
            everywhere,
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let (stats, bytes) =
                    write_file(&batch, Vec::with_capacity(8 << 20), props.clone()).unwrap();
                std::hint::black_box((stats, bytes));
            })
        });
    }
    group.finish();

    let conf: serde_json::Value = serde_json::json!({"source": "nightly", "retries": 3, "tables": ["a", "b", "c"], "window": {"days": 7, "tz": "UTC"}});
    let pickles: BinaryArray = (0..10_000)
        .map(|_| Some(json_to_pickle(&conf)))
        .collect::<Vec<_>>()
        .iter()
        .map(|p| p.as_deref())
        .collect();
    let mut group = c.benchmark_group("payload");
    group.throughput(Throughput::Elements(pickles.len() as u64));
    group.bench_function("pickled_conf_to_json_10k", |b| {
        b.iter(|| std::hint::black_box(split_payload_column(PayloadKind::Pickle, &pickles)))
    });
    group.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);
