//! Reading a dataset back: its manifests, and its files checked against them.
//!
//! A reader trusts only what a manifest lists, and a file only once its size and SHA-256 match
//! the manifest's: a truncated upload, a corrupt copy or a file replaced by hand is refused with
//! the object's name before a single row of it is used.

use arrow::array::RecordBatch;
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sha2::{Digest, Sha256};

use crate::dataset::layout;
use crate::dataset::manifest::{FileEntry, Manifest};
use crate::dataset::parquet::hex;
use crate::error::{Error, Result};
use crate::store::Store;

/// Every manifest at the store's root, oldest snapshot first.
///
/// # Errors
/// [`Error::Store`] when listing or reading fails; [`Error::Dataset`] for a manifest that is
/// not valid JSON of the expected shape.
pub async fn manifests(store: &dyn Store) -> Result<Vec<Manifest>> {
    let mut found = Vec::new();
    for object in store.list(&format!("{}/", layout::MANIFEST_DIR)).await? {
        if !object.key.ends_with(".json") {
            continue;
        }
        let body = store.get(&object.key).await?;
        let manifest: Manifest = serde_json::from_slice(&body).map_err(|e| Error::Dataset {
            object: object.key.clone(),
            message: format!("not a valid contrail manifest ({e}); remove it or re-export"),
        })?;
        found.push(manifest);
    }
    found.sort_by(|a, b| a.snapshot_time.cmp(&b.snapshot_time));
    Ok(found)
}

/// The manifest of export `export_id`, or the newest one when `None`.
///
/// # Errors
/// [`Error::Dataset`] when the store holds no (such) manifest, naming what it does hold.
pub async fn manifest(store: &dyn Store, export_id: Option<&str>) -> Result<Manifest> {
    let all = manifests(store).await?;
    let ids = || {
        all.iter()
            .map(|m| m.export_id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let chosen = match export_id {
        Some(id) => all.iter().find(|m| m.export_id == id),
        None => all.last(),
    };
    match (chosen, export_id) {
        (Some(manifest), _) => Ok(manifest.clone()),
        (None, Some(id)) => Err(Error::Dataset {
            object: format!("{}/{}", store.url(), layout::manifest_key(id)),
            message: format!("no such export; the exports here are: {}", ids()),
        }),
        (None, None) => Err(Error::Dataset {
            object: store.url().to_owned(),
            message: format!(
                "no manifest under {}/: this is not a contrail dataset, or no export to it \
                 finished (a dataset is complete only once its manifest is written)",
                layout::MANIFEST_DIR
            ),
        }),
    }
}

/// Reads one data file and checks it against its manifest entry.
///
/// # Errors
/// [`Error::Store`] when the object cannot be read (a missing file says so);
/// [`Error::Dataset`] when its size or checksum differs from the manifest's.
pub async fn read_checked(store: &dyn Store, file: &FileEntry) -> Result<Bytes> {
    let bytes = store.get(&file.key).await?;
    verify(file, &bytes)?;
    Ok(bytes)
}

/// Checks `bytes` against the size and SHA-256 the manifest recorded for `file`.
///
/// # Errors
/// [`Error::Dataset`] naming the file and what differs.
pub fn verify(file: &FileEntry, bytes: &[u8]) -> Result<()> {
    if bytes.len() as u64 != file.bytes {
        return Err(Error::Dataset {
            object: file.key.clone(),
            message: format!(
                "{} bytes, but the manifest says {}: the file is truncated or was replaced; \
                 re-export the dataset",
                bytes.len(),
                file.bytes
            ),
        });
    }
    let digest = hex(&Sha256::digest(bytes));
    if digest != file.sha256 {
        return Err(Error::Dataset {
            object: file.key.clone(),
            message: "its SHA-256 does not match the manifest: the file is corrupt or was \
                      modified; re-export the dataset"
                .to_owned(),
        });
    }
    Ok(())
}

/// Decodes a checked Parquet file into batches of at most `batch_rows` rows.
///
/// # Errors
/// [`Error::Dataset`] naming the file when it is not readable Parquet.
pub fn parquet_batches(
    key: &str,
    bytes: Bytes,
    batch_rows: usize,
) -> Result<impl Iterator<Item = Result<RecordBatch>> + use<>> {
    let corrupt = |what: String| Error::Dataset {
        object: key.to_owned(),
        message: format!("not readable Parquet ({what}); re-export the dataset"),
    };
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|e| corrupt(e.to_string()))?
        .with_batch_size(batch_rows)
        .build()
        .map_err(|e| corrupt(e.to_string()))?;
    let key = key.to_owned();
    Ok(reader.map(move |batch| {
        batch.map_err(|e| Error::Dataset {
            object: key.clone(),
            message: format!("not readable Parquet ({e}); re-export the dataset"),
        })
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(data: &[u8]) -> FileEntry {
        FileEntry {
            key: "t/part-1.parquet".to_owned(),
            partition: None,
            rows: 1,
            bytes: data.len() as u64,
            sha256: hex(&Sha256::digest(data)),
        }
    }

    #[test]
    fn verify_accepts_the_recorded_bytes_only() {
        let file = entry(b"PAR1 data PAR1");
        verify(&file, b"PAR1 data PAR1").unwrap();
        let short = verify(&file, b"PAR1 data").unwrap_err().to_string();
        assert!(short.contains("truncated"), "{short}");
        let changed = verify(&file, b"PAR1 dota PAR1").unwrap_err().to_string();
        assert!(changed.contains("SHA-256"), "{changed}");
    }

    #[test]
    fn garbage_is_not_parquet() {
        let error = parquet_batches("t/x.parquet", Bytes::from_static(b"nope"), 10)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            error.contains("t/x.parquet") && error.contains("Parquet"),
            "{error}"
        );
    }
}
