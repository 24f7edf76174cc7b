//! `contrail export` when things go wrong: bad input is refused before anything is written, and
//! an export that fails or is killed half-way leaves no manifest, so readers never see a half
//! dataset, and a re-run completes it.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::export::{add_log_rows, demo_db, only_manifest, read_table, source_counts};
use crate::export_s3::{export_s3, manifests};
use crate::util::faulty::FaultyProxy;
use crate::util::moto;
use crate::util::pg::cluster;

/// Tables of the demo history that hold rows.
const TABLES: [&str; 7] = [
    "dag_run",
    "task_instance",
    "task_instance_history",
    "log",
    "xcom",
    "variable",
    "slot_pool",
];

/// Every regular file under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Starts `contrail export` without waiting for it.
fn spawn_export(db: &str, to: &str, extra: &[&str]) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_contrail"));
    command
        .args([
            "export",
            "--db",
            &cluster().url(db),
            "--to",
            to,
            "--output",
            "json",
        ])
        .args(extra)
        .env_remove("DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in moto::server().env() {
        command.env(name, value);
    }
    command.spawn().expect("starting contrail")
}

/// Polls `ready` every 10 ms for up to 60 s while `child` runs; panics if it exits first.
fn wait_until(child: &mut Child, what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the export ended ({status}) before {what}; make its data bigger");
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no {what} after 60 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Asserts a failed run: exit code 2 and a message on stderr containing every needle.
fn assert_failed(out: &Output, needles: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("refused as expected: {stderr}");
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
    }
    stderr
}

#[test]
fn a_killed_backend_fails_the_export_leaving_nothing_on_s3_and_a_rerun_completes() {
    let db = demo_db();
    // Enough rows over several ranges that the COPY is seen streaming.
    add_log_rows(&db, 150_000, 32, "2024-03-05");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bucket = rt.block_on(moto::server().bucket());
    let url = format!("s3://{bucket}/x");
    let mut child = spawn_export(&db, &url, &["--jobs", "2"]);
    let mut killed = 0;
    wait_until(&mut child, "a COPY of log", || {
        // Only once dag_run's files are in S3, so there is something to clean up.
        if rt
            .block_on(moto::server().objects(&bucket, "x/dag_run/"))
            .is_empty()
        {
            return false;
        }
        killed = cluster()
            .psql_value(
                &db,
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE application_name = 'contrail' AND datname = current_database() \
                 AND query LIKE 'COPY %' AND query LIKE '%\"log\" t%' AND state = 'active'",
            )
            .parse::<u32>()
            .unwrap();
        killed > 0
    });
    let out = child.wait_with_output().unwrap();
    let stderr = assert_failed(&out, &["log"]);
    assert!(
        stderr.contains("lost the connection to the database while reading log"),
        "{stderr}"
    );
    assert!(stderr.contains("re-run the export"), "{stderr}");
    assert!(
        rt.block_on(moto::server().objects(&bucket, "x/"))
            .is_empty(),
        "{:?}",
        rt.block_on(moto::server().objects(&bucket, "x/"))
    );
    assert_eq!(
        rt.block_on(moto::server().pending_uploads(&bucket)),
        Vec::<String>::new()
    );

    let out = export_s3(&db, &url, &["--jobs", "2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found = rt.block_on(manifests(&bucket, "x/"));
    assert_eq!(found.len(), 1);
    for (table, count) in source_counts(&db, &TABLES) {
        assert_eq!(found[0].1.tables[&table].rows, count, "{table}");
    }
}

#[test]
fn s3_errors_are_retried_then_fail_clearly_leaving_no_manifest_object_or_upload() {
    let db = demo_db();
    // A log file of about 6 MiB: a multipart upload, whose parts S3 keeps refusing.
    add_log_rows(&db, 4_000, 3_072, "2024-03-05");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bucket = rt.block_on(moto::server().bucket());
    let url = format!("s3://{bucket}/x");
    let proxy = FaultyProxy::start(moto::server().port(), |line| {
        line.starts_with("PUT ") && line.contains("/x/log/") && line.contains("partNumber=")
    });
    let env: Vec<(&str, String)> = moto::server()
        .env()
        .into_iter()
        .map(|(k, v)| match k {
            "AWS_ENDPOINT_URL" => (k, proxy.endpoint()),
            _ => (k, v),
        })
        .collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let db_url = cluster().url(&db);
    let args = [
        "export",
        "--db",
        &db_url,
        "--to",
        &url,
        "--part-size-mib",
        "5",
    ];
    let out = crate::util::contrail(&args, &env);
    assert_failed(
        &out,
        &[
            "upload_part",
            &format!("s3://{bucket}/x/log/date=2024-03-05/part-"),
            "server errors after 5 attempts",
        ],
    );
    // Every attempt reached S3 (the standard retry mode: 5 attempts, backoff with jitter).
    assert!(proxy.failed() >= 5, "{} failed requests", proxy.failed());
    // The AWS configuration's attempts are honoured, as the AWS CLI honours them.
    let before = proxy.failed();
    let mut fewer = env.clone();
    fewer.push(("AWS_MAX_ATTEMPTS", "2"));
    let out = crate::util::contrail(&args, &fewer);
    assert_failed(&out, &["upload_part", "server errors after 2 attempts"]);
    assert!(
        proxy.failed() >= before + 2,
        "{} failed requests",
        proxy.failed()
    );
    let left = rt.block_on(moto::server().objects(&bucket, "x/"));
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(
        rt.block_on(moto::server().pending_uploads(&bucket)),
        Vec::<String>::new()
    );

    let out = export_s3(&db, &url, &["--part-size-mib", "5"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found = rt.block_on(manifests(&bucket, "x/"));
    for (table, count) in source_counts(&db, &TABLES) {
        assert_eq!(found[0].1.tables[&table].rows, count, "{table}");
    }
}

#[test]
fn an_unwritable_destination_fails_naming_the_object_and_removes_what_was_written() {
    let db = demo_db();
    let dir = tempfile::tempdir().unwrap();
    // A file where the log folder must go: creating it fails (for root too, unlike chmod).
    std::fs::write(dir.path().join("log"), b"in the way").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_contrail"))
        .args(["export", "--db", &cluster().url(&db), "--to"])
        .arg(dir.path())
        .args(["--jobs", "1"])
        .output()
        .unwrap();
    assert_failed(
        &out,
        &["/log/date=", "a file or folder of that name is in the way"],
    );
    // dag_run, job… were written before log failed; they are removed, and no manifest exists.
    assert_eq!(files(dir.path()), ["log"]);
}

#[test]
fn a_sigkilled_export_leaves_no_manifest_and_a_rerun_is_exact_for_manifest_readers() {
    let db = demo_db();
    add_log_rows(&db, 150_000, 32, "2024-03-05");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let to = out.to_str().unwrap();
    let spill = dir.path().join("spill");
    std::fs::create_dir(&spill).unwrap();
    let spill_dir = spill.to_str().unwrap();
    let mut child = spawn_export(&db, to, &["--jobs", "2", "--spill-dir", spill_dir]);
    wait_until(&mut child, "a log file", || {
        files(&out).iter().any(|f| f.starts_with("log/"))
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let leftovers = files(&out);
    assert!(
        !leftovers.iter().any(|f| f.starts_with("_contrail")),
        "{leftovers:?}"
    );
    assert!(!leftovers.is_empty());
    // Killed, it could not remove its spill directory, which holds log's.
    let killed = names(&spill);
    assert!(
        killed.len() == 1 && killed[0].starts_with("contrail-spill-"),
        "{killed:?}"
    );
    let inside = names(&spill.join(&killed[0]));
    assert!(
        inside.iter().any(|n| n.starts_with("contrail-log-")),
        "{inside:?}"
    );

    // The re-run removes the killed run's spill directory, and its own.
    let url = cluster().url(&db);
    let rerun = crate::util::contrail(
        &[
            "export",
            "--db",
            &url,
            "--to",
            to,
            "--output",
            "json",
            "--jobs",
            "2",
            "--spill-dir",
            spill_dir,
        ],
        &[("CONTRAIL_LOG", "contrail=info")],
    );
    let stderr = String::from_utf8_lossy(&rerun.stderr);
    assert!(rerun.status.success(), "{stderr}");
    assert!(
        stderr.contains("Removed the spill directory left by an export that did not finish.")
            && stderr.contains(&killed[0]),
        "{stderr}"
    );
    assert_eq!(names(&spill), Vec::<String>::new());
    let manifest = only_manifest(&out);
    let listed: Vec<&str> = manifest
        .tables
        .values()
        .flat_map(|t| t.files.iter().map(|f| f.key.as_str()))
        .collect();
    assert!(leftovers.iter().all(|f| !listed.contains(&f.as_str())));
    for (table, count) in source_counts(&db, &TABLES) {
        let rows: usize = read_table(&out, &manifest, &table)
            .iter()
            .map(|b| b.num_rows())
            .sum();
        assert_eq!(rows as u64, count, "{table}");
    }
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Runs an export that must be refused; returns stderr.
fn refused(db: Option<&str>, to: &str, extra: &[&str], needles: &[&str]) -> String {
    let url = db.map(|d| cluster().url(d));
    let mut args = vec!["export", "--to", to];
    if let Some(url) = &url {
        args.extend(["--db", url]);
    }
    args.extend_from_slice(extra);
    let env = moto::server().env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = crate::util::contrail(&args, &env);
    assert_failed(&out, needles)
}

#[test]
fn bad_input_is_a_clear_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let to = out.to_str().unwrap();
    let db = demo_db();

    let unknown = cluster().db_from_fixture("airflow-2.10.5");
    cluster().psql(
        &unknown,
        "UPDATE alembic_version SET version_num = 'deadbeef0123'",
    );
    refused(
        Some(&unknown),
        to,
        &[],
        &[
            "alembic revision deadbeef0123",
            "known Airflow schema versions",
        ],
    );
    refused(
        Some(&db),
        to,
        &["--assume-version", "9.9"],
        &["unknown Airflow schema version \"9.9\""],
    );
    refused(
        Some(&db),
        to,
        &["--tables", "dag_run,nope"],
        &["unknown table nope"],
    );
    let v3 = cluster().db_from_fixture("airflow-3.0.6");
    refused(
        Some(&v3),
        to,
        &["--tables", "task_fail"],
        &["table task_fail does not exist in this Airflow 3.0"],
    );
    refused(
        Some(&db),
        to,
        &["--sse", "junk"],
        &["--sse junk", "aws:kms or AES256"],
    );
    refused(
        Some(&db),
        to,
        &["--sse", "aws:kms"],
        &["server-side encryption applies to s3://"],
    );
    refused(Some(&db), to, &["--part-size-mib", "1"], &["part size"]);

    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable = format!("postgresql://postgres:pw@127.0.0.1:{port}/airflow");
    let stderr = refused(
        None,
        to,
        &["--db", &unreachable],
        &["could not connect to postgresql://postgres@127.0.0.1"],
    );
    assert!(!stderr.contains(":pw@"), "{stderr}");

    // Wrong password: the cluster trusts everyone else, but this role needs its password.
    cluster().password_role("contrail_pw", "right");
    let wrong = format!(
        "postgresql://contrail_pw:wrong@127.0.0.1:{}/{db}",
        cluster().port()
    );
    let stderr = refused(
        None,
        to,
        &["--db", &wrong],
        &["could not connect", "password authentication failed"],
    );
    assert!(!stderr.contains("wrong"), "{stderr}");

    refused(
        Some(&db),
        "s3://contrail-no-such-bucket/x",
        &[],
        &["s3://contrail-no-such-bucket", "the bucket does not exist"],
    );

    assert!(!out.exists(), "{:?}", files(&out));
}
