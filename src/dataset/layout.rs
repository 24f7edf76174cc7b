//! Object keys of a dataset:
//!
//! ```text
//! <table>/date=YYYY-MM-DD/part-<export_id>-<n>.parquet   one folder per table, Hive-style days
//! <table>/part-<export_id>-<n>.parquet                   tables with no time (variable, slot_pool)
//! _contrail/exports/<export_id>.json                     manifest of one export, written last
//! ```

/// Folder of manifests, relative to the dataset root. The leading `_` hides it from Athena,
/// Spark and pyarrow.
pub const MANIFEST_DIR: &str = "_contrail/exports";

/// Hive's name for the partition of rows whose partition value is NULL.
pub const NULL_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// Name of the partition column in paths.
pub const PARTITION_COLUMN: &str = "date";

/// How data files are encoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    /// Parquet, partitioned by day: what analysts' engines and `contrail import` read.
    #[default]
    Parquet,
    /// One RFC 4180 CSV file per table, not partitioned.
    Csv,
}

impl FileFormat {
    /// The name in manifests (`file_format`) and the file extension.
    pub fn name(self) -> &'static str {
        match self {
            FileFormat::Parquet => "parquet",
            FileFormat::Csv => "csv",
        }
    }
}

/// The partition folder for a day (`YYYY-MM-DD`), or for rows with no time.
pub fn partition_dir(day: Option<&str>) -> String {
    format!("{PARTITION_COLUMN}={}", day.unwrap_or(NULL_PARTITION))
}

/// Key of data file number `n` of `table` in `partition` (`None` for unpartitioned tables).
pub fn data_key(
    table: &str,
    partition: Option<&str>,
    export_id: &str,
    n: usize,
    extension: &str,
) -> String {
    match partition {
        Some(dir) => format!("{table}/{dir}/part-{export_id}-{n:05}.{extension}"),
        None => format!("{table}/part-{export_id}-{n:05}.{extension}"),
    }
}

/// Key of the manifest of export `export_id`.
pub fn manifest_key(export_id: &str) -> String {
    format!("{MANIFEST_DIR}/{export_id}.json")
}

/// The day (`YYYY-MM-DD`, proleptic Gregorian, UTC) of a microsecond Unix timestamp.
pub fn day_of_micros(micros: i64) -> String {
    let day = micros.div_euclid(86_400_000_000);
    let date = chrono::DateTime::from_timestamp(day * 86_400, 0)
        .unwrap_or_default()
        .date_naive();
    date.format("%Y-%m-%d").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_of_timestamps() {
        assert_eq!(day_of_micros(0), "1970-01-01");
        assert_eq!(day_of_micros(-1), "1969-12-31");
        assert_eq!(day_of_micros(1_709_251_200_000_000), "2024-03-01");
        assert_eq!(day_of_micros(1_709_251_199_999_999), "2024-02-29");
        assert_eq!(day_of_micros(951_782_400_000_000), "2000-02-29");
    }

    #[test]
    fn keys() {
        assert_eq!(
            data_key(
                "dag_run",
                Some(&partition_dir(Some("2024-03-01"))),
                "e1",
                3,
                "parquet"
            ),
            "dag_run/date=2024-03-01/part-e1-00003.parquet"
        );
        assert_eq!(
            data_key("variable", None, "e1", 0, "parquet"),
            "variable/part-e1-00000.parquet"
        );
        assert_eq!(partition_dir(None), "date=__HIVE_DEFAULT_PARTITION__");
        assert_eq!(manifest_key("e1"), "_contrail/exports/e1.json");
    }
}
