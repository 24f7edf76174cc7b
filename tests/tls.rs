//! TLS with libpq's `sslmode`/`sslrootcert` against a real PostgreSQL server that accepts TLS
//! connections only (`hostssl` rules alone), with a CA and a `localhost` certificate made by
//! rcgen: what each mode accepts and refuses, how refusals read, `PGSSLMODE`, `PGSSLROOTCERT`
//! and `~/.postgresql/root.crt`, `hostaddr`, and an export over TLS.
//!
//! Connections parse their URL with an explicit environment, so neither the developer's own
//! `PGSSLMODE` nor their `~/.postgresql/root.crt` changes what these tests see, and no test
//! sets a variable of the test process itself.

use std::ffi::OsString;
use std::path::Path;

use contrail::Error;
use contrail::source::{DatabaseUrl, connect};

use crate::export::only_manifest;
use crate::util::contrail;
use crate::util::pg::{cluster, tls_cluster};

/// A new empty database on the TLS-only cluster and a URL to it as `host`, with `query`.
fn tls_url(host: &str, query: &str) -> String {
    let db = tls_cluster().empty_db("tls");
    format!(
        "postgresql://postgres:hunter2@{host}:{}/{db}?{query}",
        tls_cluster().port()
    )
}

/// Connects as `url` says; the error as the CLI would print it (each cause once) otherwise.
async fn try_connect(url: &str) -> Result<tokio_postgres::Client, (Error, String)> {
    try_connect_with_env(url, &[]).await
}

/// The message of the TLS error that connecting to `url` with the environment `env` fails with.
async fn tls_error(url: &str, env: &[(&str, &str)]) -> String {
    let (error, message) = try_connect_with_env(url, env).await.unwrap_err();
    assert!(matches!(error, Error::Tls { .. }), "{error:?}");
    message
}

/// [`try_connect`] with the environment variables `env` and no others.
async fn try_connect_with_env(
    url: &str,
    env: &[(&str, &str)],
) -> Result<tokio_postgres::Client, (Error, String)> {
    let env: Vec<(String, OsString)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
        .collect();
    let url = DatabaseUrl::parse_with_env(url, |name| {
        env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    })
    .unwrap();
    connect(&url).await.map_err(|error| {
        let mut message = error.to_string();
        let mut cause = std::error::Error::source(&error);
        while let Some(inner) = cause {
            message = format!("{message}: {inner}");
            cause = inner.source();
        }
        assert!(!message.contains("hunter2"), "{message}");
        (error, message)
    })
}

/// Whether the session of `client` runs over TLS, as the server sees it.
async fn server_sees_tls(client: &tokio_postgres::Client) -> bool {
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

fn path(file: &Path) -> String {
    file.to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_is_refused_and_the_error_says_tls_is_required() {
    let message = tls_error(&tls_url("127.0.0.1", "sslmode=disable"), &[]).await;
    assert!(
        message.contains("accepts only TLS connections"),
        "{message}"
    );
    assert!(message.contains("sslmode=require"), "{message}");
    assert!(message.contains("no pg_hba.conf entry"), "{message}");
    assert!(
        message.contains("postgresql://postgres@127.0.0.1"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_and_prefer_encrypt_without_verifying() {
    for query in ["sslmode=require", "sslmode=prefer", "connect_timeout=10"] {
        let client = try_connect(&tls_url("127.0.0.1", query)).await.unwrap();
        assert!(server_sees_tls(&client).await, "{query}");
    }
    // The same in libpq's key=value form.
    let db = tls_cluster().empty_db("tls");
    let text = format!(
        "host=127.0.0.1 port={} user=postgres dbname={db} sslmode=require",
        tls_cluster().port()
    );
    let client = try_connect(&text).await.unwrap();
    assert!(server_sees_tls(&client).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_accepts_the_servers_ca_and_refuses_another() {
    let certs = tls_cluster().certs();
    let ca = path(&certs.ca);
    let client = try_connect(&tls_url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .await
    .unwrap();
    assert!(server_sees_tls(&client).await);

    let db = tls_cluster().empty_db("tls");
    let text = format!(
        "host=localhost port={} user=postgres dbname={db} sslmode=verify-full sslrootcert='{ca}'",
        tls_cluster().port()
    );
    assert!(server_sees_tls(&try_connect(&text).await.unwrap()).await);

    let other = path(&certs.other_ca);
    for mode in ["verify-full", "verify-ca", "require"] {
        let message = tls_error(
            &tls_url("localhost", &format!("sslmode={mode}&sslrootcert={other}")),
            &[],
        )
        .await;
        assert!(
            message.contains(&format!(
                "the server's certificate is not signed by the roots in {other}"
            )),
            "{message}"
        );
        assert!(message.contains("sslrootcert="), "{message}");
        let unverified = if mode == "require" {
            "remove sslrootcert"
        } else {
            "use sslmode=require"
        };
        assert!(message.contains(unverified), "{message}");
        assert!(
            message.contains("postgresql://postgres@localhost"),
            "{message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_name_the_certificate_lacks_fails_verify_full_but_passes_verify_ca() {
    // The certificate names `localhost`, not 127.0.0.1.
    let ca = path(&tls_cluster().certs().ca);
    let message = tls_error(
        &tls_url(
            "127.0.0.1",
            &format!("sslmode=verify-full&sslrootcert={ca}"),
        ),
        &[],
    )
    .await;
    assert!(
        message.contains("not valid for host 127.0.0.1"),
        "{message}"
    );
    assert!(message.contains("sslmode=verify-ca"), "{message}");

    for mode in ["verify-ca", "require"] {
        let client = try_connect(&tls_url(
            "127.0.0.1",
            &format!("sslmode={mode}&sslrootcert={ca}"),
        ))
        .await
        .unwrap();
        assert!(server_sees_tls(&client).await, "{mode}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_with_channel_binding_works_over_tls() {
    tls_cluster().password_role("contrail_tls_pw", "right");
    let db = tls_cluster().empty_db("tls");
    let url = format!(
        "postgresql://contrail_tls_pw:right@127.0.0.1:{}/{db}?sslmode=require&channel_binding=require",
        tls_cluster().port()
    );
    let client = try_connect(&url).await.unwrap();
    assert!(server_sees_tls(&client).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_tls_is_refused_when_tls_is_required() {
    // The shared cluster has ssl off.
    let db = cluster().empty_db("notls");
    let ca = path(&tls_cluster().certs().ca);
    for query in [
        "sslmode=require".to_owned(),
        format!("sslmode=verify-full&sslrootcert={ca}"),
    ] {
        let url = format!(
            "postgresql://postgres:hunter2@127.0.0.1:{}/{db}?{query}",
            cluster().port()
        );
        let message = tls_error(&url, &[]).await;
        assert!(
            message.contains("the server does not accept TLS connections"),
            "{message}"
        );
    }
    // prefer falls back to plaintext there.
    let url = format!("{}?sslmode=prefer", cluster().url(&db));
    let client = try_connect(&url).await.unwrap();
    assert!(!server_sees_tls(&client).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgsslmode_and_pgsslrootcert_apply_unless_the_url_says_otherwise() {
    let certs = tls_cluster().certs();
    let (ca, other) = (path(&certs.ca), path(&certs.other_ca));
    let env = [("PGSSLMODE", "verify-full"), ("PGSSLROOTCERT", ca.as_str())];
    let client = try_connect_with_env(&tls_url("localhost", ""), &env)
        .await
        .unwrap();
    assert!(server_sees_tls(&client).await);
    // verify-full from the environment checks the name: the certificate names localhost only.
    let message = tls_error(&tls_url("127.0.0.1", ""), &env).await;
    assert!(
        message.contains("not valid for host 127.0.0.1"),
        "{message}"
    );
    // The URL's sslmode wins; PGSSLROOTCERT still gives the roots `require` verifies with.
    let client = try_connect_with_env(&tls_url("127.0.0.1", "sslmode=require"), &env)
        .await
        .unwrap();
    assert!(server_sees_tls(&client).await);
    let env = [("PGSSLMODE", "require"), ("PGSSLROOTCERT", other.as_str())];
    let (_, message) = try_connect_with_env(&tls_url("localhost", ""), &env)
        .await
        .unwrap_err();
    assert!(
        message.contains(&format!("not signed by the roots in {other}")),
        "{message}"
    );
    // The URL's sslrootcert wins too.
    let query = format!("sslrootcert={ca}");
    let client = try_connect_with_env(&tls_url("localhost", &query), &env)
        .await
        .unwrap();
    assert!(server_sees_tls(&client).await);
}

#[test]
fn the_binary_reads_pgsslmode_and_pgsslrootcert() {
    let db = tls_cluster().empty_db("tls");
    let url = format!(
        "postgresql://postgres:hunter2@localhost:{}/{db}",
        tls_cluster().port()
    );
    let other = path(&tls_cluster().certs().other_ca);
    let out = contrail(
        &["inspect", "--db", &url],
        &[("PGSSLMODE", "verify-ca"), ("PGSSLROOTCERT", &other)],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("not signed by the roots in {other}")),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
    let out = contrail(&["inspect", "--db", &url], &[("PGSSLMODE", "verify_ca")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("in PGSSLMODE"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_root_file_in_home_makes_require_verify_and_serves_verify_full() {
    let certs = tls_cluster().certs();
    let home = tempfile::tempdir().unwrap();
    let root_file = home.path().join(".postgresql/root.crt");
    std::fs::create_dir_all(root_file.parent().unwrap()).unwrap();
    let home_dir = path(home.path());
    let env = [("HOME", home_dir.as_str())];

    std::fs::copy(&certs.other_ca, &root_file).unwrap();
    let message = tls_error(&tls_url("127.0.0.1", "sslmode=require"), &env).await;
    assert!(
        message.contains(&format!("not signed by the roots in {}", path(&root_file))),
        "{message}"
    );
    assert!(message.contains("~/.postgresql/root.crt"), "{message}");
    // prefer never verifies, whatever roots there are.
    let client = try_connect_with_env(&tls_url("127.0.0.1", "sslmode=prefer"), &env)
        .await
        .unwrap();
    assert!(server_sees_tls(&client).await);

    std::fs::copy(&certs.ca, &root_file).unwrap();
    for (host, mode) in [("127.0.0.1", "require"), ("localhost", "verify-full")] {
        let query = format!("sslmode={mode}");
        let client = try_connect_with_env(&tls_url(host, &query), &env)
            .await
            .unwrap();
        assert!(server_sees_tls(&client).await, "{mode}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostaddr_without_host_uses_tls_as_libpq_does() {
    // tokio-postgres alone refuses TLS without a host name ("no hostname provided").
    let port = tls_cluster().port();
    for mode in ["prefer", "require"] {
        let db = tls_cluster().empty_db("tls");
        let text =
            format!("hostaddr=127.0.0.1 port={port} user=postgres dbname={db} sslmode={mode}");
        let client = try_connect(&text).await.unwrap();
        assert!(server_sees_tls(&client).await, "{mode}");
    }
    // With host, host is the name verify-full checks and hostaddr where it connects.
    let db = tls_cluster().empty_db("tls");
    let ca = path(&tls_cluster().certs().ca);
    let text = format!(
        "host=localhost hostaddr=127.0.0.1 port={port} user=postgres dbname={db} \
         sslmode=verify-full sslrootcert='{ca}'"
    );
    let client = try_connect(&text).await.unwrap();
    assert!(server_sees_tls(&client).await);
}

#[test]
fn export_over_tls_only_through_the_binary() {
    let db = tls_cluster().db_from_fixture("airflow-2.10.5");
    let history = std::fs::read_to_string(
        crate::util::repo_root().join("tests/fixtures/history-2.10-small.sql"),
    )
    .unwrap();
    tls_cluster().psql(&db, &history);
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "postgresql://postgres@localhost:{}/{db}?sslmode=verify-full&sslrootcert={}",
        tls_cluster().port(),
        path(&tls_cluster().certs().ca)
    );
    let out = contrail(
        &[
            "export",
            "--db",
            &url,
            "--to",
            dir.path().to_str().unwrap(),
            "--output",
            "json",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "export failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest = only_manifest(dir.path());
    for table in ["dag_run", "task_instance"] {
        let count: u64 = tls_cluster()
            .psql_value(&db, &format!("SELECT count(*) FROM {table}"))
            .parse()
            .unwrap();
        assert!(count > 0, "{table}");
        assert_eq!(manifest.tables[table].rows, count, "{table}");
    }
}
