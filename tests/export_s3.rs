//! `contrail export` to S3 on moto, through the binary and the standard AWS environment: every
//! object is one the manifest lists with its size and checksum, the manifest is written last,
//! big files go up as multipart uploads, and pyarrow reads the result.

use std::collections::BTreeSet;

use contrail::dataset::manifest::Manifest;
use sha2::{Digest, Sha256};

use crate::export::{add_log_rows, assert_pyarrow_reads, demo_db, source_counts};
use crate::util::contrail;
use crate::util::moto::{self, StoredObject};
use crate::util::pg::cluster;

/// Exports `db` to `url` with the moto environment; returns the process output.
pub(crate) fn export_s3(db: &str, url: &str, extra: &[&str]) -> std::process::Output {
    let db_url = cluster().url(db);
    let mut args = vec!["export", "--db", &db_url, "--to", url, "--output", "json"];
    args.extend_from_slice(extra);
    let env = moto::server().env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    contrail(&args, &env)
}

/// The manifests under `prefix`, parsed.
pub(crate) async fn manifests(bucket: &str, prefix: &str) -> Vec<(StoredObject, Manifest)> {
    let mut out = Vec::new();
    for object in moto::server().objects(bucket, prefix).await {
        if object.key.contains("/_contrail/exports/") {
            let body = moto::server().get(bucket, &object.key).await;
            out.push((object, serde_json::from_slice(&body).unwrap()));
        }
    }
    out
}

#[test]
fn s3_objects_are_exactly_the_manifests_files_and_the_manifest_comes_last() {
    let db = demo_db();
    // 4,000 rows with 3 KiB of hex each: one log file of about 6.2 MiB, so two 5 MiB parts.
    add_log_rows(&db, 4_000, 3_072, "2024-03-05");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bucket = rt.block_on(moto::server().bucket());
    let url = format!("s3://{bucket}/airflow/nightly");
    let out = export_s3(&db, &url, &["--part-size-mib", "5"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let prefix = "airflow/nightly/";
    let objects = rt.block_on(moto::server().objects(&bucket, prefix));
    let found = rt.block_on(manifests(&bucket, prefix));
    assert_eq!(found.len(), 1, "{objects:?}");
    let (manifest_object, manifest) = &found[0];

    // Every object but the manifest is a file it lists, byte for byte.
    let listed: BTreeSet<String> = manifest
        .tables
        .values()
        .flat_map(|t| t.files.iter().map(|f| format!("{prefix}{}", f.key)))
        .collect();
    let stored: BTreeSet<String> = objects
        .iter()
        .filter(|o| o.key != manifest_object.key)
        .map(|o| o.key.clone())
        .collect();
    assert_eq!(stored, listed);
    for file in manifest.tables.values().flat_map(|t| &t.files) {
        let bytes = rt.block_on(moto::server().get(&bucket, &format!("{prefix}{}", file.key)));
        assert_eq!(bytes.len() as u64, file.bytes, "{}", file.key);
        let digest: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(digest, file.sha256, "{}", file.key);
    }

    // The big file went up in parts (a multipart ETag ends in -<parts>).
    let big = objects
        .iter()
        .find(|o| o.key.contains("/log/") && o.size > 5 * 1024 * 1024)
        .unwrap_or_else(|| panic!("no log file over 5 MiB: {objects:?}"));
    assert!(big.etag.ends_with("-2"), "{big:?}");

    // The manifest is written last: no data object is newer, and in moto's request log its PUT
    // is the last write to this bucket, after every CompleteMultipartUpload.
    assert!(
        objects
            .iter()
            .all(|o| o.last_modified <= manifest_object.last_modified),
        "{objects:?}"
    );
    let writes: Vec<String> = moto::server()
        .requests()
        .into_iter()
        .filter(|r| {
            r.contains(&format!("/{bucket}/")) && (r.starts_with("PUT ") || r.starts_with("POST "))
        })
        .collect();
    assert!(writes.iter().any(|w| w.contains("uploadId=")), "{writes:?}");
    assert!(
        writes
            .last()
            .is_some_and(|w| w.starts_with("PUT ") && w.contains("/_contrail/exports/")),
        "{writes:?}"
    );

    // Every row is there once.
    let counts = source_counts(&db, &["dag_run", "task_instance", "log", "xcom"]);
    for (table, count) in counts {
        assert_eq!(manifest.tables[&table].rows, count, "{table}");
    }

    // pyarrow reads it from S3 with hive partitioning and no options.
    assert_pyarrow_reads(
        &format!("s3://{bucket}/airflow/nightly"),
        manifest,
        &moto::server().env(),
    );
}
