//! Binary COPY → Arrow decoding throughput, the export's first CPU stage.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use contrail::source::decode::BatchDecoder;
use contrail::source::decode::copy::CopyFramer;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

mod common;

const ROWS: usize = 100_000;

fn decode(c: &mut Criterion) {
    let stream = common::copy_stream(ROWS);
    let schema = common::schema();
    let wires = common::wires();
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_function("task_instance_100k_rows", |b| {
        b.iter(|| {
            let mut decoder = BatchDecoder::try_new(schema.clone(), &wires, 65_536).unwrap();
            let mut framer = CopyFramer::new();
            let mut rows = 0;
            for chunk in stream.chunks(256 * 1024) {
                framer.push(chunk);
                rows += framer
                    .drain(decoder.width(), |fields| decoder.append(fields))
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
