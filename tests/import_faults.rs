//! Imports that cannot complete leave the target exactly as it was, and say why: a corrupt or
//! truncated file, a manifest that does not match its files, an unknown target version, a
//! wrong Fernet key, a row the target refuses half way, a connection killed mid-import.

use contrail::load::{self, FernetKeys};

use crate::export::only_manifest;
use crate::import::{SOURCE_KEY, counts, exported, import_options, target};
use crate::util::pg::cluster;

fn copy_dataset(from: &std::path::Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("cp")
        .arg("-r")
        .arg(format!("{}/.", from.display()))
        .arg(to.path())
        .status()
        .unwrap();
    assert!(status.success());
    to
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_imports_change_nothing_and_say_why() {
    let dataset = exported("airflow-2.10.5", 77, 120).await;
    let manifest = only_manifest(dataset.path());
    let ti_file = manifest.tables["task_instance"].files[0].key.clone();

    let expect_failure = |db: &str, error: String, wanted: &str| {
        assert!(error.contains(wanted), "expected {wanted:?} in: {error}");
        assert!(
            counts(db).values().all(|n| n == "0" || n == "1"),
            "the target changed: {:?}",
            counts(db)
        );
    };

    // A data file modified after the export: refused by its checksum.
    let corrupt = copy_dataset(dataset.path());
    let path = corrupt.path().join(&ti_file);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let db = target("airflow-2.10.5");
    let error = load::run(&import_options(corrupt.path(), &db))
        .await
        .unwrap_err();
    expect_failure(&db, error.to_string(), "SHA-256");
    assert!(error.to_string().contains(&ti_file), "{error}");

    // A truncated file.
    let truncated = copy_dataset(dataset.path());
    let path = truncated.path().join(&ti_file);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 3]).unwrap();
    let error = load::run(&import_options(truncated.path(), &db))
        .await
        .unwrap_err();
    expect_failure(&db, error.to_string(), "truncated");

    // A manifest whose checksum does not match the file.
    let mismatched = copy_dataset(dataset.path());
    let manifest_path = std::fs::read_dir(mismatched.path().join("_contrail/exports"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let text = std::fs::read_to_string(&manifest_path).unwrap();
    let sha = &manifest.tables["dag_run"].files[0].sha256;
    std::fs::write(&manifest_path, text.replace(sha.as_str(), &"0".repeat(64))).unwrap();
    let error = load::run(&import_options(mismatched.path(), &db))
        .await
        .unwrap_err();
    expect_failure(&db, error.to_string(), "SHA-256");

    // A file that is not Parquet at all, with a manifest that agrees with it.
    let garbage = copy_dataset(dataset.path());
    std::fs::write(garbage.path().join(&ti_file), b"not parquet").unwrap();
    let mut edited = manifest.clone();
    if let Some(file) = edited
        .tables
        .get_mut("task_instance")
        .and_then(|t| t.files.iter_mut().find(|f| f.key == ti_file))
    {
        use sha2::Digest;
        file.bytes = 11;
        file.sha256 = sha2::Sha256::digest(b"not parquet")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
    }
    let garbage_manifest = garbage
        .path()
        .join("_contrail/exports")
        .join(format!("{}.json", edited.export_id));
    std::fs::write(&garbage_manifest, serde_json::to_vec(&edited).unwrap()).unwrap();
    let error = load::run(&import_options(garbage.path(), &db))
        .await
        .unwrap_err();
    expect_failure(&db, error.to_string(), "not readable Parquet");

    // A target whose version contrail does not know.
    let unknown = target("airflow-2.10.5");
    cluster().psql(
        &unknown,
        "UPDATE alembic_version SET version_num = 'deadbeef0000'",
    );
    let error = load::run(&import_options(dataset.path(), &unknown))
        .await
        .unwrap_err();
    expect_failure(&unknown, error.to_string(), "deadbeef0000");

    // A target older than the source.
    let older = target("airflow-2.9.2");
    let error = load::run(&import_options(dataset.path(), &older))
        .await
        .unwrap_err();
    expect_failure(&older, error.to_string(), "--allow-downgrade");

    // A wrong Fernet key, and no key at all: refused before anything is written.
    let wrong = FernetKeys::new(
        Some("d3JvbmdrZXl3cm9uZ2tleXdyb25na2V5d3JvbmdrZXk="),
        Some(SOURCE_KEY),
        false,
    )
    .unwrap();
    let error = load::run(&import_options(dataset.path(), &db).with_keys(wrong))
        .await
        .unwrap_err();
    expect_failure(&db, error.to_string(), "does not decrypt");
    let error = load::run(&import_options(dataset.path(), &db).with_keys(FernetKeys::default()))
        .await
        .unwrap_err();
    expect_failure(&db, error.to_string(), "--same-fernet-key");
    assert!(
        !error.to_string().contains("gAAAA"),
        "ciphertext in a message: {error}"
    );

    // A constraint the target enforces fails half way (after dag_run loaded): all rolled back.
    let strict = target("airflow-2.10.5");
    cluster().psql(
        &strict,
        "ALTER TABLE task_instance ADD CONSTRAINT no_success CHECK (state IS DISTINCT FROM 'success')",
    );
    let error = load::run(&import_options(dataset.path(), &strict))
        .await
        .unwrap_err();
    expect_failure(&strict, error.to_string(), "no_success");
    assert!(error.to_string().contains("rolled back"), "{error}");

    // The connection is killed in the middle of the import: nothing stays.
    let killed = target("airflow-2.10.5");
    cluster().psql(
        &killed,
        "CREATE FUNCTION kill_me() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NEW; END $$;
         CREATE TRIGGER kill_on_xcom BEFORE INSERT ON xcom FOR EACH ROW EXECUTE FUNCTION kill_me();",
    );
    let error = load::run(&import_options(dataset.path(), &killed))
        .await
        .unwrap_err();
    assert!(
        counts(&killed).values().all(|n| n == "0" || n == "1"),
        "the target changed after a killed connection: {error}"
    );
}
