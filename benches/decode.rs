//! Binary COPY → Arrow decoding throughput, the export's first CPU stage.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use contrail::source::decode::BatchDecoder;
use contrail::source::decode::copy::CopyFramer;
use contrail::source::read::{Chunk, Chunker};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

mod common;

const ROWS: usize = 100_000;

fn decode(c: &mut Criterion) {
    let messages = common::copy_messages(ROWS);
    let bytes: usize = messages.iter().map(|m| m.len()).sum();
    // Chunked as `source::read::copy_out` hands them to the decoder.
    let mut chunker = Chunker::default();
    let mut chunks: Vec<Chunk> = messages
        .into_iter()
        .filter_map(|m| chunker.push(m))
        .collect();
    chunks.extend(chunker.finish());
    let schema = common::schema();
    let wires = common::wires();
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("task_instance_100k_rows", |b| {
        b.iter(|| {
            let mut decoder = BatchDecoder::try_new(schema.clone(), &wires, 65_536).unwrap();
            let mut framer = CopyFramer::new();
            let mut rows = 0;
            for chunk in &chunks {
                rows += framer
                    .feed(chunk, decoder.width(), |fields| decoder.append(fields))
                    .unwrap();
                if decoder.rows() >= 65_536 {
                    std::hint::black_box(decoder.finish().unwrap());
                }
            }
            std::hint::black_box(decoder.finish().unwrap());
            assert_eq!(rows, ROWS);
        })
    });
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
