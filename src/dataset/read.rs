//! Reading a dataset back: its manifests, and its files checked against them.
//!
//! A reader trusts only what a manifest lists, and a file only once its size and SHA-256 match
//! the manifest's: a truncated upload, a corrupt copy or a file replaced by hand is refused with
//! the object's name before a single row of it is used.

use std::io::{Seek, Write};

use arrow::array::RecordBatch;
use bytes::Bytes;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::file::reader::ChunkReader;
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

/// Data files up to this size are read into memory; larger ones are downloaded in pieces of this
/// size into a temporary file and decoded from there, so reading a file holds one piece, not the
/// whole file (an export writes files of up to `--max-file-mib`, 256 MiB by default).
pub const IN_MEMORY_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// A data file checked against its manifest entry, ready to decode.
#[derive(Debug)]
pub enum CheckedFile {
    /// A small file, in memory.
    Memory(Bytes),
    /// A large file, in an anonymous temporary file (gone once closed).
    Disk(std::fs::File),
}

impl CheckedFile {
    /// The Arrow schema of the file, from its footer.
    ///
    /// # Errors
    /// [`Error::Dataset`] naming `key` when the file is not readable Parquet.
    pub fn schema(&self, key: &str) -> Result<arrow::datatypes::SchemaRef> {
        let options = ArrowReaderOptions::default();
        match self {
            CheckedFile::Memory(bytes) => ArrowReaderMetadata::load(bytes, options),
            CheckedFile::Disk(file) => ArrowReaderMetadata::load(file, options),
        }
        .map(|metadata| metadata.schema().clone())
        .map_err(|e| Error::Dataset {
            object: key.to_owned(),
            message: format!("not readable Parquet ({e}); re-export the dataset"),
        })
    }

    /// Decodes the file into batches of at most `batch_rows` rows ([`parquet_batches`]).
    ///
    /// # Errors
    /// [`Error::Dataset`] naming `key` when the file is not readable Parquet.
    pub fn batches(
        self,
        key: &str,
        batch_rows: usize,
    ) -> Result<Box<dyn Iterator<Item = Result<RecordBatch>> + Send>> {
        Ok(match self {
            CheckedFile::Memory(bytes) => Box::new(parquet_batches(key, bytes, batch_rows)?),
            CheckedFile::Disk(file) => Box::new(parquet_batches(key, file, batch_rows)?),
        })
    }
}

/// Fetches one data file and checks it against its manifest entry: into memory up to
/// [`IN_MEMORY_FILE_BYTES`], else piece by piece into a temporary file (in `TMPDIR`).
///
/// # Errors
/// As [`read_checked`]; [`Error::Dataset`] also when the temporary file cannot be written.
pub async fn fetch_checked(store: &dyn Store, file: &FileEntry) -> Result<CheckedFile> {
    fetch_checked_in_pieces(store, file, IN_MEMORY_FILE_BYTES).await
}

async fn fetch_checked_in_pieces(
    store: &dyn Store,
    file: &FileEntry,
    piece: u64,
) -> Result<CheckedFile> {
    if file.bytes <= piece {
        return read_checked(store, file).await.map(CheckedFile::Memory);
    }
    // The size first: a truncated or replaced object is refused before it is downloaded.
    let size = match store.head(&file.key).await? {
        Some(object) => object.size,
        // Missing: reading it says so in the store's own words.
        None => return read_checked(store, file).await.map(CheckedFile::Memory),
    };
    if size != file.bytes {
        return Err(size_differs(file, size));
    }
    let local = |e: std::io::Error| Error::Dataset {
        object: file.key.clone(),
        message: format!(
            "cannot write it to a temporary file in {} ({e}); free space there or point TMPDIR \
             elsewhere",
            std::env::temp_dir().display()
        ),
    };
    let mut out = tempfile::tempfile().map_err(local)?;
    let mut hasher = Sha256::new();
    let mut offset = 0;
    while offset < size {
        let end = (offset + piece).min(size);
        let chunk = store.get_range(&file.key, offset..end).await?;
        if chunk.len() as u64 != end - offset {
            return Err(size_differs(file, offset + chunk.len() as u64));
        }
        // Hashing and writing 16 MiB is blocking work: off the async runtime.
        (out, hasher) = tokio::task::spawn_blocking(move || {
            hasher.update(&chunk);
            out.write_all(&chunk).map(|()| (out, hasher))
        })
        .await
        .map_err(|e| local(std::io::Error::other(e)))?
        .map_err(local)?;
        offset = end;
    }
    if hex(&hasher.finalize()) != file.sha256 {
        return Err(sha_differs(file));
    }
    out.rewind().map_err(local)?;
    Ok(CheckedFile::Disk(out))
}

fn size_differs(file: &FileEntry, bytes: u64) -> Error {
    Error::Dataset {
        object: file.key.clone(),
        message: format!(
            "{bytes} bytes, but the manifest says {}: the file is truncated or was replaced; \
             re-export the dataset",
            file.bytes
        ),
    }
}

fn sha_differs(file: &FileEntry) -> Error {
    Error::Dataset {
        object: file.key.clone(),
        message: "its SHA-256 does not match the manifest: the file is corrupt or was \
                  modified; re-export the dataset"
            .to_owned(),
    }
}

/// Checks `bytes` against the size and SHA-256 the manifest recorded for `file`.
///
/// # Errors
/// [`Error::Dataset`] naming the file and what differs.
pub fn verify(file: &FileEntry, bytes: &[u8]) -> Result<()> {
    if bytes.len() as u64 != file.bytes {
        return Err(size_differs(file, bytes.len() as u64));
    }
    if hex(&Sha256::digest(bytes)) != file.sha256 {
        return Err(sha_differs(file));
    }
    Ok(())
}

/// Decodes a checked Parquet file into batches of at most `batch_rows` rows.
///
/// # Errors
/// [`Error::Dataset`] naming the file when it is not readable Parquet.
pub fn parquet_batches<R: ChunkReader + 'static>(
    key: &str,
    source: R,
    batch_rows: usize,
) -> Result<impl Iterator<Item = Result<RecordBatch>> + use<R>> {
    let corrupt = |what: String| Error::Dataset {
        object: key.to_owned(),
        message: format!("not readable Parquet ({what}); re-export the dataset"),
    };
    let reader = ParquetRecordBatchReaderBuilder::try_new(source)
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

    /// A Parquet file of `rows` rows (an id and a non-ASCII text), several row groups.
    fn parquet_file(rows: i64) -> Vec<u8> {
        use std::sync::Arc;

        use arrow::array::{Int64Array, StringArray};
        use parquet::arrow::ArrowWriter;
        use parquet::file::properties::WriterProperties;

        let ids: Vec<i64> = (0..rows).collect();
        let texts: Vec<String> = ids.iter().map(|i| format!("zeile-{i}-ü")).collect();
        let batch = RecordBatch::try_from_iter([
            ("id", Arc::new(Int64Array::from(ids)) as _),
            ("text", Arc::new(StringArray::from(texts)) as _),
        ])
        .unwrap();
        let properties = WriterProperties::builder()
            .set_max_row_group_row_count(Some(700))
            .build();
        let mut out = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(properties)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        out
    }

    async fn rows_of(checked: CheckedFile, key: &str) -> Vec<RecordBatch> {
        checked
            .batches(key, 500)
            .unwrap()
            .collect::<Result<Vec<_>>>()
            .unwrap()
    }

    #[tokio::test]
    async fn a_large_file_is_fetched_in_pieces_checked_and_decoded_like_a_small_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::local::LocalStore::new(dir.path());
        let data = parquet_file(3_000);
        let mut file = entry(&data);
        file.rows = 3_000;
        store
            .put(&file.key, Bytes::from(data.clone()))
            .await
            .unwrap();

        let piece = (data.len() / 7) as u64;
        let pieces = fetch_checked_in_pieces(&store, &file, piece).await.unwrap();
        assert!(matches!(pieces, CheckedFile::Disk(_)));
        let whole = fetch_checked(&store, &file).await.unwrap();
        assert!(matches!(whole, CheckedFile::Memory(_)));
        let schema = pieces.schema(&file.key).unwrap();
        assert_eq!(schema.field(1).name(), "text");
        let (pieces, whole) = (
            rows_of(pieces, &file.key).await,
            rows_of(whole, &file.key).await,
        );
        assert_eq!(pieces, whole);
        assert_eq!(
            pieces.iter().map(RecordBatch::num_rows).sum::<usize>(),
            3_000
        );

        // Same size, one byte changed: the checksum catches it after the last piece.
        let mut changed = data.clone();
        changed[data.len() / 2] ^= 1;
        store.put(&file.key, Bytes::from(changed)).await.unwrap();
        let error = fetch_checked_in_pieces(&store, &file, piece)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("SHA-256"), "{error}");
        // Shorter: refused before any piece is read.
        store
            .put(&file.key, Bytes::from(data[..data.len() - 10].to_vec()))
            .await
            .unwrap();
        let error = fetch_checked_in_pieces(&store, &file, piece)
            .await
            .unwrap_err();
        let error = error.to_string();
        assert!(
            error.contains("truncated") && error.contains(&file.key),
            "{error}"
        );
        // Gone: the store says so.
        store.delete(&file.key).await.unwrap();
        let error = fetch_checked_in_pieces(&store, &file, piece)
            .await
            .unwrap_err();
        assert!(error.to_string().contains(&file.key), "{error}");
    }
}
