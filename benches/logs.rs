//! `contrail logs copy` against its quota-bound lower limit, and against the seeds' sequential
//! procedure, on the quota model and on moto.
//!
//! Quota model ([`contrail::logs::QuotaModel`]): AWS's documented quotas per API (GetLogEvents
//! 25 TPS, FilterLogEvents 10, DescribeLogStreams 25, CreateLogStream 50, PutLogEvents 5,000;
//! each a token bucket with one second of burst), pages of at most 10,000 events and 1 MiB, and
//! 20–50 ms per call. Time is scaled by `CONTRAIL_BENCH_SCALE` (default 1): every quota
//! multiplied and every latency divided by it, so the quota-bound limit divides by it exactly,
//! while contrail's own CPU time is not scaled (which only makes the ratio harsher). The default,
//! 1, is AWS's own pace.
//!
//! The lower limit of a workload is the least time in which the calls it needs fit in the
//! quotas, for the cheapest mix of read APIs: with `x` of `n` streams read by FilterLogEvents
//! (pages shared by many streams, no end-of-stream call) and the rest by GetLogEvents (one
//! extra call per stream to see its token repeat), the time is the largest over the APIs of
//! (calls - burst) / quota, minimised over `x`, plus one latency for each step a stream's
//! events must go through (list, read, create, put).
//!
//! Moto: the same copy against a local moto server (`CONTRAIL_MOTO_SERVER` or the venv that
//! `scripts/test.sh` installs), events per second of contrail and of the sequential procedure.
//!
//! Run: `cargo bench --bench logs` (add `-- quick` for a smaller moto workload). Without
//! `--bench` (as `cargo test --all-targets` runs it), it only checks a tiny workload end to end.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use contrail::logs::{
    Api, AwsLogsClient, CopyOptions, EVENT_OVERHEAD_BYTES, LogEvent, LogsClient, MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS, ModelStream, QuotaModel, QuotaModelOptions, Quotas,
};

const MESSAGE_BYTES: usize = 100;

struct Workload {
    name: &'static str,
    streams: usize,
    events: usize,
}

const WORKLOADS: [Workload; 2] = [
    Workload {
        name: "2,000 streams x 200 events",
        streams: 2_000,
        events: 200,
    },
    Workload {
        name: "20 streams x 200,000 events",
        streams: 20,
        events: 200_000,
    },
];

fn main() {
    let scale: f64 = std::env::var("CONTRAIL_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let quick = std::env::args().any(|a| a == "quick");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if !std::env::args().any(|a| a == "--bench") {
        let tiny = Workload {
            name: "smoke",
            streams: 30,
            events: 20,
        };
        let (elapsed, _, _) = runtime.block_on(run_contrail(&tiny, 50.0));
        let (_, copied) = runtime.block_on(run_sequential(&tiny, 50.0));
        assert_eq!(copied, 600);
        println!(
            "logs bench smoke test: {elapsed:.2} s; run `cargo bench --bench logs` to measure"
        );
        return;
    }
    println!("Quota model, time scaled x{scale} (seconds below are real, scaled time)");
    println!(
        "{:<30} {:>10} {:>10} {:>7} {:>12} {:>14} {:>10}",
        "workload", "limit s", "contrail s", "ratio", "sequential s", "seq. events", "throttles"
    );
    // CONTRAIL_BENCH_ONLY=1 or 2 runs one workload; CONTRAIL_BENCH_NO_MOTO=1 skips moto.
    let only: Option<usize> = std::env::var("CONTRAIL_BENCH_ONLY")
        .ok()
        .and_then(|s| s.parse().ok());
    for (n, workload) in WORKLOADS.iter().enumerate() {
        if only.is_some_and(|o| o != n + 1) {
            continue;
        }
        let limit = lower_limit(workload, scale);
        let (contrail, throttles, calls) = runtime.block_on(run_contrail(workload, scale));
        let (sequential, copied) = runtime.block_on(run_sequential(workload, scale));
        println!(
            "{:<30} {:>10.2} {:>10.2} {:>7.3} {:>12.2} {:>14} {:>10}",
            workload.name,
            limit,
            contrail,
            contrail / limit,
            sequential,
            format!("{copied}/{}", workload.streams * workload.events),
            throttles
        );
        println!("{:<30} contrail's calls: {calls:?}", "");
    }
    if std::env::var_os("CONTRAIL_BENCH_NO_MOTO").is_some() {
        return;
    }
    match moto_server() {
        Some(bin) => runtime.block_on(moto(bin, quick)),
        None => {
            println!("\nmoto: not found (set CONTRAIL_MOTO_SERVER or run scripts/test.sh once)")
        }
    }
}

/// Events per page of GetLogEvents / FilterLogEvents for this message size.
fn page_events() -> usize {
    MAX_BATCH_EVENTS.min(MAX_BATCH_BYTES / (MESSAGE_BYTES + EVENT_OVERHEAD_BYTES))
}

fn lower_limit(workload: &Workload, scale: f64) -> f64 {
    let quotas = Quotas::default().scaled(scale);
    let unscaled = Quotas::default();
    let per_page = page_events() as f64;
    let n = workload.streams as f64;
    let pages_per_stream = (workload.events as f64 / per_page).ceil();
    let total_events = n * workload.events as f64;
    // The service's burst is one (unscaled) second of calls.
    let time = |api: Api, calls: f64| (calls - unscaled.tps(api)).max(0.0) / quotas.tps(api);
    let fixed = [
        time(Api::DescribeStreams, (n / 50.0).ceil() + 1.0),
        time(Api::CreateStream, n),
        time(
            Api::PutEvents,
            n.max(
                (total_events * (MESSAGE_BYTES + EVENT_OVERHEAD_BYTES) as f64
                    / MAX_BATCH_BYTES as f64)
                    .ceil(),
            ),
        ),
    ]
    .into_iter()
    .fold(0.0, f64::max);
    // Streams read by FilterLogEvents share pages; the rest need an end call each.
    let mut best = f64::MAX;
    for step in 0..=10_000 {
        let x = n * step as f64 / 10_000.0;
        let filter_pages = (x * workload.events as f64 / per_page).ceil();
        let get_calls = (n - x) * (pages_per_stream + 1.0);
        let read = time(Api::FilterEvents, filter_pages).max(time(Api::GetEvents, get_calls));
        best = best.min(read.max(fixed));
    }
    // One shortest latency per step a stream's events go through: list, read, create, put.
    best + 4.0 * 0.020 / scale
}

fn model(workload: &Workload, scale: f64) -> Arc<QuotaModel> {
    let model = Arc::new(QuotaModel::new(
        QuotaModelOptions::default()
            .with_time_scale(scale)
            .with_keep_messages(false),
    ));
    model.add_group("old-Task", None);
    model.add_group("new-Task", None);
    let start = chrono::Utc::now().timestamp_millis() - 6 * 3600 * 1000;
    for s in 0..workload.streams {
        model.add_stream(
            "old-Task",
            &format!(
                "dag_id=d{}/run_id=scheduled__2024-03-01T00_00_00+00_00/task_id=t/attempt=1.log",
                s
            ),
            ModelStream::Generated {
                events: workload.events,
                first: start,
                step: 50,
                message_bytes: MESSAGE_BYTES,
            },
        );
    }
    model
}

async fn run_contrail(
    workload: &Workload,
    scale: f64,
) -> (f64, u64, std::collections::BTreeMap<String, u64>) {
    let model = model(workload, scale);
    let started = Instant::now();
    let summary = contrail::logs::copy(
        CopyOptions::new("old-Task", "new-Task")
            .with_client(model.clone())
            .with_quotas(Quotas::default().scaled(scale)),
    )
    .await
    .unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    let expected = (workload.streams * workload.events) as u64;
    assert_eq!(summary.events_written, expected);
    assert_eq!(model.written_totals("new-Task").0, expected);
    (elapsed, summary.throttles, summary.calls)
}

/// The seeds' procedure: one stream at a time, one GetLogEvents page, one PutLogEvents, no
/// retries (a failed call loses the stream).
async fn sequential(client: &dyn LogsClient, from: &str, to: &str) -> u64 {
    let mut streams = Vec::new();
    let mut token = None;
    loop {
        let Ok(page) = client.describe_streams(from, None, token.clone()).await else {
            break;
        };
        streams.extend(page.streams.into_iter().map(|s| s.name));
        match page.next_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    let mut copied = 0;
    for stream in streams {
        let Ok(page) = client.get_events(from, &stream, None, None, None).await else {
            continue;
        };
        if client.create_stream(to, &stream).await.is_err() || page.events.is_empty() {
            continue;
        }
        let events: Vec<LogEvent> = page.events;
        if client.put_events(to, &stream, &events).await.is_ok() {
            copied += events.len() as u64;
        }
    }
    copied
}

async fn run_sequential(workload: &Workload, scale: f64) -> (f64, u64) {
    let model = model(workload, scale);
    let started = Instant::now();
    let copied = sequential(model.as_ref(), "old-Task", "new-Task").await;
    (started.elapsed().as_secs_f64(), copied)
}

fn moto_server() -> Option<String> {
    std::env::var("CONTRAIL_MOTO_SERVER").ok().or_else(|| {
        let home = std::env::var("HOME").ok()?;
        let path = format!("{home}/.cache/contrail/venv-moto/bin/moto_server");
        std::path::Path::new(&path).exists().then_some(path)
    })
}

async fn moto(bin: String, quick: bool) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let endpoint = format!("http://127.0.0.1:{port}");
    // SAFETY: no other thread reads the environment while the bench sets it up.
    unsafe {
        std::env::set_var("AWS_REGION", "us-east-1");
        std::env::set_var("AWS_ACCESS_KEY_ID", "bench");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "bench");
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    }
    let started = Instant::now();
    let client = loop {
        if let Ok(client) = AwsLogsClient::connect(Some(&endpoint)).await
            && client.describe_group("probe").await.is_ok()
        {
            break client;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "moto did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (streams, events) = if quick { (50, 200) } else { (200, 500) };
    client.create_group("old-Task").await.unwrap();
    let start = chrono::Utc::now().timestamp_millis() - 3600 * 1000;
    for s in 0..streams {
        let name = format!("dag_id=d/run_id=r{s}/task_id=t/attempt=1.log");
        client.create_stream("old-Task", &name).await.unwrap();
        let batch: Vec<LogEvent> = (0..events)
            .map(|i| LogEvent {
                timestamp: start + i as i64,
                ingestion_time: 0,
                message: format!("{i:0>100}"),
            })
            .collect();
        client.put_events("old-Task", &name, &batch).await.unwrap();
    }
    let total = (streams * events) as f64;
    println!("\nmoto: {streams} streams x {events} events of 100 bytes");
    // contrail as it runs against AWS (paced to AWS's quotas, which moto does not have), then
    // with the quotas lifted (moto's own speed), then the sequential procedure.
    let mut lines = Vec::new();
    for (target, quotas, label) in [
        ("new-A", Quotas::default(), "contrail, AWS quotas"),
        (
            "new-B",
            Quotas::default().scaled(1000.0),
            "contrail, quotas lifted",
        ),
    ] {
        client.create_group(target).await.unwrap();
        let started = Instant::now();
        let summary = contrail::logs::copy(
            CopyOptions::new("old-Task", target)
                .with_endpoint_url(Some(endpoint.clone()))
                .with_quotas(quotas),
        )
        .await
        .unwrap();
        let seconds = started.elapsed().as_secs_f64();
        assert_eq!(summary.events_written as f64, total);
        lines.push(format!(
            "{label:<26} {seconds:>7.2} s {:>9.0} events/s",
            total / seconds
        ));
    }
    client.create_group("new-C").await.unwrap();
    let started = Instant::now();
    let copied = sequential(&client, "old-Task", "new-C").await;
    let seconds = started.elapsed().as_secs_f64();
    lines.push(format!(
        "{:<26} {seconds:>7.2} s {:>9.0} events/s ({copied} events)",
        "sequential procedure",
        copied as f64 / seconds
    ));
    for line in lines {
        println!("{line}");
    }
    let _ = child.kill();
    let _ = child.wait();
}
