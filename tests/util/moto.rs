//! A moto server (PyPI `moto`, the AWS emulator) on a free port of 127.0.0.1, shared by every
//! test of the binary: S3 and CloudWatch Logs without AWS.
//!
//! `scripts/test.sh` installs moto into a cached virtualenv and exports `CONTRAIL_MOTO_SERVER`
//! with the path of `moto_server`, plus fixed test credentials and region (`testing`,
//! `us-east-1`) so that the library reads them the standard way, from the environment. The
//! harness does not change the process environment; it passes the endpoint to stores through
//! `StoreOptions::with_endpoint_url`, and offers [`Moto::env`] for spawned `contrail` processes.
//!
//! When the test process ends, however it ends, a watchdog shell kills the server.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};

/// One object as S3 lists it.
#[derive(Debug, Clone)]
pub struct StoredObject {
    /// The full key.
    pub key: String,
    /// Bytes.
    pub size: u64,
    /// ETag without quotes; multipart objects end in `-<parts>`.
    pub etag: String,
    /// Seconds and nanoseconds since the epoch.
    pub last_modified: (i64, u32),
}

/// Test credentials and region that moto accepts (it checks no signature).
pub const ACCESS_KEY: &str = "testing";
/// See [`ACCESS_KEY`].
pub const SECRET_KEY: &str = "testing";
/// The region every test uses.
pub const REGION: &str = "us-east-1";

/// The running server.
pub struct Moto {
    port: u16,
    /// The server's output: werkzeug logs one line per request, in the order they complete.
    log: PathBuf,
    /// Kept so the child is not reaped early; the watchdog kills it.
    _child: Mutex<Child>,
}

static MOTO: OnceLock<Moto> = OnceLock::new();
static NEXT_BUCKET: AtomicUsize = AtomicUsize::new(0);
static NEXT_GROUP: AtomicUsize = AtomicUsize::new(0);

/// The shared server, started on first use.
pub fn server() -> &'static Moto {
    MOTO.get_or_init(|| {
        Moto::start().unwrap_or_else(|e| panic!("starting moto for the tests: {e}"))
    })
}

impl Moto {
    fn start() -> Result<Moto, String> {
        check_environment()?;
        let bin = find_moto_server()?;
        let port = free_port()?;
        let log = std::env::temp_dir().join(format!("contrail-moto-{}.log", std::process::id()));
        let log_file =
            std::fs::File::create(&log).map_err(|e| format!("creating {}: {e}", log.display()))?;
        let log_err = log_file.try_clone().map_err(|e| e.to_string())?;
        let started = Instant::now();
        let mut child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("running {}: {e}", bin.display()))?;
        spawn_watchdog(child.id(), &log)?;
        loop {
            if probe(port) {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                let output = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!("moto_server exited with {status}: {output}"));
            }
            if started.elapsed() > Duration::from_secs(60) {
                return Err(format!(
                    "moto_server not ready after 60 s; see {}",
                    log.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("moto ready on port {port} in {:.2?}", started.elapsed());
        Ok(Moto {
            port,
            log,
            _child: Mutex::new(child),
        })
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The endpoint URL, `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment a spawned `contrail` needs to reach this server the standard way.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ]
    }

    /// An S3 client configured explicitly for this server, for the tests' own checks. Build one
    /// per test: a client's connections belong to the runtime that opened them.
    pub fn client(&self) -> Client {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(self.endpoint())
            .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "moto"))
            .force_path_style(true)
            .build();
        Client::from_conf(config)
    }

    /// Creates a new empty bucket and returns its name.
    pub async fn bucket(&self) -> String {
        let name = format!(
            "contrail-{}-{}",
            std::process::id(),
            NEXT_BUCKET.fetch_add(1, Ordering::SeqCst)
        );
        self.client()
            .create_bucket()
            .bucket(&name)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "creating bucket {name}: {}",
                    aws_sdk_s3::error::DisplayErrorContext(&e)
                )
            });
        name
    }

    /// The request lines the server logged so far (`PUT /bucket/key?partNumber=1… HTTP/1.1`),
    /// in the order the requests completed.
    pub fn requests(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter_map(|line| {
                let start = line.find('"')? + 1;
                let end = start + line[start..].find('"')?;
                Some(line[start..end].to_owned())
            })
            .collect()
    }

    /// Every object under `prefix` of `bucket`: key, size, ETag and last-modified time.
    pub async fn objects(&self, bucket: &str, prefix: &str) -> Vec<StoredObject> {
        let client = self.client();
        let mut pages = client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.unwrap_or_else(|e| {
                panic!("listing: {}", aws_sdk_s3::error::DisplayErrorContext(&e))
            });
            for object in page.contents() {
                out.push(StoredObject {
                    key: object.key().unwrap_or_default().to_owned(),
                    size: object.size().unwrap_or_default() as u64,
                    etag: object
                        .e_tag()
                        .unwrap_or_default()
                        .trim_matches('"')
                        .to_owned(),
                    last_modified: object
                        .last_modified()
                        .map(|t| (t.secs(), t.subsec_nanos()))
                        .unwrap_or_default(),
                });
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// The bytes of object `key` of `bucket`.
    pub async fn get(&self, bucket: &str, key: &str) -> Vec<u8> {
        let out = self
            .client()
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "getting {key}: {}",
                    aws_sdk_s3::error::DisplayErrorContext(&e)
                )
            });
        out.body.collect().await.unwrap().into_bytes().to_vec()
    }

    /// A CloudWatch Logs client configured explicitly for this server. Build one per test.
    pub fn logs_client(&self) -> aws_sdk_cloudwatchlogs::Client {
        let config = aws_sdk_cloudwatchlogs::Config::builder()
            .behavior_version(aws_sdk_cloudwatchlogs::config::BehaviorVersion::latest())
            .region(aws_sdk_cloudwatchlogs::config::Region::new(REGION))
            .endpoint_url(self.endpoint())
            .credentials_provider(aws_sdk_cloudwatchlogs::config::Credentials::new(
                ACCESS_KEY, SECRET_KEY, None, None, "moto",
            ))
            .build();
        aws_sdk_cloudwatchlogs::Client::from_conf(config)
    }

    /// A log group name no other test uses (`<prefix>-<pid>-<n>`); the group is not created.
    pub fn group_name(&self, prefix: &str) -> String {
        format!(
            "{prefix}-{}-{}",
            std::process::id(),
            NEXT_GROUP.fetch_add(1, Ordering::SeqCst)
        )
    }

    /// Creates log group `name`, with a retention in days if given.
    pub async fn create_group(&self, name: &str, retention_days: Option<i32>) {
        let client = self.logs_client();
        client
            .create_log_group()
            .log_group_name(name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("creating group {name}: {}", logs_error(&e)));
        if let Some(days) = retention_days {
            client
                .put_retention_policy()
                .log_group_name(name)
                .retention_in_days(days)
                .send()
                .await
                .unwrap_or_else(|e| panic!("setting the retention of {name}: {}", logs_error(&e)));
        }
    }

    /// Creates `stream` in `group` holding `events` (ms timestamp, message), in batches.
    pub async fn put_stream(&self, group: &str, stream: &str, events: &[(i64, String)]) {
        let client = self.logs_client();
        client
            .create_log_stream()
            .log_group_name(group)
            .log_stream_name(stream)
            .send()
            .await
            .unwrap_or_else(|e| panic!("creating stream {stream}: {}", logs_error(&e)));
        let mut sorted = events.to_vec();
        sorted.sort_by_key(|e| e.0);
        for chunk in sorted.chunks(5_000) {
            let events = chunk
                .iter()
                .map(|(t, m)| {
                    aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                        .timestamp(*t)
                        .message(m)
                        .build()
                        .unwrap()
                })
                .collect();
            let out = client
                .put_log_events()
                .log_group_name(group)
                .log_stream_name(stream)
                .set_log_events(Some(events))
                .send()
                .await
                .unwrap_or_else(|e| panic!("putting events into {stream}: {}", logs_error(&e)));
            assert!(
                out.rejected_log_events_info().is_none(),
                "moto rejected events of {stream}"
            );
        }
    }

    /// Every event of `stream` in `group` (ms timestamp, message), oldest first.
    pub async fn read_stream(&self, group: &str, stream: &str) -> Vec<(i64, String)> {
        let client = self.logs_client();
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = client
                .get_log_events()
                .log_group_name(group)
                .log_stream_name(stream)
                .start_from_head(true)
                .set_next_token(token.clone())
                .send()
                .await
                .unwrap_or_else(|e| panic!("reading {stream}: {}", logs_error(&e)));
            out.extend(
                page.events()
                    .iter()
                    .map(|e| (e.timestamp().unwrap(), e.message().unwrap().to_owned())),
            );
            let next = page.next_forward_token().map(str::to_owned);
            if next == token {
                return out;
            }
            token = next;
        }
    }

    /// The stream names of `group`, sorted.
    pub async fn stream_names(&self, group: &str) -> Vec<String> {
        let client = self.logs_client();
        let mut pages = client
            .describe_log_streams()
            .log_group_name(group)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.unwrap_or_else(|e| panic!("listing {group}: {}", logs_error(&e)));
            out.extend(
                page.log_streams()
                    .iter()
                    .filter_map(|s| s.log_stream_name().map(str::to_owned)),
            );
        }
        out.sort();
        out
    }

    /// Keys of the multipart uploads started and neither completed nor aborted in `bucket`.
    pub async fn pending_uploads(&self, bucket: &str) -> Vec<String> {
        let out = self
            .client()
            .list_multipart_uploads()
            .bucket(bucket)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "listing uploads: {}",
                    aws_sdk_s3::error::DisplayErrorContext(&e)
                )
            });
        out.uploads()
            .iter()
            .filter_map(|u| u.key().map(str::to_owned))
            .collect()
    }
}

fn logs_error<E: std::error::Error + 'static>(error: &E) -> String {
    aws_sdk_cloudwatchlogs::error::DisplayErrorContext(error).to_string()
}

/// The library reads credentials and region from the environment, as in production.
fn check_environment() -> Result<(), String> {
    let expected = [
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        ("AWS_REGION", REGION),
    ];
    for (name, value) in expected {
        if std::env::var(name).as_deref() != Ok(value) {
            return Err(format!(
                "the S3 tests need {name}={value} in the environment (the library reads it the \
                 standard way); run scripts/test.sh, which sets it, or export it yourself"
            ));
        }
    }
    Ok(())
}

fn find_moto_server() -> Result<PathBuf, String> {
    let mut candidates = Vec::new();
    if let Ok(path) = std::env::var("CONTRAIL_MOTO_SERVER") {
        candidates.push(PathBuf::from(path));
    }
    let cache = std::env::var_os("CONTRAIL_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/contrail")));
    if let Some(cache) = cache {
        candidates.push(cache.join("venv-moto/bin/moto_server"));
    }
    candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        "moto_server not found (CONTRAIL_MOTO_SERVER, or the cached venv-moto); run \
         scripts/test.sh, which installs it"
            .to_owned()
    })
}

/// Kills the server once this test process has exited.
fn spawn_watchdog(server_pid: u32, log: &std::path::Path) -> Result<(), String> {
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; kill {server_pid} 2>/dev/null; \
         sleep 2; kill -9 {server_pid} 2>/dev/null; rm -f {log}",
        pid = std::process::id(),
        log = log.display()
    );
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(|_| ())
        .map_err(|e| format!("starting the moto watchdog: {e}"))
}

/// Whether `GET /moto-api/` answers 200.
fn probe(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream
        .write_all(b"GET /moto-api/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| format!("finding a free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}
