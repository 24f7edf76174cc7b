//! `contrail logs copy` and `contrail logs archive` through the binary against moto's
//! CloudWatch Logs (and S3), with the standard AWS environment: renames between templates with a
//! real exported dataset, selection by state, old events reported then archived, resume after a
//! SIGKILL without duplicates, archives read by pyarrow, and bad input.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::export::{demo_db, export_to};
use crate::util::contrail;
use crate::util::moto;
use crate::util::pyarrow::read_dataset;

const DAY_MS: i64 = 24 * 3600 * 1000;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// `n` events a second apart ending a minute ago, tagged with `tag`.
fn events(n: usize, tag: &str) -> Vec<(i64, String)> {
    let start = now_ms() - 60_000 - n as i64 * 1000;
    (0..n)
        .map(|i| (start + i as i64 * 1000, format!("{tag} line {i}")))
        .collect()
}

fn logs(args: &[&str]) -> Output {
    let env = moto::server().env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut all = vec!["logs"];
    all.extend_from_slice(args);
    contrail(&all, &env)
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The small 2.10 history exported to a temporary directory: the dataset of the source.
fn dataset() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    export_to(
        &demo_db(),
        dir.path(),
        &["--tables", "dag_run,task_instance,task_instance_history"],
    );
    dir
}

const LEGACY_TRIES: [(&str, &str); 5] = [
    (
        "etl_daily/extract/2024-03-01T00_00_00+00_00/1.log",
        "success",
    ),
    (
        "etl_daily/extract/2024-03-02T00_00_00+00_00/1.log",
        "up_for_retry",
    ),
    (
        "etl_daily/extract/2024-03-02T00_00_00+00_00/2.log",
        "up_for_retry",
    ),
    (
        "etl_daily/extract/2024-03-02T00_00_00+00_00/3.log",
        "failed",
    ),
    ("report_ünïcode/render/2024-03-02T15_30_00+00_00/1.log", "?"),
];

fn modern(run: &str, task: &str, attempt: u32) -> String {
    format!("dag_id=etl_daily/run_id={run}/task_id={task}/attempt={attempt}.log")
}

#[test]
fn legacy_streams_are_renamed_for_airflow_2_3_and_selected_by_state_from_the_dataset() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = moto::server();
    let dataset = dataset();
    let (from, to) = (server.group_name("old-Task"), server.group_name("new-Task"));
    rt.block_on(async {
        server.create_group(&from, None).await;
        server.create_group(&to, None).await;
        for (i, (stream, _)) in LEGACY_TRIES.iter().enumerate() {
            server
                .put_stream(&from, stream, &events(3 + i, stream))
                .await;
        }
    });
    let dataset_path = dataset.path().to_str().unwrap();

    // Only the failed and retried tries, renamed for 2.10.
    let summary = json(&logs(&[
        "copy",
        "--from-group",
        &from,
        "--to-group",
        &to,
        "--dataset",
        dataset_path,
        "--state",
        "failed,up_for_retry",
        "--target-version",
        "2.10.5",
        "--output",
        "json",
    ]));
    assert_eq!(summary["streams_selected"], 3);
    assert_eq!(summary["streams_renamed"], 3);
    let run = "scheduled__2024-03-02T00_00_00+00_00";
    let expected: Vec<String> = (1..=3).map(|a| modern(run, "extract", a)).collect();
    assert_eq!(rt.block_on(server.stream_names(&to)), expected);
    for (i, name) in expected.iter().enumerate() {
        let source = LEGACY_TRIES[i + 1].0;
        assert_eq!(
            rt.block_on(server.read_stream(&to, name)),
            rt.block_on(server.read_stream(&from, source)),
            "{name}"
        );
    }

    // Everything: the manual run of the non-ASCII DAG gets its run id from the dataset too.
    let to_all = server.group_name("new-Task");
    let summary = json(&logs(&[
        "copy",
        "--from-group",
        &from,
        "--to-group",
        &to_all,
        "--create-target",
        "--dataset",
        dataset_path,
        "--target-template",
        "modern",
        "--output",
        "json",
    ]));
    assert_eq!(summary["streams_renamed"], 5, "{summary:#}");
    let names = rt.block_on(server.stream_names(&to_all));
    assert!(
        names.contains(&modern(
            "scheduled__2024-03-01T00_00_00+00_00",
            "extract",
            1
        )),
        "{names:?}"
    );
    assert!(names.contains(
        &"dag_id=report_ünïcode/run_id=manual__2024-03-02T15_30_00+00_00/task_id=render/attempt=1.log".to_owned()
    ), "{names:?}");
    let written: u64 = summary["events_written"].as_u64().unwrap();
    assert_eq!(written, (3..8).sum::<u64>());
}

#[test]
fn modern_streams_are_renamed_for_airflow_2_2_and_mapped_tries_keep_their_names() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = moto::server();
    let dataset = dataset();
    let (from, to) = (server.group_name("new-Task"), server.group_name("old-Task"));
    let run = "scheduled__2024-03-01T00_00_00+00_00";
    let mapped = format!("dag_id=etl_daily/run_id={run}/task_id=load/map_index=1/attempt=1.log");
    rt.block_on(async {
        server.create_group(&from, None).await;
        server.create_group(&to, None).await;
        server
            .put_stream(&from, &modern(run, "extract", 1), &events(4, "extract"))
            .await;
        server.put_stream(&from, &mapped, &events(2, "load")).await;
    });
    let summary = json(&logs(&[
        "copy",
        "--from-group",
        &from,
        "--to-group",
        &to,
        "--dataset",
        dataset.path().to_str().unwrap(),
        "--target-version",
        "2.2.2",
        "--output",
        "json",
    ]));
    assert_eq!(
        (
            summary["streams_renamed"].as_u64(),
            summary["streams_unmatched"].as_u64()
        ),
        (Some(1), Some(1))
    );
    let unmatched = summary["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stream"] == mapped.as_str())
        .unwrap();
    assert!(
        unmatched["unmatched"]
            .as_str()
            .unwrap()
            .contains("map index"),
        "{unmatched}"
    );
    assert_eq!(
        rt.block_on(server.stream_names(&to)),
        [
            mapped.clone(),
            "etl_daily/extract/2024-03-01T00_00_00+00_00/1.log".to_owned()
        ]
    );
    assert_eq!(
        rt.block_on(server.read_stream(&to, "etl_daily/extract/2024-03-01T00_00_00+00_00/1.log")),
        rt.block_on(server.read_stream(&from, &modern(run, "extract", 1)))
    );
}

#[test]
fn old_events_are_reported_before_copying_then_archived_to_s3_for_pyarrow() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = moto::server();
    let (from, to) = (server.group_name("old-Task"), server.group_name("new-Task"));
    let stream = "dag_id=d/run_id=r/task_id=t/attempt=1.log";
    // The target keeps events one day, so events of two days ago are too old for it (moto would
    // store them; AWS rejects them, and contrail must not send them).
    let old: Vec<(i64, String)> = (0..6)
        .map(|i| (now_ms() - 2 * DAY_MS + i, format!("old {i}")))
        .collect();
    let mut all = old.clone();
    all.extend(events(4, "new"));
    let bucket = rt.block_on(async {
        server.create_group(&from, None).await;
        server.create_group(&to, Some(1)).await;
        server.put_stream(&from, stream, &all).await;
        server
            .put_stream(
                &from,
                "other/t/2024-01-01T00_00_00+00_00/1.log",
                &events(2, "fresh"),
            )
            .await;
        server.bucket().await
    });

    let out = logs(&["copy", "--from-group", &from, "--to-group", &to]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("1 of the 2 selected streams hold events older than 1 days"),
        "{}",
        stderr(&out)
    );
    assert!(rt.block_on(server.stream_names(&to)).is_empty());

    let dry = json(&logs(&[
        "copy",
        "--from-group",
        &from,
        "--to-group",
        &to,
        "--dry-run",
        "--output",
        "json",
    ]));
    assert_eq!(
        (dry["old_events"].as_u64(), dry["events_written"].as_u64()),
        (Some(6), Some(6))
    );

    let archive = format!("s3://{bucket}/lake");
    let summary = json(&logs(&[
        "copy",
        "--from-group",
        &from,
        "--to-group",
        &to,
        "--old-events",
        "archive",
        "--archive-to",
        &archive,
        "--output",
        "json",
    ]));
    assert_eq!(summary["old_events"], 6);
    assert_eq!(summary["archive"]["rows"], 6);
    assert_eq!(rt.block_on(server.read_stream(&to, stream)), all[6..]);
    let manifest_key = format!("lake/{}", summary["archive"]["manifest"].as_str().unwrap());
    assert!(
        rt.block_on(server.objects(&bucket, "lake/_contrail/logs/"))
            .iter()
            .any(|o| o.key == manifest_key)
    );
    let read = read_dataset(&archive, &["logs"], &server.env());
    assert_eq!(read["logs"]["rows"], 6);
    assert_eq!(read["logs"]["fields"]["timestamp"], "timestamp[us, tz=UTC]");
    assert_eq!(read["logs"]["fields"]["try_number"], "int32");
}

#[test]
fn archive_writes_parquet_that_pyarrow_reads_with_a_manifest() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = moto::server();
    let group = server.group_name("env-Task");
    rt.block_on(async {
        server.create_group(&group, None).await;
        server
            .put_stream(
                &group,
                &modern("scheduled__2024-03-01T00_00_00+00_00", "extract", 1),
                &events(30, "a"),
            )
            .await;
        server
            .put_stream(
                &group,
                "etl_daily/load/2024-03-01T00_00_00+00_00/2.log",
                &events(20, "b"),
            )
            .await;
        server
            .put_stream(&group, "not-a-task-log", &events(5, "c"))
            .await;
    });
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let summary = json(&logs(&[
        "archive", "--group", &group, "--to", root, "--output", "json",
    ]));
    assert_eq!(summary["archive"]["rows"], 55);
    let manifest = dir
        .path()
        .join(summary["archive"]["manifest"].as_str().unwrap());
    let manifest: contrail::dataset::manifest::Manifest =
        serde_json::from_slice(&std::fs::read(manifest).unwrap()).unwrap();
    for file in &manifest.tables["logs"].files {
        assert_eq!(
            std::fs::metadata(dir.path().join(&file.key)).unwrap().len(),
            file.bytes
        );
    }
    let read = read_dataset(root, &["logs"], &[]);
    assert_eq!(read["logs"]["rows"], 55);
    let fields = &read["logs"]["fields"];
    assert_eq!(fields["message"], "string");
    assert_eq!(fields["ingestion_time"], "timestamp[us, tz=UTC]");
    assert_eq!(fields["map_index"], "int32");
    // The export's own manifests are untouched: logs manifests live apart.
    assert!(!Path::new(root).join("_contrail/exports").exists());
}

#[test]
fn a_copy_killed_midway_resumes_without_duplicating_events() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = moto::server();
    let (from, to) = (server.group_name("old-Task"), server.group_name("new-Task"));
    let streams: Vec<String> = (0..24)
        .map(|i| format!("dag_id=d/run_id=r{i:02}/task_id=t/attempt=1.log"))
        .collect();
    let mut expected = BTreeMap::new();
    rt.block_on(async {
        server.create_group(&from, None).await;
        server.create_group(&to, None).await;
        for (i, stream) in streams.iter().enumerate() {
            let events = events(40 + i, stream);
            server.put_stream(&from, stream, &events).await;
            expected.insert(stream.clone(), events);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("copy.json");
    let args = [
        "logs",
        "copy",
        "--from-group",
        &from,
        "--to-group",
        &to,
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        "--put-tps",
        "4",
        "--concurrency",
        "4",
        "--output",
        "json",
    ];
    // Slowed to 4 puts a second, killed once some streams are finished.
    let mut child = Command::new(env!("CARGO_BIN_EXE_contrail"));
    child.args(args).stdout(Stdio::null()).stderr(Stdio::null());
    for (k, v) in server.env() {
        child.env(k, v);
    }
    let mut child = child.spawn().unwrap();
    let started = Instant::now();
    loop {
        let done = std::fs::read(&checkpoint)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .map(|c| c["streams"].as_object().map_or(0, |s| s.len()))
            .unwrap_or(0);
        if done >= 3 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no progress");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the copy finished before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let partial: usize = rt
        .block_on(server.stream_names(&to))
        .iter()
        .map(|s| rt.block_on(server.read_stream(&to, s)).len())
        .sum();
    assert!(
        partial > 0 && partial < expected.values().map(Vec::len).sum(),
        "{partial}"
    );

    let summary = json(&logs(&args[1..]));
    assert!(
        summary["streams_finished_earlier"].as_u64().unwrap() >= 3,
        "{summary:#}"
    );
    for (stream, events) in &expected {
        assert_eq!(
            &rt.block_on(server.read_stream(&to, stream)),
            events,
            "{stream}"
        );
    }
}

#[test]
fn events_that_cannot_be_copied_give_exit_code_3() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = moto::server();
    let (from, to) = (server.group_name("old-Task"), server.group_name("new-Task"));
    // moto stores an event larger than PutLogEvents accepts (1 MiB with its 26 bytes of
    // overhead); AWS would reject it, so contrail does not send it and counts it as rejected.
    let mut events = events(2, "fine");
    events.push((now_ms() - 1000, "x".repeat(1_100_000)));
    rt.block_on(async {
        server.create_group(&from, None).await;
        server.create_group(&to, None).await;
        server.put_stream(&from, "s", &events).await;
    });
    let out = logs(&[
        "copy",
        "--from-group",
        &from,
        "--to-group",
        &to,
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            summary["events_rejected"].as_u64(),
            summary["events_written"].as_u64()
        ),
        (Some(1), Some(2))
    );
    assert_eq!(rt.block_on(server.read_stream(&to, "s")), events[..2]);
    let help = contrail(&["logs", "copy", "--help"], &[]);
    let help = String::from_utf8_lossy(&help.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        help.contains("3 the copy completed but CloudWatch rejected some events"),
        "{help}"
    );
}

#[test]
fn bad_input_gets_clear_messages() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = moto::server();
    let from = server.group_name("old-Task");
    rt.block_on(server.create_group(&from, None));
    let missing = server.group_name("missing");

    let out = logs(&["copy", "--from-group", &missing, "--to-group", &from]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(&format!(
            "{missing}: the log group does not exist in us-east-1"
        )),
        "{}",
        stderr(&out)
    );

    let out = logs(&["copy", "--from-group", &from, "--to-group", &missing]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("pass --create-target"),
        "{}",
        stderr(&out)
    );

    let out = logs(&[
        "copy",
        "--from-group",
        &from,
        "--to-group",
        &missing,
        "--state",
        "failed",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--state needs --dataset"),
        "{}",
        stderr(&out)
    );

    // No region, then no credentials: a child with a bare environment.
    let bare = |drop: &str| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_contrail"));
        cmd.args(["logs", "copy", "--from-group", &from, "--to-group", "x"])
            .env_clear();
        cmd.env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", "/nonexistent")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
        for (k, v) in server.env() {
            if k != drop && !(drop == "AWS_ACCESS_KEY_ID" && k == "AWS_SECRET_ACCESS_KEY") {
                cmd.env(k, v);
            }
        }
        cmd.output().unwrap()
    };
    let out = bare("AWS_REGION");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no AWS region configured: set AWS_REGION"),
        "{}",
        stderr(&out)
    );
    let out = bare("AWS_ACCESS_KEY_ID");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("AWS credentials"), "{}", stderr(&out));
}
