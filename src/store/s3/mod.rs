//! Amazon S3 (and S3-compatible servers) as a [`Store`]: the keys of a bucket under a prefix.
//!
//! Configuration comes the standard AWS way, as the AWS CLI reads it: credentials from the
//! default chain (environment, profile, SSO, web identity, ECS/EC2 roles), the region from
//! `AWS_REGION` or the profile, and an endpoint override from `AWS_ENDPOINT_URL_S3` /
//! `AWS_ENDPOINT_URL` / the profile or [`StoreOptions::with_endpoint_url`]. With an endpoint
//! override, requests use path-style addressing (`http://host/bucket/key`), which S3-compatible
//! servers expect. Retries are the SDK's standard mode (exponential backoff with jitter on
//! throttling, 5xx and transient network errors), or the mode the AWS configuration names
//! (`AWS_RETRY_MODE`), with [`StoreOptions::with_max_attempts`] attempts, else the configured
//! ones (`AWS_MAX_ATTEMPTS`, the profile's `max_attempts`), else [`DEFAULT_MAX_ATTEMPTS`]. Every request carries the SDK's default CRC32 checksum.

mod errors;
mod writer;

use std::ops::Range;
use std::sync::Arc;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use bytes::Bytes;
use futures_util::future::BoxFuture;

use super::location::{check_key, check_prefix};
use super::{DEFAULT_MAX_ATTEMPTS, ObjectInfo, ObjectWriter, Sse, Store, StoreOptions};
use crate::error::{Error, Result, StoreErrorKind};
use errors::{Intent, sdk_error};
use writer::S3Writer;

/// Environment variables that name an S3 endpoint override, in the SDK's order.
const ENDPOINT_VARIABLES: [&str; 2] = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"];

/// The keys under a prefix of one S3 bucket.
#[derive(Debug)]
pub struct S3Store {
    inner: Arc<Inner>,
}

/// What the store and its writers share.
#[derive(Debug)]
struct Inner {
    client: Client,
    bucket: String,
    /// Empty, or ending with `/`.
    prefix: String,
    url: String,
    options: StoreOptions,
    /// Attempts per request, as the client was configured.
    attempts: u32,
}

impl Inner {
    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn object(&self, key: &str) -> String {
        format!("s3://{}/{}{key}", self.bucket, self.prefix)
    }

    fn error<E>(
        &self,
        operation: &'static str,
        key: &str,
        intent: Intent,
    ) -> impl FnOnce(aws_sdk_s3::error::SdkError<E>) -> Error
    where
        E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let object = self.object(key);
        let attempts = self.attempts;
        move |e| sdk_error(operation, object, intent, attempts, e)
    }

    async fn put_object(&self, key: &str, data: Bytes, intent: Intent) -> Result<()> {
        let operation = match intent {
            Intent::CreateOnly => "put_if_absent",
            _ => "put",
        };
        let mut request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .body(ByteStream::from(data));
        if intent == Intent::CreateOnly {
            request = request.if_none_match("*");
        }
        if let Some(sse) = &self.options.sse {
            let (algorithm, key_id) = sse_headers(sse);
            request = request
                .server_side_encryption(algorithm)
                .set_ssekms_key_id(key_id);
        }
        request
            .send()
            .await
            .map_err(self.error(operation, key, intent))?;
        Ok(())
    }
}

/// The SSE header values for `sse`.
fn sse_headers(sse: &Sse) -> (ServerSideEncryption, Option<String>) {
    match sse {
        Sse::S3 => (ServerSideEncryption::Aes256, None),
        Sse::Kms { key_id } => (ServerSideEncryption::AwsKms, key_id.clone()),
    }
}

impl S3Store {
    /// Loads the AWS configuration and builds a client for `s3://bucket/prefix`. Makes no
    /// request; [`Store::check`] does.
    ///
    /// # Errors
    /// [`Error::StoreConfig`] when no region is configured.
    pub async fn connect(bucket: String, prefix: String, options: StoreOptions) -> Result<S3Store> {
        let url = format!("s3://{bucket}/{prefix}");
        let shared = aws_config::defaults(BehaviorVersion::latest()).load().await;
        if shared.region().is_none() {
            return Err(Error::StoreConfig {
                location: url,
                message: "no AWS region configured: set AWS_REGION (or the profile's region) to \
                          the bucket's region"
                    .to_owned(),
            });
        }
        let retry = retry_config(
            options.max_attempts,
            shared.retry_config(),
            RETRY_VARIABLES.iter().any(|name| env_set(name)),
        );
        let attempts = retry.max_attempts();
        let mut config = aws_sdk_s3::config::Builder::from(&shared).retry_config(retry);
        if let Some(endpoint) = &options.endpoint_url {
            config = config.endpoint_url(endpoint);
        }
        if options.endpoint_url.is_some()
            || shared.endpoint_url().is_some()
            || endpoint_in_environment()
        {
            config = config.force_path_style(true);
        }
        let client = Client::from_conf(config.build());
        Ok(S3Store {
            inner: Arc::new(Inner {
                client,
                bucket,
                prefix,
                url,
                options,
                attempts,
            }),
        })
    }
}

/// Environment variables of the SDK's retry settings.
const RETRY_VARIABLES: [&str; 2] = ["AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE"];

/// The retry settings of S3 requests: `attempts` when given; else the AWS configuration's
/// (`configured`, from the environment or the profile) when the user set it, which
/// `from_environment` says or a difference from the SDK's default shows; else the SDK's
/// standard mode with [`DEFAULT_MAX_ATTEMPTS`] attempts.
fn retry_config(
    attempts: Option<u32>,
    configured: Option<&RetryConfig>,
    from_environment: bool,
) -> RetryConfig {
    let sdk_default = RetryConfig::standard();
    let configured = configured.filter(|c| from_environment || **c != sdk_default);
    match (attempts, configured) {
        (Some(n), Some(c)) => c.clone().with_max_attempts(n),
        (Some(n), None) => sdk_default.with_max_attempts(n),
        (None, Some(c)) => c.clone(),
        (None, None) => sdk_default.with_max_attempts(DEFAULT_MAX_ATTEMPTS),
    }
}

/// Whether the environment overrides the S3 endpoint (and the SDK is not told to ignore it).
fn endpoint_in_environment() -> bool {
    let ignored = std::env::var("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
        .is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    !ignored && ENDPOINT_VARIABLES.iter().any(|name| env_set(name))
}

/// Whether environment variable `name` holds a value (set but blank counts as unset).
fn env_set(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.trim().is_empty())
}

/// A key check failure, or the key itself.
fn checked(key: &str) -> Result<String> {
    check_key(key).map(|()| key.to_owned())
}

impl Store for S3Store {
    fn url(&self) -> &str {
        &self.inner.url
    }

    fn check(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let inner = &self.inner;
            inner
                .client
                .head_bucket()
                .bucket(&inner.bucket)
                .send()
                .await
                .map_err(|e| {
                    sdk_error(
                        "check",
                        format!("s3://{}", inner.bucket),
                        Intent::CheckBucket,
                        inner.attempts,
                        e,
                    )
                })?;
            Ok(())
        })
    }

    fn put(&self, key: &str, data: Bytes) -> BoxFuture<'_, Result<ObjectInfo>> {
        let key = checked(key);
        Box::pin(async move {
            let key = key?;
            let size = data.len() as u64;
            self.inner.put_object(&key, data, Intent::Plain).await?;
            Ok(ObjectInfo { key, size })
        })
    }

    fn put_if_absent(&self, key: &str, data: Bytes) -> BoxFuture<'_, Result<ObjectInfo>> {
        let key = checked(key);
        Box::pin(async move {
            let key = key?;
            let size = data.len() as u64;
            self.inner
                .put_object(&key, data, Intent::CreateOnly)
                .await?;
            Ok(ObjectInfo { key, size })
        })
    }

    fn create(&self, key: &str) -> BoxFuture<'_, Result<Box<dyn ObjectWriter>>> {
        let key = checked(key);
        Box::pin(async move {
            let writer = S3Writer::new(Arc::clone(&self.inner), key?);
            Ok(Box::new(writer) as Box<dyn ObjectWriter>)
        })
    }

    fn get(&self, key: &str) -> BoxFuture<'_, Result<Bytes>> {
        let key = checked(key);
        Box::pin(async move {
            let key = key?;
            let inner = &self.inner;
            let response = inner
                .client
                .get_object()
                .bucket(&inner.bucket)
                .key(inner.full_key(&key))
                .send()
                .await
                .map_err(inner.error("get", &key, Intent::Plain))?;
            read_body(inner, "get", &key, response.body).await
        })
    }

    fn get_range(&self, key: &str, range: Range<u64>) -> BoxFuture<'_, Result<Bytes>> {
        let key = checked(key);
        Box::pin(async move {
            let key = key?;
            let inner = &self.inner;
            let out_of_range = |size: Option<u64>| Error::Store {
                kind: StoreErrorKind::Other,
                operation: "get_range",
                object: inner.object(&key),
                message: format!(
                    "range {}..{} is not within the object{}",
                    range.start,
                    range.end,
                    size.map(|s| format!(" ({s} bytes)")).unwrap_or_default()
                ),
                source: None,
            };
            if range.start >= range.end {
                // S3 cannot express an empty range; answer from the object's size.
                let size = self
                    .head(&key)
                    .await?
                    .map(|o| o.size)
                    .ok_or_else(|| Error::Store {
                        kind: StoreErrorKind::NotFound,
                        operation: "get_range",
                        object: inner.object(&key),
                        message: "no such object".to_owned(),
                        source: None,
                    })?;
                return if range.start == range.end && range.end <= size {
                    Ok(Bytes::new())
                } else {
                    Err(out_of_range(Some(size)))
                };
            }
            let response = inner
                .client
                .get_object()
                .bucket(&inner.bucket)
                .key(inner.full_key(&key))
                .range(format!("bytes={}-{}", range.start, range.end - 1))
                .send()
                .await
                .map_err(inner.error("get_range", &key, Intent::Plain))?;
            let size = response
                .content_range()
                .and_then(|r| r.rsplit('/').next())
                .and_then(|s| s.parse::<u64>().ok());
            let bytes = read_body(inner, "get_range", &key, response.body).await?;
            if bytes.len() as u64 != range.end - range.start {
                return Err(out_of_range(size));
            }
            Ok(bytes)
        })
    }

    fn head(&self, key: &str) -> BoxFuture<'_, Result<Option<ObjectInfo>>> {
        let key = checked(key);
        Box::pin(async move {
            let key = key?;
            let inner = &self.inner;
            match inner
                .client
                .head_object()
                .bucket(&inner.bucket)
                .key(inner.full_key(&key))
                .send()
                .await
            {
                Ok(response) => {
                    let size = response.content_length().unwrap_or(0).max(0) as u64;
                    Ok(Some(ObjectInfo { key, size }))
                }
                Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
                Err(e) => Err(inner.error("head", &key, Intent::Plain)(e)),
            }
        })
    }

    fn list(&self, prefix: &str) -> BoxFuture<'_, Result<Vec<ObjectInfo>>> {
        let prefix = check_prefix(prefix).map(|()| prefix.to_owned());
        Box::pin(async move {
            let prefix = prefix?;
            let inner = &self.inner;
            let mut pages = inner
                .client
                .list_objects_v2()
                .bucket(&inner.bucket)
                .prefix(inner.full_key(&prefix))
                .max_keys(inner.options.list_page_size)
                .into_paginator()
                .send();
            let mut found = Vec::new();
            while let Some(page) = pages.next().await {
                let page = page.map_err(inner.error("list", &prefix, Intent::Plain))?;
                for object in page.contents() {
                    let Some(key) = object.key().and_then(|k| k.strip_prefix(&inner.prefix)) else {
                        continue;
                    };
                    // Zero-byte "folder" markers made by consoles are not objects of ours.
                    if key.is_empty() || key.ends_with('/') {
                        continue;
                    }
                    found.push(ObjectInfo {
                        key: key.to_owned(),
                        size: object.size().unwrap_or(0).max(0) as u64,
                    });
                }
            }
            found.sort();
            Ok(found)
        })
    }

    fn delete(&self, key: &str) -> BoxFuture<'_, Result<()>> {
        let key = checked(key);
        Box::pin(async move {
            let key = key?;
            let inner = &self.inner;
            inner
                .client
                .delete_object()
                .bucket(&inner.bucket)
                .key(inner.full_key(&key))
                .send()
                .await
                .map_err(inner.error("delete", &key, Intent::Plain))?;
            Ok(())
        })
    }
}

/// Reads a response body to the end.
async fn read_body(
    inner: &Inner,
    operation: &'static str,
    key: &str,
    body: ByteStream,
) -> Result<Bytes> {
    body.collect()
        .await
        .map(|data| data.into_bytes())
        .map_err(|e| Error::Store {
            kind: StoreErrorKind::Other,
            operation,
            object: inner.object(key),
            message: format!(
                "reading the response failed: {}; try again",
                aws_sdk_s3::error::DisplayErrorContext(&e)
            ),
            source: Some(Box::new(e)),
        })
}

#[cfg(test)]
mod tests {
    use aws_config::retry::RetryMode;

    use super::*;

    #[test]
    fn attempts_come_from_the_option_else_the_users_aws_configuration_else_five() {
        let adaptive = RetryConfig::adaptive().with_max_attempts(9);
        let sdk_default = RetryConfig::standard();
        // Nothing configured: the SDK's default is raised to ours.
        let retry = retry_config(None, Some(&sdk_default), false);
        assert_eq!(retry.max_attempts(), DEFAULT_MAX_ATTEMPTS);
        assert_eq!(retry.mode(), RetryMode::Standard);
        assert_eq!(retry_config(None, None, false).max_attempts(), 5);
        // A profile or environment setting is kept, mode and all.
        assert_eq!(retry_config(None, Some(&adaptive), false), adaptive);
        // AWS_MAX_ATTEMPTS=3 equals the SDK's default, but the environment says it was set.
        assert_eq!(
            retry_config(None, Some(&sdk_default), true).max_attempts(),
            3
        );
        // The option wins over both, keeping the configured mode.
        let retry = retry_config(Some(2), Some(&adaptive), true);
        assert_eq!(
            (retry.max_attempts(), retry.mode()),
            (2, RetryMode::Adaptive)
        );
        assert_eq!(retry_config(Some(1), None, false).max_attempts(), 1);
    }
}
