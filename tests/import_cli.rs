//! `contrail import` and `contrail verify` through the binary, from a dataset on S3 (moto):
//! JSON summaries, exit codes, `--on-conflict fail|update`, and verification that notices a
//! changed row.

use contrail::generate::{self, FernetKey, GenerateOptions};
use contrail::source::DatabaseUrl;
use serde_json::Value;

use crate::import::{SOURCE_KEY, TARGET_KEY, target};
use crate::util::{contrail, moto, pg::cluster};

fn run(args: &[&str], env: &[(&str, String)]) -> (i32, Value, String) {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = contrail(args, &env);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), json, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_from_s3_with_json_summaries_exit_codes_and_conflict_modes() {
    let server = moto::server();
    let env = server.env();
    let bucket = server.bucket().await;
    let dataset = format!("s3://{bucket}/airflow/prod");

    let source = cluster().db_from_fixture("airflow-2.10.5");
    let url = DatabaseUrl::parse(&cluster().url(&source)).unwrap();
    let options = GenerateOptions::default()
        .with_seed(5)
        .with_task_instances(120)
        .with_days(3)
        .with_fernet_key(Some(FernetKey::try_new(SOURCE_KEY).unwrap()));
    generate::run(&url, options).await.unwrap();
    let source_url = cluster().url(&source);
    let (code, _, stderr) = run(
        &[
            "--quiet",
            "export",
            "--db",
            &source_url,
            "--to",
            &dataset,
            "--output",
            "json",
        ],
        &env,
    );
    assert_eq!(code, 0, "{stderr}");

    let db = target("airflow-3.1.8");
    let target_url = cluster().url(&db);
    let keys = [
        ("CONTRAIL_SOURCE_FERNET_KEY", SOURCE_KEY.to_owned()),
        ("CONTRAIL_TARGET_FERNET_KEY", TARGET_KEY.to_owned()),
    ];
    let with_keys: Vec<(&str, String)> = env.iter().cloned().chain(keys).collect();
    let import = |extra: &[&str]| {
        let mut args = vec![
            "--quiet",
            "import",
            "--from",
            &dataset,
            "--db",
            &target_url,
            "--output",
            "json",
        ];
        args.extend_from_slice(extra);
        run(&args, &with_keys)
    };

    let (code, summary, stderr) = import(&[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains(SOURCE_KEY) && !stderr.contains(TARGET_KEY));
    assert_eq!(summary["source_version"], "2.10");
    assert_eq!(summary["target_version"], "3.1");
    let tables = summary["tables"].as_array().unwrap();
    let dag_runs = tables.iter().find(|t| t["table"] == "dag_run").unwrap();
    assert!(dag_runs["inserted"].as_u64().unwrap() > 0);
    assert!(summary["verification"]["tables"].as_array().unwrap().len() >= 6);
    let skipped: Vec<&str> = summary["skipped_tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t[0].as_str().unwrap())
        .collect();
    assert!(skipped.contains(&"task_fail"), "{skipped:?}");
    let stored: i64 = cluster()
        .psql_value(&db, "SELECT count(*) FROM dag_run")
        .parse()
        .unwrap();
    assert_eq!(stored as u64, dag_runs["inserted"].as_u64().unwrap());

    let verify = |extra: &[&str]| {
        let mut args = vec![
            "verify",
            "--from",
            &dataset,
            "--db",
            &target_url,
            "--output",
            "json",
        ];
        args.extend_from_slice(extra);
        run(&args, &with_keys)
    };
    let (code, report, stderr) = verify(&[]);
    assert_eq!(code, 0, "{stderr} {report}");

    // A changed row is noticed, with exit code 1.
    cluster().psql(
        &db,
        "UPDATE dag_run SET state = 'tampered' WHERE id = (SELECT min(id) FROM dag_run)",
    );
    let (code, report, _) = verify(&[]);
    assert_eq!(code, 1, "{report}");
    let dag_run_check = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "dag_run")
        .unwrap();
    assert_eq!(dag_run_check["differing"], 1, "{report}");
    assert_ne!(
        dag_run_check["dataset_checksum"],
        dag_run_check["target_checksum"]
    );

    // --on-conflict fail refuses and writes nothing; update restores the row.
    let (code, _, stderr) = import(&["--on-conflict", "fail"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("already exist"), "{stderr}");
    let (code, summary, stderr) = import(&["--on-conflict", "update", "--tables", "dag_run"]);
    assert_eq!(code, 0, "{stderr}");
    let updated = summary["tables"][0]["updated"].as_u64().unwrap();
    assert_eq!(updated as i64, stored);
    assert_eq!(summary["tables"][0]["inserted"], 0);
    let (code, report, _) = verify(&[]);
    assert_eq!(code, 0, "{report}");

    // A missing export id and a missing dataset are clear errors.
    let (code, _, stderr) = import(&["--export-id", "nope"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("no such export"), "{stderr}");
    let empty = format!("s3://{bucket}/nothing-here");
    let (code, _, stderr) = run(
        &["import", "--from", &empty, "--db", &target_url],
        &with_keys,
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("no manifest"), "{stderr}");
}
