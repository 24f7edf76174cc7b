//! The export's middle stage: rows sorted by day and key, gathered in that order and spilled,
//! then merged back. The gather group compares gathering a flush column by column over all its
//! rows (what the partitioner does) with gathering every column a spill batch at a time (what
//! it did before), on the same order: the ratio is the case for the former.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use arrow::array::{Array, RecordBatch};
use arrow::compute::{SortColumn, concat_batches, interleave, lexsort_to_indices};
use contrail::dataset::gather::gather_batches;
use contrail::dataset::partition::{Flushed, Partitioner};
use contrail::dataset::spill::{Merge, Spill};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

mod common;

const ROWS: usize = 200_000;

/// Rows per decoded batch, as the export decodes them.
const BATCH_ROWS: usize = 8192;

/// Indexes of the sort columns (dag_id, run_id, task_id, map_index) in [`common::schema`].
const SORT: [usize; 4] = [0, 2, 1, 3];

fn gathers(c: &mut Criterion) {
    // DAGs interleaved, as a scheduler inserts them.
    let batches = common::decoded(ROWS, BATCH_ROWS);
    let bytes: usize = batches.iter().map(RecordBatch::get_array_memory_size).sum();
    // Every row in key order, as the flush gathers a buffer: runs of all DAGs arrive
    // interleaved, so consecutive output rows come from all over the buffer.
    let order: Vec<(usize, usize)> = {
        let all = concat_batches(&common::schema(), &batches).unwrap();
        let keys: Vec<SortColumn> = SORT
            .iter()
            .map(|&c| SortColumn {
                values: all.column(c).clone(),
                options: None,
            })
            .collect();
        let sorted = lexsort_to_indices(&keys, None).unwrap();
        // Batches hold up to BATCH_ROWS rows (cut where a chunk of messages ends).
        let position: Vec<(usize, usize)> = batches
            .iter()
            .enumerate()
            .flat_map(|(b, batch)| (0..batch.num_rows()).map(move |row| (b, row)))
            .collect();
        sorted
            .values()
            .iter()
            .map(|&i| position[i as usize])
            .collect()
    };
    let mut group = c.benchmark_group("gather");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("column_by_column_200k_rows", |b| {
        b.iter(|| std::hint::black_box(gather_batches(batches.clone(), &order).unwrap()))
    });
    group.bench_function("all_columns_by_512_rows_200k_rows", |b| {
        b.iter(|| {
            for piece in order.chunks(512) {
                for column in 0..common::columns().len() {
                    let arrays: Vec<&dyn Array> =
                        batches.iter().map(|b| b.column(column).as_ref()).collect();
                    std::hint::black_box(interleave(&arrays, piece).unwrap());
                }
            }
        })
    });
    group.finish();

    let mut group = c.benchmark_group("partition");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.sample_size(20);
    group.bench_function("sort_spill_merge_200k_rows", |b| {
        b.iter(|| {
            let dir = tempfile::tempdir().unwrap();
            let spill = Spill::try_new(dir.path(), "bench", common::schema()).unwrap();
            // Day from logical_date; a budget that flushes a few times, as a job's does.
            let mut partitioner = Partitioner::new(vec![4], SORT.to_vec(), bytes / 4);
            let runs = |flushed: Vec<Flushed>| flushed.into_iter().map(|f| (f.day, f.rows));
            for batch in &batches {
                spill
                    .write(runs(partitioner.push(batch.clone()).unwrap()))
                    .unwrap();
            }
            spill.write(runs(partitioner.finish().unwrap())).unwrap();
            let mut rows = 0;
            for (_, runs) in spill.take() {
                let mut merge = Merge::try_new(&runs, common::schema(), &SORT, BATCH_ROWS).unwrap();
                while let Some(batch) = merge.next_batch().unwrap() {
                    rows += batch.num_rows();
                }
            }
            assert_eq!(rows, ROWS);
        })
    });
    group.finish();
}

criterion_group!(benches, gathers);
criterion_main!(benches);
