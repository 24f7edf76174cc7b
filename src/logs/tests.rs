//! The copy and archive runs against the fault-injecting service: batching limits, throttling,
//! rejected and old events, renames, resume.

use std::sync::Arc;
use std::time::Duration;

use super::client::{ApiErrorKind, LogsClient as _};
use super::limiter::{Api, Quotas};
use super::model::{ModelStream, QuotaModelOptions};
use super::options::{CopyOptions, OldEvents};
use super::template::LogTemplate;
use super::testing::{Faulty, events};

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn service() -> Arc<Faulty> {
    let client = Arc::new(Faulty::new(QuotaModelOptions::unlimited()));
    client.model.add_group("src", None);
    client.model.add_group("dst", None);
    client
}

fn fast() -> Quotas {
    Quotas::default()
        .scaled(1000.0)
        .with_backoff(Duration::from_millis(1), Duration::from_millis(5))
}

fn options(client: &Arc<Faulty>) -> CopyOptions {
    CopyOptions::new("src", "dst")
        .with_client(client.clone())
        .with_quotas(fast())
}

#[tokio::test]
async fn big_streams_go_in_batches_within_the_limits_and_arrive_whole() {
    let client = service();
    let start = now_ms() - 10 * 3_600_000;
    // 25,000 small events, then 3,000 of 900 bytes (about 2.7 MiB).
    let mut all = events(start, 25_000, "small");
    for (i, event) in events(start + 25_000_000, 3_000, "big")
        .into_iter()
        .enumerate()
    {
        all.push(super::client::LogEvent {
            message: format!("{i:0>900}"),
            ..event
        });
    }
    client
        .model
        .add_stream("src", "s", ModelStream::Stored(all.clone()));
    let summary = super::copy(options(&client)).await.unwrap();
    assert_eq!(summary.events_written, all.len() as u64);
    assert_eq!(summary.events_rejected, 0);
    assert_eq!(client.model.written("dst", "s"), all);
    let sizes = client.put_sizes.lock().unwrap().clone();
    assert!(sizes.iter().all(|n| *n <= 10_000), "{sizes:?}");
    // 10,000 events at most, and 1 MiB at most (the model refuses more): the 2.7 MiB of big
    // events need three batches of their own or shared.
    assert_eq!(sizes.iter().sum::<usize>(), 28_000);
    assert!(sizes.len() >= 5, "{sizes:?}");
}

#[tokio::test]
async fn throttled_and_failing_calls_are_retried_and_counted() {
    let client = service();
    let start = now_ms() - 60_000;
    for s in 0..4 {
        client.model.add_stream(
            "src",
            &format!("s{s}"),
            ModelStream::Stored(events(start, 30, "e")),
        );
    }
    client.fail(
        Api::CreateStream,
        &[ApiErrorKind::Throttled, ApiErrorKind::Throttled],
    );
    client.fail(
        Api::PutEvents,
        &[ApiErrorKind::Unavailable, ApiErrorKind::Throttled],
    );
    client.fail(Api::GetEvents, &[ApiErrorKind::Throttled]);
    let summary = super::copy(options(&client)).await.unwrap();
    assert_eq!(summary.events_written, 120);
    assert!(summary.throttles >= 4, "{}", summary.throttles);
    for s in 0..4 {
        assert_eq!(client.model.written("dst", &format!("s{s}")).len(), 30);
    }
}

#[tokio::test]
async fn a_call_that_keeps_failing_fails_its_stream_with_a_clear_error() {
    let client = service();
    client.model.add_stream(
        "src",
        "s",
        ModelStream::Stored(events(now_ms() - 1000, 3, "e")),
    );
    client.fail(Api::PutEvents, &[ApiErrorKind::Throttled; 3]);
    let error = super::copy(options(&client).with_quotas(fast().with_max_attempts(3)))
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("1 streams failed"), "{error}");
    assert!(error.contains("PutLogEvents to dst/s"), "{error}");
}

#[tokio::test]
async fn old_events_are_refused_skipped_or_archived_never_dropped_silently() {
    let client = service();
    let day = 24 * 3_600_000;
    let mut mixed = events(now_ms() - 20 * day, 5, "old");
    mixed.extend(events(now_ms() - 60_000, 7, "new"));
    client
        .model
        .add_stream("src", "s", ModelStream::Stored(mixed));

    let error = super::copy(options(&client)).await.unwrap_err().to_string();
    assert!(error.contains("1 of the 1 selected streams"), "{error}");
    assert!(error.contains("--old-events archive"), "{error}");
    assert!(client.model.written("dst", "s").is_empty());

    let summary = super::copy(options(&client).with_dry_run(true))
        .await
        .unwrap();
    assert_eq!((summary.old_events, summary.events_written), (5, 7));
    assert_eq!(summary.streams_with_old_events, 1);

    let summary = super::copy(options(&client).with_old_events(OldEvents::Skip))
        .await
        .unwrap();
    assert_eq!(
        (
            summary.old_events,
            summary.events_written,
            summary.events_rejected
        ),
        (5, 7, 0)
    );

    let dir = tempfile::tempdir().unwrap();
    let client = service();
    let mut mixed = events(now_ms() - 20 * day, 5, "old");
    mixed.extend(events(now_ms() - 60_000, 7, "new"));
    client
        .model
        .add_stream("src", "s", ModelStream::Stored(mixed));
    let summary = super::copy(
        options(&client)
            .with_old_events(OldEvents::Archive)
            .with_archive_to(Some(dir.path().to_str().unwrap().to_owned())),
    )
    .await
    .unwrap();
    let archive = summary.archive.unwrap();
    assert_eq!((archive.rows, summary.events_written), (5, 7));
    assert!(dir.path().join(&archive.manifest).exists());
}

#[tokio::test]
async fn events_the_service_rejects_are_counted() {
    let client = service();
    client.model.add_group("dst", Some(1));
    let mut events_ = events(now_ms() - 3 * 3_600_000 * 24 / 24, 2, "recent");
    // Older than the one-day retention but newer than 14 days: only retention rejects them,
    // and the stream's metadata shows it, so this is detected before copying.
    events_.insert(
        0,
        events(now_ms() - 2 * 24 * 3_600_000, 1, "expired")[0].clone(),
    );
    client
        .model
        .add_stream("src", "s", ModelStream::Stored(events_));
    let summary = super::copy(options(&client).with_old_events(OldEvents::Skip))
        .await
        .unwrap();
    assert_eq!((summary.old_events, summary.events_written), (1, 2));
    // In the future beyond 2 hours: the service rejects them.
    let client = service();
    client.model.add_stream(
        "src",
        "f",
        ModelStream::Stored(events(now_ms() + 3 * 3_600_000, 4, "future")),
    );
    let summary = super::copy(options(&client)).await.unwrap();
    assert_eq!((summary.events_rejected, summary.events_written), (4, 0));
}

#[tokio::test]
async fn streams_are_renamed_between_templates_and_unmatched_ones_keep_their_name() {
    let client = service();
    let start = now_ms() - 60_000;
    let modern = "dag_id=etl/run_id=manual__2024-03-01T00_00_00+00_00/task_id=t/attempt=1.log";
    client.model.add_stream(
        "src",
        "etl/t/2024-03-01T00_00_00+00_00/1.log",
        ModelStream::Stored(events(start, 3, "a")),
    );
    client
        .model
        .add_stream("src", modern, ModelStream::Stored(events(start, 2, "b")));
    client.model.add_stream(
        "src",
        "scheduler.log",
        ModelStream::Stored(events(start, 1, "c")),
    );
    let summary = super::copy(options(&client).with_target_template(Some(LogTemplate::Legacy)))
        .await
        .unwrap();
    // Modern → legacy needs the logical date, which the modern name lacks: kept, reported.
    assert_eq!(summary.streams_renamed, 0);
    assert_eq!(summary.streams_unmatched, 2);
    assert_eq!(
        client.model.stream_names("dst"),
        [
            "dag_id=etl/run_id=manual__2024-03-01T00_00_00+00_00/task_id=t/attempt=1.log",
            "etl/t/2024-03-01T00_00_00+00_00/1.log",
            "scheduler.log"
        ]
    );
}

#[tokio::test]
async fn a_rerun_after_an_interruption_writes_no_event_twice() {
    let client = service();
    let start = now_ms() - 600_000;
    for s in 0..3 {
        client.model.add_stream(
            "src",
            &format!("s{s}"),
            ModelStream::Stored(events(start, 50, "e")),
        );
    }
    // An interrupted earlier run left part of s1 and all of s0 in the target.
    client.model.create_stream("dst", "s0").await.unwrap();
    client
        .model
        .put_events("dst", "s0", &events(start, 50, "e"))
        .await
        .unwrap();
    client.model.create_stream("dst", "s1").await.unwrap();
    client
        .model
        .put_events("dst", "s1", &events(start, 20, "e"))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cp.json");
    let summary = super::copy(options(&client).with_checkpoint(Some(path.clone())))
        .await
        .unwrap();
    assert_eq!(summary.events_already_copied, 70);
    assert_eq!(summary.events_written, 80);
    for s in 0..3 {
        assert_eq!(
            client.model.written("dst", &format!("s{s}")),
            events(start, 50, "e")
        );
    }
    // Everything is in the checkpoint now: a third run reads nothing.
    let before = client.calls(Api::GetEvents) + client.calls(Api::FilterEvents);
    let summary = super::copy(options(&client).with_checkpoint(Some(path)))
        .await
        .unwrap();
    assert_eq!(summary.streams_finished_earlier, 3);
    assert_eq!(summary.events_written, 0);
    assert_eq!(
        client.calls(Api::GetEvents) + client.calls(Api::FilterEvents),
        before
    );
}

#[tokio::test]
async fn missing_groups_are_clear_errors() {
    let client = service();
    let error = super::copy(CopyOptions::new("nope", "dst").with_client(client.clone()))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("nope: the log group does not exist"),
        "{error}"
    );
    let error = super::copy(CopyOptions::new("src", "new").with_client(client.clone()))
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("--create-target"), "{error}");
    let summary = super::copy(
        CopyOptions::new("src", "new")
            .with_client(client.clone())
            .with_create_target(true),
    )
    .await
    .unwrap();
    assert!(summary.created_target);
}

#[tokio::test]
async fn without_filter_permission_every_stream_is_read_with_get() {
    // Latency and quotas (20 times AWS's pace) so that the filter lane gets to work.
    let client = Arc::new(Faulty::new(
        QuotaModelOptions::default().with_time_scale(20.0),
    ));
    client.model.add_group("src", None);
    client.model.add_group("dst", None);
    let start = now_ms() - 600_000;
    for s in 0..200 {
        client.model.add_stream(
            "src",
            &format!("s{s:03}"),
            ModelStream::Stored(events(start, 5, "e")),
        );
    }
    client.fail(Api::FilterEvents, &[ApiErrorKind::Auth; 50]);
    let summary = super::copy(
        CopyOptions::new("src", "dst")
            .with_client(client.clone())
            .with_quotas(Quotas::default().scaled(20.0)),
    )
    .await
    .unwrap();
    assert_eq!(summary.events_written, 1000);
    assert!(client.calls(Api::FilterEvents) >= 1);
    for s in 0..200 {
        assert_eq!(client.model.written("dst", &format!("s{s:03}")).len(), 5);
    }
}
