//! The real CloudWatch Logs client, through aws-sdk-cloudwatchlogs.
//!
//! Configuration comes the standard AWS way: credentials from the default chain, the region from
//! `AWS_REGION` or the profile, an endpoint override from `AWS_ENDPOINT_URL_CLOUDWATCH_LOGS` /
//! `AWS_ENDPOINT_URL` / the profile (or [`AwsLogsClient::connect`]'s `endpoint_url`). The SDK's
//! own retries are off: the copier's limiters must see every throttled call to adapt.

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_sdk_cloudwatchlogs::Client;
use aws_sdk_cloudwatchlogs::config::ProvideCredentials as _;
use aws_sdk_cloudwatchlogs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use futures_util::future::BoxFuture;

use super::client::{
    ApiError, ApiErrorKind, ApiResult, EventPage, FilterPage, GroupInfo, LogEvent, LogsClient,
    PutOutcome, RejectedInfo, StreamInfo, StreamPage,
};
use crate::error::{Error, Result};

/// Streams asked for per DescribeLogStreams page (the most AWS returns).
const STREAMS_PER_PAGE: i32 = 50;

/// CloudWatch Logs in one region, through the AWS SDK.
#[derive(Debug, Clone)]
pub struct AwsLogsClient {
    client: Client,
    region: String,
}

impl AwsLogsClient {
    /// Loads the AWS configuration, checks that a region and credentials are there, and builds
    /// a client. `endpoint_url` overrides the endpoint (an emulator); `None` keeps the standard
    /// lookup.
    ///
    /// # Errors
    /// [`Error::Logs`] when no region is configured or no credentials can be found.
    pub async fn connect(endpoint_url: Option<&str>) -> Result<AwsLogsClient> {
        let shared = aws_config::defaults(BehaviorVersion::latest()).load().await;
        let Some(region) = shared.region().map(|r| r.to_string()) else {
            return Err(Error::Logs {
                target: "CloudWatch Logs".to_owned(),
                message: "no AWS region configured: set AWS_REGION (or the profile's region) to \
                          the region of the log groups"
                    .to_owned(),
            });
        };
        match shared.credentials_provider() {
            Some(provider) => {
                if let Err(error) = provider.provide_credentials().await {
                    return Err(Error::Logs {
                        target: format!("CloudWatch Logs in {region}"),
                        message: format!(
                            "no usable AWS credentials: {}. Set AWS_ACCESS_KEY_ID and \
                             AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run where a role is attached",
                            DisplayErrorContext(&error)
                        ),
                    });
                }
            }
            None => {
                return Err(Error::Logs {
                    target: format!("CloudWatch Logs in {region}"),
                    message: "no AWS credentials configured: set AWS_ACCESS_KEY_ID and \
                              AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run where a role is attached"
                        .to_owned(),
                });
            }
        }
        let mut config = aws_sdk_cloudwatchlogs::config::Builder::from(&shared)
            .retry_config(RetryConfig::disabled());
        if let Some(url) = endpoint_url {
            config = config.endpoint_url(url);
        }
        Ok(AwsLogsClient {
            client: Client::from_conf(config.build()),
            region,
        })
    }
}

/// Maps an SDK error to the kinds the copier branches on, keeping the full message.
fn api_error<E>(error: SdkError<E>) -> ApiError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let message = DisplayErrorContext(&error).to_string();
    let kind = match &error {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            ApiErrorKind::Unavailable
        }
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            match error.code().unwrap_or_default() {
                "ThrottlingException" | "LimitExceededException" | "TooManyRequestsException" => {
                    ApiErrorKind::Throttled
                }
                "ServiceUnavailableException" | "InternalFailure" => ApiErrorKind::Unavailable,
                "ResourceNotFoundException" => ApiErrorKind::NotFound,
                "ResourceAlreadyExistsException" => ApiErrorKind::AlreadyExists,
                "InvalidParameterException"
                    if error
                        .message()
                        .is_some_and(|m| m.to_ascii_lowercase().contains("token")) =>
                {
                    ApiErrorKind::ExpiredToken
                }
                "InvalidParameterException" | "InvalidOperationException" => ApiErrorKind::Invalid,
                "AccessDeniedException"
                | "UnrecognizedClientException"
                | "ExpiredTokenException"
                | "InvalidClientTokenId"
                | "InvalidSignatureException" => ApiErrorKind::Auth,
                _ if status == 429 => ApiErrorKind::Throttled,
                _ if status >= 500 => ApiErrorKind::Unavailable,
                _ => ApiErrorKind::Other,
            }
        }
        _ => ApiErrorKind::Other,
    };
    ApiError::new(kind, message)
}

impl LogsClient for AwsLogsClient {
    fn region(&self) -> &str {
        &self.region
    }

    fn describe_group<'a>(&'a self, name: &'a str) -> BoxFuture<'a, ApiResult<Option<GroupInfo>>> {
        Box::pin(async move {
            let mut token = None;
            loop {
                let out = self
                    .client
                    .describe_log_groups()
                    .log_group_name_prefix(name)
                    .set_next_token(token)
                    .send()
                    .await
                    .map_err(api_error)?;
                if let Some(group) = out
                    .log_groups()
                    .iter()
                    .find(|g| g.log_group_name() == Some(name))
                {
                    return Ok(Some(GroupInfo {
                        name: name.to_owned(),
                        retention_days: group.retention_in_days(),
                    }));
                }
                match out.next_token() {
                    Some(next) if !next.is_empty() => token = Some(next.to_owned()),
                    _ => return Ok(None),
                }
            }
        })
    }

    fn create_group<'a>(&'a self, name: &'a str) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async move {
            self.client
                .create_log_group()
                .log_group_name(name)
                .send()
                .await
                .map_err(api_error)?;
            Ok(())
        })
    }

    fn describe_streams<'a>(
        &'a self,
        group: &'a str,
        prefix: Option<&'a str>,
        token: Option<String>,
    ) -> BoxFuture<'a, ApiResult<StreamPage>> {
        Box::pin(async move {
            let out = self
                .client
                .describe_log_streams()
                .log_group_name(group)
                .set_log_stream_name_prefix(prefix.map(str::to_owned))
                .set_next_token(token)
                .limit(STREAMS_PER_PAGE)
                .send()
                .await
                .map_err(api_error)?;
            Ok(StreamPage {
                streams: out
                    .log_streams()
                    .iter()
                    .filter_map(|s| {
                        Some(StreamInfo {
                            name: s.log_stream_name()?.to_owned(),
                            creation_time: s.creation_time().unwrap_or_default(),
                            first_event: s.first_event_timestamp(),
                            last_event: s.last_event_timestamp(),
                            last_ingestion: s.last_ingestion_time(),
                        })
                    })
                    .collect(),
                next_token: out
                    .next_token()
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned),
            })
        })
    }

    fn get_events<'a>(
        &'a self,
        group: &'a str,
        stream: &'a str,
        token: Option<String>,
        start: Option<i64>,
        end: Option<i64>,
    ) -> BoxFuture<'a, ApiResult<EventPage>> {
        Box::pin(async move {
            let out = self
                .client
                .get_log_events()
                .log_group_name(group)
                .log_stream_name(stream)
                .start_from_head(true)
                .set_next_token(token)
                .set_start_time(start)
                .set_end_time(end)
                .send()
                .await
                .map_err(api_error)?;
            Ok(EventPage {
                events: out
                    .events()
                    .iter()
                    .map(|e| LogEvent {
                        timestamp: e.timestamp().unwrap_or_default(),
                        ingestion_time: e.ingestion_time().unwrap_or_default(),
                        message: e.message().unwrap_or_default().to_owned(),
                    })
                    .collect(),
                next_forward_token: out.next_forward_token().map(str::to_owned),
            })
        })
    }

    fn filter_events<'a>(
        &'a self,
        group: &'a str,
        streams: &'a [String],
        token: Option<String>,
        start: Option<i64>,
        end: Option<i64>,
    ) -> BoxFuture<'a, ApiResult<FilterPage>> {
        Box::pin(async move {
            let out = self
                .client
                .filter_log_events()
                .log_group_name(group)
                .set_log_stream_names(Some(streams.to_vec()))
                .set_next_token(token)
                .set_start_time(start)
                .set_end_time(end)
                .send()
                .await
                .map_err(api_error)?;
            Ok(FilterPage {
                events: out
                    .events()
                    .iter()
                    .filter_map(|e| {
                        Some((
                            e.log_stream_name()?.to_owned(),
                            LogEvent {
                                timestamp: e.timestamp().unwrap_or_default(),
                                ingestion_time: e.ingestion_time().unwrap_or_default(),
                                message: e.message().unwrap_or_default().to_owned(),
                            },
                        ))
                    })
                    .collect(),
                next_token: out
                    .next_token()
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned),
            })
        })
    }

    fn create_stream<'a>(
        &'a self,
        group: &'a str,
        stream: &'a str,
    ) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async move {
            self.client
                .create_log_stream()
                .log_group_name(group)
                .log_stream_name(stream)
                .send()
                .await
                .map_err(api_error)?;
            Ok(())
        })
    }

    fn put_events<'a>(
        &'a self,
        group: &'a str,
        stream: &'a str,
        events: &'a [LogEvent],
    ) -> BoxFuture<'a, ApiResult<PutOutcome>> {
        Box::pin(async move {
            let mut input = Vec::with_capacity(events.len());
            for event in events {
                let built = InputLogEvent::builder()
                    .timestamp(event.timestamp)
                    .message(event.message.clone())
                    .build()
                    .map_err(|e| ApiError::new(ApiErrorKind::Invalid, e.to_string()))?;
                input.push(built);
            }
            let out = self
                .client
                .put_log_events()
                .log_group_name(group)
                .log_stream_name(stream)
                .set_log_events(Some(input))
                .send()
                .await
                .map_err(api_error)?;
            Ok(PutOutcome {
                rejected: out.rejected_log_events_info().map(|r| RejectedInfo {
                    too_new_start_index: r.too_new_log_event_start_index(),
                    too_old_end_index: r.too_old_log_event_end_index(),
                    expired_end_index: r.expired_log_event_end_index(),
                }),
            })
        })
    }
}
