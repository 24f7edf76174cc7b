//! The readers against the fault-injecting service: token-repeat pagination through empty
//! pages, expired tokens, retries, the window, FilterLogEvents across streams.

use std::sync::Arc;

use super::*;
use crate::logs::client::ApiErrorKind;
use crate::logs::limiter::{Api, Quotas};
use crate::logs::model::{ModelStream, QuotaModelOptions};
use crate::logs::testing::{Faulty, events};

const T0: i64 = 1_700_000_000_000;

fn context(client: Arc<Faulty>) -> ReadContext {
    ReadContext {
        client,
        limits: Arc::new(Limits::new(Quotas::default().scaled(1000.0).with_backoff(
            std::time::Duration::from_millis(1),
            std::time::Duration::from_millis(5),
        ))),
        group: "g".into(),
        start: None,
        end: None,
    }
}

fn faulty(page_events: usize, empty_pages: usize) -> Arc<Faulty> {
    let client = Arc::new(Faulty::new(
        QuotaModelOptions::unlimited()
            .with_page_limits(page_events, usize::MAX)
            .with_empty_pages(empty_pages),
    ));
    client.model.add_group("g", None);
    client
}

async fn read_all(reader: &mut StreamReader) -> Vec<LogEvent> {
    let mut out = Vec::new();
    while let Some(page) = reader.next_page().await.unwrap() {
        out.extend(page);
    }
    out
}

#[tokio::test]
async fn pages_until_the_token_repeats_through_empty_pages() {
    let client = faulty(3, 2);
    let all = events(T0, 10, "e");
    client
        .model
        .add_stream("g", "s", ModelStream::Stored(all.clone()));
    let mut reader = StreamReader::new(context(client.clone()), "s".into());
    assert_eq!(read_all(&mut reader).await, all);
    // 4 pages of events, each after 2 empty ones, and one call to see the token repeat.
    assert_eq!(client.calls(Api::GetEvents), 4 * 3 + 1);
}

#[tokio::test]
async fn an_empty_stream_takes_two_calls() {
    let client = faulty(3, 0);
    client
        .model
        .add_stream("g", "s", ModelStream::Stored(Vec::new()));
    let mut reader = StreamReader::new(context(client.clone()), "s".into());
    assert!(read_all(&mut reader).await.is_empty());
    assert_eq!(client.calls(Api::GetEvents), 2);
}

#[tokio::test]
async fn an_expired_token_restarts_at_the_last_time_without_loss_or_repeat() {
    let client = faulty(4, 0);
    // Several events share milliseconds, across the page boundary where the token expires.
    let mut all = events(T0, 12, "e");
    for (i, event) in all.iter_mut().enumerate() {
        event.timestamp = T0 + (i as i64 / 3) * 1000;
    }
    client
        .model
        .add_stream("g", "s", ModelStream::Stored(all.clone()));
    client.expire_token_after(0);
    let mut reader = StreamReader::new(context(client.clone()), "s".into());
    let read = read_all(&mut reader).await;
    assert_eq!(read, all);
}

#[tokio::test]
async fn throttling_and_unavailability_are_retried() {
    let client = faulty(5, 0);
    let all = events(T0, 12, "e");
    client
        .model
        .add_stream("g", "s", ModelStream::Stored(all.clone()));
    client.fail(
        Api::GetEvents,
        &[
            ApiErrorKind::Throttled,
            ApiErrorKind::Unavailable,
            ApiErrorKind::Throttled,
        ],
    );
    let ctx = context(client.clone());
    let limits = ctx.limits.clone();
    let mut reader = StreamReader::new(ctx, "s".into());
    assert_eq!(read_all(&mut reader).await, all);
    assert_eq!(limits.throttles(), 2);
    assert_eq!(client.calls(Api::GetEvents), 3 + 4);
}

#[tokio::test]
async fn other_errors_are_not_retried() {
    let client = faulty(5, 0);
    let mut reader = StreamReader::new(context(client.clone()), "missing".into());
    let error = reader.next_page().await.unwrap_err();
    assert_eq!(error.kind, ApiErrorKind::NotFound);
    assert_eq!(client.calls(Api::GetEvents), 1);
}

#[tokio::test]
async fn the_window_is_half_open() {
    let client = faulty(100, 0);
    let all = events(T0, 10, "e");
    client
        .model
        .add_stream("g", "s", ModelStream::Stored(all.clone()));
    let ctx = ReadContext {
        start: Some(T0 + 2000),
        end: Some(T0 + 5000),
        ..context(client.clone())
    };
    let mut reader = StreamReader::new(ctx.clone(), "s".into());
    assert_eq!(read_all(&mut reader).await, all[2..5]);
    let mut group = GroupReader::new(ctx, vec!["s".into()]);
    let mut read = Vec::new();
    while let Some(page) = group.next_page().await.unwrap() {
        read.extend(page.into_iter().map(|(_, e)| e));
    }
    assert_eq!(read, all[2..5]);
}

#[tokio::test]
async fn filter_reads_many_streams_and_survives_an_expired_token() {
    let client = faulty(7, 0);
    let mut expected = Vec::new();
    for s in 0..5 {
        let mut stream = events(T0, 6, &format!("s{s}"));
        // Equal timestamps in pairs, so a restart has to skip within a millisecond.
        for (i, event) in stream.iter_mut().enumerate() {
            event.timestamp = T0 + (i as i64 / 2) * 1000;
        }
        client
            .model
            .add_stream("g", &format!("s{s}"), ModelStream::Stored(stream.clone()));
        expected.extend(stream.into_iter().map(|e| (format!("s{s}"), e)));
    }
    client.expire_token_after(1);
    let names: Vec<String> = (0..5).map(|s| format!("s{s}")).collect();
    let mut reader = GroupReader::new(context(client.clone()), names);
    let mut read = Vec::new();
    while let Some(page) = reader.next_page().await.unwrap() {
        read.extend(page);
    }
    read.sort_by(|a, b| {
        (&a.0, a.1.timestamp, &a.1.message).cmp(&(&b.0, b.1.timestamp, &b.1.message))
    });
    expected.sort_by(|a, b| {
        (&a.0, a.1.timestamp, &a.1.message).cmp(&(&b.0, b.1.timestamp, &b.1.message))
    });
    assert_eq!(read, expected);
}
