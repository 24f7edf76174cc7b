//! Store URLs and object keys: which implementation a URL names, and which keys are valid.
//!
//! Pure string handling, no I/O. Keys are checked here once so that neither store can be asked
//! for a path outside its root.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// Where a store lives, parsed from the URL the user gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Location {
    /// A local directory: a plain path or a `file://` URL.
    Local(PathBuf),
    /// An S3 bucket and a key prefix that is empty or ends with `/`.
    S3 {
        /// The bucket name.
        bucket: String,
        /// The prefix under which every key of the store lives.
        prefix: String,
    },
}

impl Location {
    /// Parses a plain path, `file:///path`, or `s3://bucket[/prefix]`.
    ///
    /// # Errors
    /// [`Error::StoreConfig`] for an empty URL, any other scheme, a `file://` URL with a host, or
    /// an S3 URL without a bucket.
    pub(crate) fn parse(url: &str) -> Result<Location> {
        let config_error = |message: String| Error::StoreConfig {
            location: url.to_owned(),
            message,
        };
        if url.trim().is_empty() {
            return Err(config_error(
                "empty destination; give a directory or s3://bucket/prefix".to_owned(),
            ));
        }
        let Some((scheme, rest)) = split_scheme(url) else {
            return Ok(Location::Local(PathBuf::from(url)));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "file" => {
                let path = rest
                    .strip_prefix("localhost")
                    .filter(|p| p.starts_with('/'))
                    .unwrap_or(rest);
                if !path.starts_with('/') {
                    return Err(config_error(
                        "a file:// URL must name an absolute local path (file:///var/lib/x); \
                         or give the directory as a plain path"
                            .to_owned(),
                    ));
                }
                Ok(Location::Local(PathBuf::from(path)))
            }
            "s3" => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(config_error(
                        "no bucket in the URL; expected s3://bucket/prefix".to_owned(),
                    ));
                }
                let prefix = prefix.trim_matches('/');
                if !prefix.is_empty() {
                    check_segments(prefix).map_err(config_error)?;
                }
                Ok(Location::S3 {
                    bucket: bucket.to_owned(),
                    prefix: if prefix.is_empty() {
                        String::new()
                    } else {
                        format!("{prefix}/")
                    },
                })
            }
            "s3a" | "s3n" => Err(config_error(format!(
                "{scheme}:// is a Hadoop spelling; write s3://{rest}"
            ))),
            _ => Err(config_error(format!(
                "unsupported store scheme {scheme:?}; contrail writes to a local directory \
                 (a path or file:///path) or to Amazon S3 (s3://bucket/prefix)"
            ))),
        }
    }
}

/// Splits `scheme://rest` when the text starts with a URL scheme (RFC 3986 characters).
fn split_scheme(url: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    let valid = first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some((scheme, rest))
}

/// Checks an object key: a relative, `/`-separated path without empty, `.` or `..` segments.
///
/// # Errors
/// [`Error::StoreConfig`] naming the key and the rule it breaks.
pub(crate) fn check_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(key_error(key, "an object key must not be empty".to_owned()));
    }
    check_segments(key).map_err(|message| key_error(key, message))
}

/// Checks a listing prefix: empty, or a key, or a key followed by `/`.
///
/// # Errors
/// [`Error::StoreConfig`] naming the prefix and the rule it breaks.
pub(crate) fn check_prefix(prefix: &str) -> Result<()> {
    let trimmed = prefix.strip_suffix('/').unwrap_or(prefix);
    if trimmed.is_empty() {
        return if prefix.is_empty() {
            Ok(())
        } else {
            Err(key_error(
                prefix,
                "a prefix must not start with '/'".to_owned(),
            ))
        };
    }
    check_segments(trimmed).map_err(|message| key_error(prefix, message))
}

fn key_error(key: &str, message: String) -> Error {
    Error::StoreConfig {
        location: format!("object key {key:?}"),
        message,
    }
}

fn check_segments(path: &str) -> std::result::Result<(), String> {
    if path.contains(['\\', '\0']) {
        return Err("keys use '/' as separator and must not contain '\\' or NUL".to_owned());
    }
    for segment in path.split('/') {
        match segment {
            "" => {
                return Err(
                    "keys are relative paths: no leading, trailing or doubled '/'".to_owned(),
                );
            }
            "." | ".." => return Err("keys must not contain '.' or '..' segments".to_owned()),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(bucket: &str, prefix: &str) -> Location {
        Location::S3 {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        }
    }

    #[test]
    fn parses_every_supported_form() {
        let cases = [
            ("out", Location::Local(PathBuf::from("out"))),
            ("/var/lib/x", Location::Local(PathBuf::from("/var/lib/x"))),
            ("./a:b", Location::Local(PathBuf::from("./a:b"))),
            (
                "file:///var/lib/x",
                Location::Local(PathBuf::from("/var/lib/x")),
            ),
            (
                "file://localhost/tmp",
                Location::Local(PathBuf::from("/tmp")),
            ),
            ("FILE:///tmp", Location::Local(PathBuf::from("/tmp"))),
            ("s3://b", s3("b", "")),
            ("s3://b/", s3("b", "")),
            ("s3://b/airflow", s3("b", "airflow/")),
            ("s3://b/airflow/cutover/", s3("b", "airflow/cutover/")),
            ("S3://b//x//", s3("b", "x/")),
        ];
        for (url, expected) in cases {
            assert_eq!(Location::parse(url).unwrap(), expected, "{url}");
        }
    }

    #[test]
    fn refuses_what_it_cannot_serve() {
        let cases = [
            ("", "empty destination"),
            ("gs://b/x", "unsupported store scheme \"gs\""),
            ("https://b.s3.amazonaws.com/x", "unsupported store scheme"),
            ("s3a://b/x", "write s3://b/x"),
            ("s3:///x", "no bucket"),
            ("s3://b/a/../c", "'..'"),
            ("file://host/x", "absolute local path"),
        ];
        for (url, needle) in cases {
            let message = Location::parse(url).unwrap_err().to_string();
            assert!(message.contains(needle), "{url}: {message}");
        }
    }

    #[test]
    fn checks_keys_and_prefixes() {
        for key in [
            "a",
            "a/b.parquet",
            "t/date=2024-01-01/part-1-0.parquet",
            ".hidden/x",
        ] {
            check_key(key).unwrap();
        }
        for key in ["", "/a", "a/", "a//b", "./a", "a/../b", "a\\b", "a\0"] {
            assert!(check_key(key).is_err(), "{key:?}");
        }
        for prefix in ["", "a", "a/", "a/b", "a/b/", "t/date=2024"] {
            check_prefix(prefix).unwrap();
        }
        for prefix in ["/", "/a", "a//", "../a", "a//b"] {
            assert!(check_prefix(prefix).is_err(), "{prefix:?}");
        }
    }
}
