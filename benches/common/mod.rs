//! Inputs shared by the benchmarks: a task_instance-shaped binary COPY stream, as PostgreSQL
//! sends `COPY (SELECT …) TO STDOUT (FORMAT binary)` for the export's query.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, missing_docs)]

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use bytes::Bytes;
use contrail::catalog::WireType;
use contrail::source::decode::BatchDecoder;
use contrail::source::decode::copy::CopyFramer;

/// Columns of the benchmark rows: (name, Arrow type, wire type).
pub fn columns() -> Vec<(&'static str, DataType, WireType)> {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    vec![
        ("dag_id", DataType::Utf8, WireType::Text),
        ("task_id", DataType::Utf8, WireType::Text),
        ("run_id", DataType::Utf8, WireType::Text),
        ("map_index", DataType::Int32, WireType::Int4),
        ("logical_date", ts.clone(), WireType::Timestamp),
        ("start_date", ts.clone(), WireType::Timestamp),
        ("end_date", ts, WireType::Timestamp),
        ("duration", DataType::Float64, WireType::Float8),
        ("state", DataType::Utf8, WireType::Text),
        ("try_number", DataType::Int32, WireType::Int4),
        ("hostname", DataType::Utf8, WireType::Text),
        ("pool", DataType::Utf8, WireType::Text),
        ("executor_config", DataType::Binary, WireType::Bytea),
        ("next_kwargs", DataType::Utf8, WireType::Jsonb),
    ]
}

/// The Arrow schema of [`columns`].
pub fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(
        columns()
            .into_iter()
            .map(|(n, t, _)| Field::new(n, t, true))
            .collect::<Vec<_>>(),
    ))
}

/// Wire types of [`columns`].
pub fn wires() -> Vec<WireType> {
    columns().into_iter().map(|(_, _, w)| w).collect()
}

/// Task instances per DAG run in [`copy_stream`].
pub const TASKS_PER_RUN: usize = 24;

/// A binary COPY stream of `rows` rows (header, tuples, trailer), deterministic. Rows come as
/// a scheduler inserts them: the task instances of one run together (not in task order), runs
/// of different DAGs one after another.
pub fn copy_stream(rows: usize) -> Vec<u8> {
    copy_stream_and_tuples(rows).0
}

/// [`copy_stream`] cut into messages as PostgreSQL sends it: the header with the first tuple,
/// then one message per tuple, then the trailer.
pub fn copy_messages(rows: usize) -> Vec<Bytes> {
    let (stream, starts) = copy_stream_and_tuples(rows);
    let stream = Bytes::from(stream);
    let mut cuts: Vec<usize> = starts.into_iter().skip(1).collect();
    cuts.push(stream.len() - 2);
    let mut messages = Vec::with_capacity(cuts.len() + 1);
    let mut start = 0;
    for cut in cuts.into_iter().chain([stream.len()]) {
        messages.push(stream.slice(start..cut));
        start = cut;
    }
    messages
}

/// [`copy_stream`] and where each of its tuples starts.
fn copy_stream_and_tuples(rows: usize) -> (Vec<u8>, Vec<usize>) {
    let mut out = b"PGCOPY\n\xff\r\n\0".to_vec();
    out.extend_from_slice(&[0; 8]);
    let mut starts = Vec::with_capacity(rows);
    let states = ["success", "failed", "skipped", "up_for_retry", "running"];
    for i in 0..rows {
        starts.push(out.len());
        let fields = columns().len() as i16;
        out.extend_from_slice(&fields.to_be_bytes());
        let text = |out: &mut Vec<u8>, s: &str| {
            out.extend_from_slice(&(s.len() as i32).to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        };
        let int4 = |out: &mut Vec<u8>, v: i32| {
            out.extend_from_slice(&4i32.to_be_bytes());
            out.extend_from_slice(&v.to_be_bytes());
        };
        let ts = |out: &mut Vec<u8>, v: i64| {
            out.extend_from_slice(&8i32.to_be_bytes());
            out.extend_from_slice(&v.to_be_bytes());
        };
        let run = i / TASKS_PER_RUN;
        let dag = run % 97;
        text(&mut out, &format!("etl_pipeline_{dag:03}"));
        text(
            &mut out,
            &format!("task_{:03}", (i % TASKS_PER_RUN) * 7 % TASKS_PER_RUN),
        );
        text(
            &mut out,
            &format!(
                "scheduled__2024-{:02}-{:02}T{:02}:00:00+00:00",
                1 + run / 2000 % 12,
                1 + run / 70 % 28,
                run % 24
            ),
        );
        int4(&mut out, if i % 13 == 0 { (i % 7) as i32 } else { -1 });
        let base = 757_382_400_000_000i64 + (i as i64) * 60_000_000;
        ts(&mut out, base);
        ts(&mut out, base + 5_000_000);
        if i % 11 == 0 {
            out.extend_from_slice(&(-1i32).to_be_bytes());
        } else {
            ts(&mut out, base + 65_000_000);
        }
        out.extend_from_slice(&8i32.to_be_bytes());
        out.extend_from_slice(&(60.0 + (i % 17) as f64 * 0.25).to_be_bytes());
        text(&mut out, states[i % states.len()]);
        int4(&mut out, 1 + (i % 3) as i32);
        text(&mut out, &format!("worker-{}.airflow.internal", i % 8));
        text(&mut out, "default_pool");
        let pickle = [0x80u8, 0x05, 0x7d, 0x94, 0x2e];
        out.extend_from_slice(&(pickle.len() as i32).to_be_bytes());
        out.extend_from_slice(&pickle);
        if i % 5 == 0 {
            let json = b"\x01{\"event\": \"done\"}";
            out.extend_from_slice(&(json.len() as i32).to_be_bytes());
            out.extend_from_slice(json);
        } else {
            out.extend_from_slice(&(-1i32).to_be_bytes());
        }
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    (out, starts)
}

/// [`copy_stream`]'s `rows` rows decoded as the export decodes them, in batches of up to
/// `batch_rows` rows.
pub fn decoded(rows: usize, batch_rows: usize) -> Vec<RecordBatch> {
    let messages = copy_messages(rows);
    let mut decoder = BatchDecoder::try_new(schema(), &wires(), batch_rows).unwrap();
    let mut framer = CopyFramer::new();
    let mut out = Vec::new();
    // Fed as the export feeds them: a batch is cut before a chunk of messages that could
    // overfill it, and once one fills it.
    for chunk in messages.chunks(64) {
        if decoder.rows() > 0 && decoder.rows() + chunk.len() > batch_rows {
            out.push(decoder.finish().unwrap());
        }
        framer
            .feed(chunk, decoder.width(), |fields| decoder.append(fields))
            .unwrap();
        if decoder.rows() >= batch_rows {
            out.push(decoder.finish().unwrap());
        }
    }
    if decoder.rows() > 0 {
        out.push(decoder.finish().unwrap());
    }
    out
}
