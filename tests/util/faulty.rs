//! A proxy on 127.0.0.1 in front of moto that answers chosen S3 requests with HTTP 500 instead
//! of passing them on, so tests see what contrail does when S3 keeps failing: the SDK's retries
//! with backoff, then a clear error, and its multipart uploads aborted.
//!
//! One request per connection: the proxy asks both sides for `Connection: close`, so it reads
//! only the head of each request and then copies bytes. The listener thread lives as long as
//! the test process.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The running proxy.
pub struct FaultyProxy {
    port: u16,
    failed: Arc<AtomicUsize>,
}

impl FaultyProxy {
    /// Proxies to `127.0.0.1:upstream`, failing every request whose request line
    /// (`PUT /bucket/key?partNumber=1&uploadId=… HTTP/1.1`) satisfies `fail`.
    pub fn start(upstream: u16, fail: fn(&str) -> bool) -> FaultyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let failed = Arc::new(AtomicUsize::new(0));
        let counter = failed.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let counter = counter.clone();
                std::thread::spawn(move || {
                    let _ = serve(client, upstream, fail, &counter);
                });
            }
        });
        FaultyProxy { port, failed }
    }

    /// The endpoint URL to give contrail.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Requests answered with 500 so far.
    pub fn failed(&self) -> usize {
        self.failed.load(Ordering::SeqCst)
    }
}

/// Reads up to the end of an HTTP head; returns the head and any bytes after it.
fn read_head(stream: &mut TcpStream) -> std::io::Result<(String, Vec<u8>)> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buffer.split_off(end + 4);
            return Ok((String::from_utf8_lossy(&buffer).into_owned(), rest));
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

/// The head with any `Connection` header replaced by `Connection: close`.
fn closing(head: &str) -> String {
    let mut lines: Vec<&str> = head
        .trim_end()
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    lines.push("Connection: close");
    format!("{}\r\n\r\n", lines.join("\r\n"))
}

fn serve(
    mut client: TcpStream,
    upstream: u16,
    fail: fn(&str) -> bool,
    failed: &AtomicUsize,
) -> std::io::Result<()> {
    let (head, rest) = read_head(&mut client)?;
    let request_line = head.lines().next().unwrap_or_default().to_owned();
    if fail(&request_line) {
        // Read the body first, so the client sees the answer rather than a reset.
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0);
        let mut remaining = length.saturating_sub(rest.len());
        let mut chunk = [0u8; 65536];
        while remaining > 0 {
            let n = client.read(&mut chunk[..remaining.min(65536)])?;
            if n == 0 {
                break;
            }
            remaining -= n;
        }
        failed.fetch_add(1, Ordering::SeqCst);
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InternalError</Code>\
                    <Message>injected by the test proxy</Message></Error>";
        write!(
            client,
            "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/xml\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        return client.shutdown(Shutdown::Both);
    }
    let mut server = TcpStream::connect(("127.0.0.1", upstream))?;
    server.write_all(closing(&head).as_bytes())?;
    server.write_all(&rest)?;
    let mut to_server = server.try_clone()?;
    let mut from_client = client.try_clone()?;
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_client, &mut to_server);
    });
    let (response_head, response_rest) = read_head(&mut server)?;
    client.write_all(closing(&response_head).as_bytes())?;
    client.write_all(&response_rest)?;
    std::io::copy(&mut server, &mut client)?;
    client.shutdown(Shutdown::Both)
}
