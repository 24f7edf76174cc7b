//! Fernet-encrypted values (variable values, connection passwords and extras) moving between
//! environments: decrypted with the source's keys, encrypted again with the target's first key
//! (Airflow's MultiFernet: the first key encrypts, any key decrypts). Ciphertext is copied as
//! is only when the user states both environments share their keys. No value, plain or
//! encrypted, is ever put in a message.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, StringArray};
use fernet::{Fernet, MultiFernet};

use crate::error::{Error, Result};

/// The Fernet keys of both environments, as Airflow's `[core] fernet_key` holds them
/// (comma-separated, first key encrypts). `Debug` prints no key.
#[derive(Clone, Default)]
pub struct FernetKeys {
    source: Option<Arc<MultiFernet>>,
    target: Option<Arc<MultiFernet>>,
    same: bool,
}

impl std::fmt::Debug for FernetKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FernetKeys")
            .field("source", &self.source.as_ref().map(|_| "REDACTED"))
            .field("target", &self.target.as_ref().map(|_| "REDACTED"))
            .field("same", &self.same)
            .finish()
    }
}

impl FernetKeys {
    /// Keys to decrypt with (`source`) and to encrypt with (`target`); `same` states that both
    /// environments use the same keys, so ciphertext may be copied as is.
    ///
    /// # Errors
    /// [`Error::Import`] when a key is not 32 bytes of URL-safe base64, or only one side is
    /// given.
    pub fn new(source: Option<&str>, target: Option<&str>, same: bool) -> Result<FernetKeys> {
        let source = source
            .map(|k| parse("--source-fernet-key", k))
            .transpose()?;
        let target = target
            .map(|k| parse("--target-fernet-key", k))
            .transpose()?;
        if source.is_some() != target.is_some() {
            return Err(secret_error(
                "give both --source-fernet-key and --target-fernet-key (encrypted values are \
                 decrypted with the first and encrypted again with the second), or neither",
            ));
        }
        Ok(FernetKeys {
            source: source.map(Arc::new),
            target: target.map(Arc::new),
            same,
        })
    }

    /// Whether values will be re-encrypted.
    pub fn rekeys(&self) -> bool {
        self.source.is_some()
    }

    /// Re-encrypts `value` (encrypted when `encrypted`), or passes it through when the keys
    /// allow. `what` names the value for messages (`variable "k"`), never its content.
    fn carry(&self, value: &str, what: &dyn Fn() -> String) -> Result<String> {
        match (&self.source, &self.target) {
            (Some(source), Some(target)) => {
                let plain = source.decrypt(value).map_err(|_| {
                    secret_error(&format!(
                        "the source Fernet key does not decrypt {}: check --source-fernet-key \
                         (the old environment's [core] fernet_key); nothing was written",
                        what()
                    ))
                })?;
                Ok(target.encrypt(&plain))
            }
            _ if self.same => Ok(value.to_owned()),
            _ => Err(secret_error(&format!(
                "{} is Fernet-encrypted with the source environment's key; pass \
                 --source-fernet-key and --target-fernet-key to re-encrypt it, or \
                 --same-fernet-key if both environments use the same key; nothing was written",
                what()
            ))),
        }
    }

    /// Carries the encrypted values of one batch of `table` (`variable` or `connection`);
    /// other tables pass through unchanged.
    ///
    /// # Errors
    /// [`Error::Import`] when a value cannot be carried (no keys, or a key that does not
    /// decrypt it).
    pub(crate) fn carry_batch(&self, table: &str, batch: RecordBatch) -> Result<RecordBatch> {
        let pairs: &[(&str, &str)] = match table {
            "variable" => &[("val", "is_encrypted")],
            "connection" => &[
                ("password", "is_encrypted"),
                ("extra", "is_extra_encrypted"),
            ],
            _ => return Ok(batch),
        };
        let name_column = if table == "variable" {
            "key"
        } else {
            "conn_id"
        };
        let names = batch
            .column_by_name(name_column)
            .and_then(|c| c.as_string_opt::<i32>().cloned());
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        for (value_name, flag_name) in pairs {
            let (Ok(value_at), Ok(flag_at)) = (
                batch.schema().index_of(value_name),
                batch.schema().index_of(flag_name),
            ) else {
                continue;
            };
            let (Some(values), Some(flags)) = (
                batch.column(value_at).as_string_opt::<i32>(),
                batch.column(flag_at).as_boolean_opt(),
            ) else {
                continue;
            };
            let mut out = Vec::with_capacity(values.len());
            for row in 0..values.len() {
                let encrypted = flags.is_valid(row) && flags.value(row);
                if values.is_null(row) || !encrypted {
                    out.push(values.is_valid(row).then(|| values.value(row).to_owned()));
                    continue;
                }
                let what = || {
                    let name = names
                        .as_ref()
                        .filter(|n| n.is_valid(row))
                        .map_or("?", |n| n.value(row));
                    format!("{value_name} of {table} {name:?}")
                };
                out.push(Some(self.carry(values.value(row), &what)?));
            }
            columns[value_at] = Arc::new(StringArray::from(out));
            columns[flag_at] = Arc::new(BooleanArray::from(
                (0..flags.len())
                    .map(|row| flags.is_valid(row).then(|| flags.value(row)))
                    .collect::<Vec<_>>(),
            ));
        }
        RecordBatch::try_new(batch.schema(), columns).map_err(|e| Error::Import {
            table: table.to_owned(),
            message: format!("rebuilding a batch after re-encryption: {e}"),
        })
    }

    /// Whether two values encrypted with the target's key hold the same plaintext (for
    /// verification, where each run encrypts anew); `None` without keys.
    pub(crate) fn same_plaintext(&self, a: &str, b: &str) -> Option<bool> {
        let target = self.target.as_ref()?;
        Some(match (target.decrypt(a), target.decrypt(b)) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        })
    }
}

fn parse(option: &str, text: &str) -> Result<MultiFernet> {
    let keys: Option<Vec<Fernet>> = text
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(Fernet::new)
        .collect();
    match keys {
        Some(keys) if !keys.is_empty() => Ok(MultiFernet::new(keys)),
        _ => Err(secret_error(&format!(
            "{option} is not a Fernet key (32 bytes of URL-safe base64; several may be given \
             separated by commas, as in Airflow's [core] fernet_key)"
        ))),
    }
}

fn secret_error(message: &str) -> Error {
    Error::Import {
        table: "variable/connection".to_owned(),
        message: message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn variables(values: &[(&str, Option<&str>, bool)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("key", DataType::Utf8, true),
            Field::new("val", DataType::Utf8, true),
            Field::new("is_encrypted", DataType::Boolean, true),
        ]));
        let keys: Vec<_> = values.iter().map(|v| Some(v.0)).collect();
        let vals: Vec<_> = values.iter().map(|v| v.1).collect();
        let flags: Vec<_> = values.iter().map(|v| Some(v.2)).collect();
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(keys)),
                Arc::new(StringArray::from(vals)),
                Arc::new(BooleanArray::from(flags)),
            ],
        )
        .unwrap()
    }

    #[test]
    fn re_encrypts_with_the_target_key_and_keeps_plaintext() {
        let (old, new) = (Fernet::generate_key(), Fernet::generate_key());
        let token = Fernet::new(&old).unwrap().encrypt(b"s3cret");
        let batch = variables(&[("a", Some(&token), true), ("b", Some("plain"), false)]);
        let keys = FernetKeys::new(Some(&old), Some(&format!("{new},{old}")), false).unwrap();
        let out = keys.carry_batch("variable", batch).unwrap();
        let vals = out.column(1).as_string::<i32>();
        assert_ne!(vals.value(0), token);
        assert_eq!(
            Fernet::new(&new).unwrap().decrypt(vals.value(0)).unwrap(),
            b"s3cret"
        );
        assert_eq!(vals.value(1), "plain");
        let again = Fernet::new(&new).unwrap().encrypt(b"s3cret");
        assert_eq!(keys.same_plaintext(&again, vals.value(0)), Some(true));
    }

    #[test]
    fn a_wrong_key_or_no_key_is_refused_without_the_value() {
        let token = Fernet::new(&Fernet::generate_key())
            .unwrap()
            .encrypt(b"s3cret");
        let batch = variables(&[("api_token", Some(&token), true)]);
        let wrong = FernetKeys::new(
            Some(&Fernet::generate_key()),
            Some(&Fernet::generate_key()),
            false,
        )
        .unwrap();
        let error = wrong
            .carry_batch("variable", batch.clone())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("does not decrypt") && error.contains("api_token"),
            "{error}"
        );
        assert!(!error.contains(&token) && !error.contains("s3cret"));
        let none = FernetKeys::default()
            .carry_batch("variable", batch.clone())
            .unwrap_err();
        assert!(none.to_string().contains("--same-fernet-key"), "{none}");
        let same = FernetKeys::new(None, None, true).unwrap();
        let out = same.carry_batch("variable", batch).unwrap();
        assert_eq!(out.column(1).as_string::<i32>().value(0), token);
    }

    #[test]
    fn keys_are_checked_and_never_printed() {
        assert!(FernetKeys::new(Some("short"), Some("short"), false).is_err());
        let key = Fernet::generate_key();
        assert!(FernetKeys::new(Some(&key), None, false).is_err());
        let keys = FernetKeys::new(Some(&key), Some(&key), false).unwrap();
        assert!(!format!("{keys:?}").contains(&key));
    }
}
