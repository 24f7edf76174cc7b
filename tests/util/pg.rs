//! A throwaway PostgreSQL cluster: initdb + pg_ctl in a temporary directory, on a free port of
//! 127.0.0.1 with trust authentication, shared by every test of the binary.
//!
//! When the test process ends, however it ends, a watchdog shell stops the server and removes the
//! directory. As root (CI containers), the server runs as the `postgres` user, since PostgreSQL
//! refuses to run as root.
//!
//! A second cluster, started only by the tests that ask for it, accepts TLS connections only
//! (`ssl = on`, `hostssl` rules alone in pg_hba.conf) with certificates from `tls.rs`.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use tokio_postgres::{Client, NoTls};

use super::tls::TestCerts;

/// The running cluster.
pub struct PgCluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    run_as: Option<String>,
    /// The certificates of a TLS-only cluster.
    certs: Option<TestCerts>,
    /// Fixture templates already loaded, guarded so two tests do not load the same one.
    templates: Mutex<Vec<String>>,
}

static CLUSTER: OnceLock<PgCluster> = OnceLock::new();
static TLS_CLUSTER: OnceLock<PgCluster> = OnceLock::new();
static NEXT_DB: AtomicUsize = AtomicUsize::new(0);
/// Serialises edits of pg_hba.conf.
static HBA: Mutex<()> = Mutex::new(());

/// The shared cluster, started on first use.
pub fn cluster() -> &'static PgCluster {
    CLUSTER.get_or_init(|| {
        PgCluster::start(false).unwrap_or_else(|e| panic!("starting PostgreSQL for the tests: {e}"))
    })
}

/// A cluster that accepts TLS connections only, started on first use: its certificate is for
/// `localhost` (see [`PgCluster::certs`]); plaintext connections are refused by pg_hba.conf.
pub fn tls_cluster() -> &'static PgCluster {
    TLS_CLUSTER.get_or_init(|| {
        PgCluster::start(true)
            .unwrap_or_else(|e| panic!("starting the TLS-only PostgreSQL for the tests: {e}"))
    })
}

impl PgCluster {
    fn start(tls: bool) -> Result<PgCluster, String> {
        let bin = find_bin_dir()?;
        let run_as = if is_root() {
            Some("postgres".to_owned())
        } else {
            None
        };
        let name = if tls {
            "contrail-pg-tls"
        } else {
            "contrail-pg"
        };
        let base = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        let dir = base.join("data");
        let sock = base.join("sock");
        std::fs::create_dir_all(&sock).map_err(|e| format!("creating {}: {e}", sock.display()))?;
        let certs = if tls {
            let certs_dir = base.join("certs");
            std::fs::create_dir_all(&certs_dir)
                .map_err(|e| format!("creating {}: {e}", certs_dir.display()))?;
            let certs = TestCerts::write(&certs_dir)?;
            // PostgreSQL refuses a key file that others may read.
            std::fs::set_permissions(&certs.server_key, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| format!("chmod {}: {e}", certs.server_key.display()))?;
            Some(certs)
        } else {
            None
        };
        if let Some(user) = &run_as {
            run(Command::new("chown").args(["-R", user]).arg(&base))?;
        }
        let port = free_port()?;
        let cluster = PgCluster {
            bin,
            dir,
            port,
            run_as,
            certs,
            templates: Mutex::new(Vec::new()),
        };
        cluster.as_server_user(&cluster.bin.join("initdb"), |c| {
            c.args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "-D",
            ])
            .arg(&cluster.dir);
        })?;
        let mut options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
            sock.display()
        );
        if let Some(certs) = &cluster.certs {
            // Plaintext over TCP is refused; the Unix socket (never TLS) stays trusted.
            let hba = cluster.dir.join("pg_hba.conf");
            std::fs::write(
                &hba,
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n",
            )
            .map_err(|e| format!("writing {}: {e}", hba.display()))?;
            options.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                certs.server_cert.display(),
                certs.server_key.display()
            ));
        }
        cluster.as_server_user(&cluster.bin.join("pg_ctl"), |c| {
            c.args(["-w", "-t", "60", "-l"])
                .arg(base.join("server.log"))
                .arg("-D")
                .arg(&cluster.dir)
                .args(["-o", &options, "start"]);
        })?;
        cluster.spawn_watchdog(&base)?;
        Ok(cluster)
    }

    /// Stops the server and removes its directory once this test process has exited.
    fn spawn_watchdog(&self, base: &Path) -> Result<(), String> {
        let stop = format!(
            "{}{} -D {} -m immediate stop",
            self.run_as
                .as_ref()
                .map(|u| format!("runuser -u {u} -- "))
                .unwrap_or_default(),
            self.bin.join("pg_ctl").display(),
            self.dir.display()
        );
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {stop} >/dev/null 2>&1; rm -rf {base}",
            pid = std::process::id(),
            base = base.display()
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(|_| ())
            .map_err(|e| format!("starting the cleanup watchdog: {e}"))
    }

    fn as_server_user(
        &self,
        program: &Path,
        build: impl FnOnce(&mut Command),
    ) -> Result<(), String> {
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(program);
                c
            }
            None => Command::new(program),
        };
        build(&mut cmd);
        run(&mut cmd)
    }

    /// The certificates of the TLS-only cluster.
    pub fn certs(&self) -> &TestCerts {
        self.certs
            .as_ref()
            .expect("only the TLS-only cluster has certificates")
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// URL of database `db` as user postgres over TCP.
    pub fn url(&self, db: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs SQL with psql against `db`, failing on the first error.
    pub fn psql(&self, db: &str, sql: &str) {
        let status = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &self.url(db),
                "-c",
                sql,
            ])
            .stdout(Stdio::null())
            .status()
            .expect("running psql");
        assert!(status.success(), "psql failed on {db}: {sql}");
    }

    fn psql_file(&self, db: &str, file: &Path) {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &self.url(db),
                "-f",
            ])
            .arg(file)
            .output()
            .expect("running psql");
        assert!(
            out.status.success(),
            "loading {} failed: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs one query with psql against `db` and returns its unaligned output.
    pub fn psql_value(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &self.url(db),
                "-c",
                sql,
            ])
            .output()
            .expect("running psql");
        assert!(
            out.status.success(),
            "psql failed on {db}: {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// A login role `name` that must give `password` over TCP (scram-sha-256), while everyone
    /// else keeps trust authentication: a rule for it goes first in pg_hba.conf, then the server
    /// reloads its configuration.
    pub fn password_role(&self, name: &str, password: &str) {
        let _guard = HBA.lock().unwrap_or_else(|p| p.into_inner());
        let exists = self.psql_value(
            "postgres",
            &format!("SELECT count(*) FROM pg_roles WHERE rolname = '{name}'"),
        );
        if exists == "1" {
            return;
        }
        self.psql(
            "postgres",
            &format!("CREATE ROLE {name} LOGIN SUPERUSER PASSWORD '{password}'"),
        );
        let hba = PathBuf::from(self.psql_value("postgres", "SHOW hba_file"));
        let rules = std::fs::read_to_string(&hba).expect("reading pg_hba.conf");
        let kind = if self.certs.is_some() {
            "hostssl"
        } else {
            "host"
        };
        std::fs::write(
            &hba,
            format!("{kind} all {name} 127.0.0.1/32 scram-sha-256\n{rules}"),
        )
        .expect("writing pg_hba.conf");
        self.psql_value("postgres", "SELECT pg_reload_conf()");
        // The postmaster rereads the file asynchronously; wait until the rule applies.
        let wrong = format!(
            "postgresql://{name}:not-{password}@127.0.0.1:{}/postgres",
            self.port
        );
        for _ in 0..100 {
            let refused = !Command::new(self.bin.join("psql"))
                .args(["-X", "-w", "-d", &wrong, "-c", "SELECT 1"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("running psql")
                .success();
            if refused {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("the password rule for {name} did not take effect");
    }

    /// A new empty database; returns its name.
    pub fn empty_db(&self, prefix: &str) -> String {
        let name = format!("{prefix}_{}", NEXT_DB.fetch_add(1, Ordering::SeqCst));
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        name
    }

    /// A new database holding the schema of DDL fixture `fixture` (its file stem, e.g.
    /// `airflow-2.10.5`); returns its name. Each fixture is loaded once into a template.
    pub fn db_from_fixture(&self, fixture: &str) -> String {
        let template = format!("tpl_{}", fixture.replace(['.', '-'], "_"));
        {
            let mut loaded = self.templates.lock().unwrap_or_else(|p| p.into_inner());
            if !loaded.contains(&template) {
                self.psql("postgres", &format!("CREATE DATABASE {template}"));
                self.psql_file(&template, &super::fixtures::ddl_path(fixture));
                loaded.push(template.clone());
            }
        }
        let name = format!(
            "{}_{}",
            template.trim_start_matches("tpl_"),
            NEXT_DB.fetch_add(1, Ordering::SeqCst)
        );
        self.psql(
            "postgres",
            &format!("CREATE DATABASE {name} TEMPLATE {template}"),
        );
        name
    }

    /// A tokio-postgres client for database `db`, in plaintext (so not on the TLS-only cluster,
    /// where tests connect through `contrail::source::connect`).
    pub async fn client(&self, db: &str) -> Client {
        let (client, connection) = tokio_postgres::connect(&self.url(db), NoTls)
            .await
            .expect("connecting to the test cluster");
        tokio::spawn(connection);
        client
    }

    /// A client of `db`, the Airflow schema version its revisions name, and its live tables.
    pub async fn inspect(
        &self,
        db: &str,
    ) -> (
        Client,
        &'static contrail::catalog::SchemaVersion,
        contrail::catalog::detect::LiveSchema,
    ) {
        use contrail::catalog::{Catalog, detect};
        let catalog = Catalog::builtin().unwrap();
        let client = self.client(db).await;
        let revisions = detect::read_revisions(&client, "public", db).await.unwrap();
        let version = detect::version_for_revisions(catalog, &revisions).unwrap();
        let live = detect::introspect(&client, "public").await.unwrap();
        (client, version, live)
    }
}

fn find_bin_dir() -> Result<PathBuf, String> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Ok(dir) = std::env::var("CONTRAIL_PG_BIN") {
        candidates.push(PathBuf::from(dir));
    }
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .collect();
        versions.sort_by_key(|p| {
            std::cmp::Reverse(
                p.parent()
                    .and_then(|v| v.file_name())
                    .and_then(|v| v.to_str())
                    .and_then(|v| v.parse::<u32>().ok()),
            )
        });
        candidates.extend(versions);
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path));
    }
    candidates
        .into_iter()
        .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() && dir.join("psql").is_file())
        .ok_or_else(|| "no PostgreSQL server binaries (initdb, pg_ctl, psql) on PATH or under /usr/lib/postgresql/*/bin; run scripts/test.sh, which installs them".to_owned())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> Result<u16, String> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("finding a free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("running {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
