//! S3 SDK errors rendered as [`Error::Store`]: the real cause, a kind that callers branch on,
//! and what the user can do.
//!
//! The SDK's own `Display` says only "service error"; [`DisplayErrorContext`] says the cause but
//! then appends the `Debug` dump of the whole response (headers, XML body), which is no message
//! for a user. So the message shows S3's error code, message, HTTP status and request id for
//! service errors, and the `Display` chain of causes otherwise (what `DisplayErrorContext`
//! prints before the dump); the SDK error itself stays attached as the `source`.

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::error::{Error, StoreErrorKind};

/// What the caller was doing, which changes what an error means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Intent {
    /// Anything but the two below.
    Plain,
    /// A create-only write: a failed precondition means the object exists.
    CreateOnly,
    /// The preflight bucket check: a bare 404 means the bucket is missing.
    CheckBucket,
}

/// Wraps an SDK error from `operation` on `object`.
pub(super) fn sdk_error<E>(
    operation: &'static str,
    object: String,
    intent: Intent,
    attempts: u32,
    err: SdkError<E>,
) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = err.code().map(str::to_owned);
    let status = err.raw_response().map(|r| r.status().as_u16());
    let bucket_region = err
        .raw_response()
        .and_then(|r| r.headers().get("x-amz-bucket-region"))
        .map(str::to_owned);
    // Everything, the Debug dump included, is searched for causes the SDK reports only there
    // (e.g. `CredentialsNotLoaded`).
    let everything = DisplayErrorContext(&err).to_string();
    let rendered = render(&err, status);
    let facts = Facts {
        code: code.as_deref(),
        status,
        intent,
        rendered: &everything,
        attempts,
        bucket_region: bucket_region.as_deref(),
    };
    let kind = facts.kind();
    let message = match facts.hint() {
        Some(hint) => format!("{hint} ({rendered})"),
        None => rendered.clone(),
    };
    Error::Store {
        kind,
        operation,
        object,
        message,
        source: Some(Box::new(err)),
    }
}

/// S3's code, message, status and request id, or else the chain of causes.
fn render<E>(err: &SdkError<E>, status: Option<u16>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    if let Some(code) = err.code() {
        let mut text = code.to_owned();
        if let Some(message) = err.message() {
            text.push_str(": ");
            text.push_str(message);
        }
        let mut details = Vec::new();
        if let Some(status) = status {
            details.push(format!("HTTP {status}"));
        }
        if let Some(id) = err.meta().extra("aws_request_id") {
            details.push(format!("request id {id}"));
        }
        if !details.is_empty() {
            text.push_str(&format!(" [{}]", details.join(", ")));
        }
        return text;
    }
    let mut parts: Vec<String> = Vec::new();
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        let text = e.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        current = e.source();
    }
    match status {
        Some(status) if parts.len() == 1 => format!("{} [HTTP {status}]", parts[0]),
        _ => parts.join(": "),
    }
}

/// What is known about a failed request, independent of the SDK's types.
struct Facts<'a> {
    code: Option<&'a str>,
    status: Option<u16>,
    intent: Intent,
    rendered: &'a str,
    attempts: u32,
    bucket_region: Option<&'a str>,
}

impl Facts<'_> {
    fn kind(&self) -> StoreErrorKind {
        match (self.code, self.status, self.intent) {
            (Some("NoSuchBucket"), _, _) | (_, _, Intent::CheckBucket) => StoreErrorKind::Other,
            (Some("PreconditionFailed"), _, Intent::CreateOnly)
            | (_, Some(412), Intent::CreateOnly) => StoreErrorKind::AlreadyExists,
            (Some("NoSuchKey" | "NotFound"), _, _) | (_, Some(404), _) => StoreErrorKind::NotFound,
            _ => StoreErrorKind::Other,
        }
    }

    /// A sentence saying what went wrong in the user's terms and what to do, when one is known.
    fn hint(&self) -> Option<String> {
        let attempts = self.attempts;
        let hint = match (self.code, self.status) {
            (Some("NoSuchBucket"), _) | (_, Some(404)) if self.intent == Intent::CheckBucket => {
                "the bucket does not exist: check its name in the URL, or create it".to_owned()
            }
            (Some("NoSuchBucket"), _) => {
                "the bucket does not exist: check its name in the URL, or create it".to_owned()
            }
            (Some("PreconditionFailed"), _) | (_, Some(412))
                if self.intent == Intent::CreateOnly =>
            {
                "the object already exists and was not replaced".to_owned()
            }
            (Some("NoSuchKey" | "NotFound"), _) | (_, Some(404)) => "no such object".to_owned(),
            (
                Some(
                    "InvalidAccessKeyId"
                    | "SignatureDoesNotMatch"
                    | "ExpiredToken"
                    | "InvalidToken"
                    | "TokenRefreshRequired",
                ),
                _,
            ) => "the AWS credentials were refused: refresh them (a new session token, `aws sso \
                 login`) or check AWS_ACCESS_KEY_ID / AWS_PROFILE"
                .to_owned(),
            (Some(code), _) if code.starts_with("KMS.") => {
                "the KMS key cannot be used: check the key id, that the key is enabled, and that \
                 these credentials may use it (kms:GenerateDataKey, kms:Decrypt)"
                    .to_owned()
            }
            (Some("AccessDenied" | "AllAccessDisabled"), _) | (_, Some(403)) => {
                "access denied: the credentials in use lack permission on this bucket or prefix \
                 (s3:ListBucket, s3:GetObject, s3:PutObject, s3:DeleteObject, \
                 s3:AbortMultipartUpload; with SSE-KMS also kms:GenerateDataKey and kms:Decrypt)"
                    .to_owned()
            }
            (Some("PermanentRedirect" | "AuthorizationHeaderMalformed"), _) | (_, Some(301)) => {
                match self.bucket_region {
                    Some(region) => format!(
                        "the bucket is in region {region}: set AWS_REGION={region} (or the profile's \
                     region)"
                    ),
                    None => {
                        "the bucket is in another region: set AWS_REGION to the bucket's region"
                            .to_owned()
                    }
                }
            }
            (Some("InvalidRange"), _) | (_, Some(416)) => {
                "the range reaches past the end of the object".to_owned()
            }
            (
                Some("SlowDown" | "Throttling" | "ThrottlingException" | "RequestLimitExceeded"),
                _,
            )
            | (_, Some(429 | 503)) => format!(
                "S3 kept throttling after {attempts} attempts: lower the upload concurrency or \
                 raise the attempts"
            ),
            (_, Some(500..=599)) => format!(
                "S3 kept failing with server errors after {attempts} attempts: try again later"
            ),
            _ if self.rendered.contains("CredentialsNotLoaded")
                || self
                    .rendered
                    .contains("no providers in chain provided credentials") =>
            {
                "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or \
                 AWS_PROFILE, or run where an instance or task role is available"
                    .to_owned()
            }
            (None, None) => format!(
                "could not reach S3 after {attempts} attempts: check the network, proxy and \
                 AWS_ENDPOINT_URL if one is set"
            ),
            _ => return None,
        };
        Some(hint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(code: Option<&'a str>, status: Option<u16>, intent: Intent) -> Facts<'a> {
        Facts {
            code,
            status,
            intent,
            rendered: "",
            attempts: 5,
            bucket_region: None,
        }
    }

    #[test]
    fn kinds_follow_codes_status_and_intent() {
        use StoreErrorKind::*;
        let cases = [
            (Some("NoSuchKey"), Some(404), Intent::Plain, NotFound),
            (None, Some(404), Intent::Plain, NotFound),
            (Some("NoSuchBucket"), Some(404), Intent::Plain, Other),
            (None, Some(404), Intent::CheckBucket, Other),
            (
                Some("PreconditionFailed"),
                Some(412),
                Intent::CreateOnly,
                AlreadyExists,
            ),
            (Some("PreconditionFailed"), Some(412), Intent::Plain, Other),
            (Some("AccessDenied"), Some(403), Intent::CreateOnly, Other),
            (None, None, Intent::Plain, Other),
        ];
        for (code, status, intent, kind) in cases {
            assert_eq!(
                facts(code, status, intent).kind(),
                kind,
                "{code:?} {status:?}"
            );
        }
    }

    #[test]
    fn hints_say_what_to_do() {
        let cases = [
            (
                facts(None, Some(404), Intent::CheckBucket),
                "bucket does not exist",
            ),
            (
                facts(Some("NoSuchBucket"), Some(404), Intent::Plain),
                "create it",
            ),
            (
                facts(Some("AccessDenied"), Some(403), Intent::Plain),
                "s3:PutObject",
            ),
            (
                facts(Some("InvalidAccessKeyId"), Some(403), Intent::Plain),
                "credentials",
            ),
            (
                facts(Some("KMS.NotFoundException"), Some(400), Intent::Plain),
                "KMS key",
            ),
            (
                facts(Some("SlowDown"), Some(503), Intent::Plain),
                "after 5 attempts",
            ),
            (facts(None, Some(500), Intent::Plain), "try again later"),
            (facts(None, None, Intent::Plain), "AWS_ENDPOINT_URL"),
            (
                Facts {
                    bucket_region: Some("eu-west-1"),
                    ..facts(None, Some(301), Intent::CheckBucket)
                },
                "AWS_REGION=eu-west-1",
            ),
            (
                Facts {
                    rendered: "dispatch failure: other: CredentialsNotLoaded(..)",
                    ..facts(None, None, Intent::Plain)
                },
                "no AWS credentials",
            ),
        ];
        for (facts, needle) in cases {
            let hint = facts.hint().unwrap();
            assert!(hint.contains(needle), "{hint}");
        }
        assert!(
            facts(Some("Weird"), Some(400), Intent::Plain)
                .hint()
                .is_none()
        );
    }
}
