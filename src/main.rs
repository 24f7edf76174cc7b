//! The `contrail` binary: parse arguments, run, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;
use contrail::cli::{self, Cli, EXIT_ERROR};

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        builder.worker_threads(async_workers());
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the async runtime: {error}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(code) => code,
        Err(error) => {
            // A closed stdout (`contrail inspect | head`) is not a failure.
            if error.chain().any(|e| {
                e.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            // Messages often quote their cause already; print each cause only once.
            let mut message = error.to_string();
            for cause in error.chain().skip(1) {
                let cause = cause.to_string();
                if !message.contains(&cause) {
                    message = format!("{message}: {cause}");
                }
            }
            eprintln!("error: {message}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Threads for the async runtime: half the cores, at least one (`TOKIO_WORKER_THREADS`
/// overrides). The async side only moves bytes (COPY streams, uploads, API calls); decoding,
/// sorting and encoding run on blocking threads, one per job, beside the PostgreSQL backends
/// they read from. A worker per core only adds threads contending for the same cores: on 2
/// cores, one worker instead of two halved the export's context switches and cut its wall
/// time about 6% (2M task instances, 5 alternating rounds).
fn async_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

/// Keeps glibc's malloc from holding freed memory: with an arena per thread and an mmap
/// threshold that rises as large buffers are freed, the export's short-lived multi-megabyte
/// buffers stayed resident and RSS grew with table size (950 MiB for 2M task instances). Two
/// arenas and a fixed threshold keep it bounded. The threshold is 2 MiB, not 128 KiB: the
/// Parquet writer creates a zstd context (about 1 MiB) per column chunk, and each one mmapped
/// and zeroed afresh cost 1.2 s of system time per 2M task instances (2.4 -> 1.1 s) for
/// about 15 MiB more peak RSS. Fixing the threshold also fixes the trim threshold at 128 KiB:
/// every batch freed at the top of the heap was handed back to the kernel and faulted in,
/// zeroed, for the next one (100k page faults per 1M task instances). Keeping up to 16 MiB
/// free at the top cuts that to about 50k and system time by about a fifth. 32 MiB (33k
/// faults) let a 5M-row export in DAG order peak at 188–207 MiB; 16 MiB, with the smaller
/// spill read buffers, at 168–184 MiB (6 runs). Runs before any thread exists.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    // SAFETY: mallopt only sets allocator parameters, and no other thread runs yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 2 * 1024 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 16 * 1024 * 1024);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}
