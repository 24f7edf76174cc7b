//! The canonical interchange model: one version-neutral schema per table, named as in the newest
//! Airflow, holding the union of what every version can say. This is the Parquet contract with
//! analysts and with `contrail import`.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

use crate::catalog::{SchemaVersion, TableSchema, Timeline};

/// Field metadata key naming a canonical column's logical type (`json`, `uuid`) in Arrow
/// schemas and Parquet files, where both are plain UTF-8 strings.
pub const LOGICAL_TYPE_KEY: &str = "contrail.type";

/// The type of a canonical column, as analysts' engines will see it in Parquet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CanonicalType {
    /// 16-bit signed integer.
    Int16,
    /// 32-bit signed integer.
    Int32,
    /// 64-bit signed integer.
    Int64,
    /// 64-bit float.
    Float64,
    /// Boolean.
    Bool,
    /// UTF-8 text.
    Utf8,
    /// Raw bytes (pickles we do not decode, undecodable payloads).
    Binary,
    /// Microsecond timestamp, adjusted to UTC.
    Timestamp,
    /// JSON document stored as UTF-8 text.
    Json,
    /// UUID in its canonical 36-character text form.
    Uuid,
}

impl CanonicalType {
    /// Every type, with the name used in `schemas/`.
    pub const ALL: [(CanonicalType, &'static str); 10] = [
        (CanonicalType::Int16, "int16"),
        (CanonicalType::Int32, "int32"),
        (CanonicalType::Int64, "int64"),
        (CanonicalType::Float64, "float64"),
        (CanonicalType::Bool, "bool"),
        (CanonicalType::Utf8, "utf8"),
        (CanonicalType::Binary, "binary"),
        (CanonicalType::Timestamp, "timestamp"),
        (CanonicalType::Json, "json"),
        (CanonicalType::Uuid, "uuid"),
    ];

    /// Parses a name used in `schemas/`.
    pub fn parse(name: &str) -> Option<CanonicalType> {
        Self::ALL.iter().find(|(_, n)| *n == name).map(|(t, _)| *t)
    }

    /// The Arrow type of a column of this type: strings are `Utf8` (never `LargeUtf8`),
    /// timestamps microseconds in UTC, integers signed.
    pub fn arrow_type(self) -> DataType {
        match self {
            CanonicalType::Int16 => DataType::Int16,
            CanonicalType::Int32 => DataType::Int32,
            CanonicalType::Int64 => DataType::Int64,
            CanonicalType::Float64 => DataType::Float64,
            CanonicalType::Bool => DataType::Boolean,
            CanonicalType::Utf8 | CanonicalType::Json | CanonicalType::Uuid => DataType::Utf8,
            CanonicalType::Binary => DataType::Binary,
            CanonicalType::Timestamp => {
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
            }
        }
    }

    /// The name used in `schemas/`.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(t, _)| *t == self)
            .map_or("?", |(_, n)| n)
    }
}

impl fmt::Display for CanonicalType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a canonical column's value comes from for one source version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The Airflow column of that name, converted to the canonical type.
    Column(String),
    /// A derivation rule applied to arguments (see [`RULES`]).
    Rule {
        /// Rule name.
        name: String,
        /// Column names the rule reads.
        args: Vec<String>,
    },
    /// A constant, written as SQL literal text (`-1`, `false`, `'x'`).
    Value(String),
    /// The source version has nothing for this column.
    Null,
}

impl Source {
    /// Parses `column`, `rule:name(a, b)`, `value:-1` or `null`.
    pub fn parse(text: &str) -> Option<Source> {
        let text = text.trim();
        if text == "null" {
            return Some(Source::Null);
        }
        if let Some(value) = text.strip_prefix("value:") {
            return Some(Source::Value(value.trim().to_owned()));
        }
        if let Some(rule) = text.strip_prefix("rule:") {
            let (name, args) = match rule.split_once('(') {
                Some((name, rest)) => {
                    let args = rest.strip_suffix(')')?;
                    let args = args.split(',').map(|a| a.trim().to_owned()).collect();
                    (name.trim(), args)
                }
                None => (rule.trim(), Vec::new()),
            };
            return Some(Source::Rule {
                name: name.to_owned(),
                args,
            });
        }
        let is_identifier = !text.is_empty()
            && text
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        is_identifier.then(|| Source::Column(text.to_owned()))
    }
}

/// What a rule's arguments name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleArgs {
    /// Columns of the table being read.
    ThisTable,
    /// Columns of the row's `dag_run` (joined on whatever key the source version has).
    DagRun,
    /// Columns of the row's `task_instance`.
    TaskInstance,
}

/// A kind of derivation the remap stage knows how to perform.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// The name used in `schemas/` (`rule:<name>(...)`).
    pub name: &'static str,
    /// What its arguments name.
    pub args: RuleArgs,
    /// What it computes.
    pub doc: &'static str,
}

/// Every derivation rule `schemas/` may name. Adding one is a code change in `remap`.
pub const RULES: &[Rule] = &[
    Rule {
        name: "run_type_from_run_id",
        args: RuleArgs::ThisTable,
        doc: "run type from the run_id prefix as Airflow 2.0's migration does: scheduled__ -> \
              scheduled, backfill_ -> backfill, manual__ -> manual, anything else manual",
    },
    Rule {
        name: "asset_run_type",
        args: RuleArgs::ThisTable,
        doc: "run_type in Airflow 3 vocabulary: dataset_triggered becomes asset_triggered",
    },
    Rule {
        name: "coalesce",
        args: RuleArgs::ThisTable,
        doc: "the first non-NULL argument (Airflow 3.0's migration fills run_after as \
              coalesce(data_interval_end, execution_date))",
    },
    Rule {
        name: "json_from_pickle",
        args: RuleArgs::ThisTable,
        doc: "a pickled value decoded to JSON text by a restricted decoder that executes nothing; \
              NULL when it cannot be decoded (the bytes then go to the *_raw column)",
    },
    Rule {
        name: "json_from_bytes",
        args: RuleArgs::ThisTable,
        doc: "XCom bytes: UTF-8 JSON text as is, a pickle decoded to JSON; NULL when neither",
    },
    Rule {
        name: "undecoded_bytes",
        args: RuleArgs::ThisTable,
        doc: "the original bytes when the matching JSON column could not be decoded from them",
    },
    Rule {
        name: "dag_run",
        args: RuleArgs::DagRun,
        doc: "a column of the row's dag_run, joined on (dag_id, execution_date), (dag_id, run_id), \
              dag_run_id, or through task_instance by ti_id (Airflow 3 reschedules and notes), \
              whichever the source version has; NULL and flagged when none matches",
    },
    Rule {
        name: "task_instance",
        args: RuleArgs::TaskInstance,
        doc: "a column of the row's task instance, joined on the TI id (Airflow 3)",
    },
    Rule {
        name: "try_number_2_10",
        args: RuleArgs::ThisTable,
        doc: "try_number with Airflow 2.10 meaning: rows written by 2.9 or older in state \
              scheduled, queued, deferred or up_for_reschedule get +1",
    },
    Rule {
        name: "log_template_filename",
        args: RuleArgs::ThisTable,
        doc: "the filename template of log_template_id in the source's log_template table",
    },
];

/// Looks up a rule by name.
pub fn rule(name: &str) -> Option<&'static Rule> {
    RULES.iter().find(|rule| rule.name == name)
}

/// One column of a canonical table.
#[derive(Debug, Clone)]
pub struct CanonicalColumn {
    /// Column name.
    pub name: String,
    /// Column type.
    pub ty: CanonicalType,
    /// Whether NULL is allowed.
    pub nullable: bool,
    /// What it means, when the name does not say.
    pub doc: Option<String>,
    /// Explicit sources per version; versions without one use the same-named column.
    pub(crate) from: Timeline<Source>,
}

/// One table of the canonical model.
#[derive(Debug, Clone)]
pub struct CanonicalTable {
    /// Table name.
    pub name: String,
    /// What one row is.
    pub description: String,
    /// Columns that identify a row across environments.
    pub natural_key: Vec<String>,
    /// Columns files are sorted by within a partition.
    pub sort: Vec<String>,
    /// Timestamp columns whose first non-NULL value gives the row's day partition.
    pub partition: Vec<String>,
    /// The columns, in file order.
    pub columns: Vec<CanonicalColumn>,
    /// Airflow columns deliberately not carried, with the reason.
    pub skip: Vec<(String, String)>,
}

impl CanonicalTable {
    /// Where `column`'s value comes from when reading `source` (the table at `version`).
    ///
    /// An explicit `from` entry wins; otherwise the same-named Airflow column if the version has
    /// it; otherwise NULL.
    pub fn source_of(
        &self,
        column: &CanonicalColumn,
        version: &SchemaVersion,
        source: &TableSchema,
    ) -> Source {
        if let Some(explicit) = column.from.at(version) {
            return explicit.clone();
        }
        if source.column(&column.name).is_some() {
            Source::Column(column.name.clone())
        } else {
            Source::Null
        }
    }

    /// The column named `name`, if any.
    pub fn column(&self, name: &str) -> Option<&CanonicalColumn> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The Arrow schema of this table's files. JSON and UUID columns carry their logical type
    /// in field metadata under [`LOGICAL_TYPE_KEY`].
    pub fn arrow_schema(&self) -> Arc<Schema> {
        let fields: Vec<Field> = self
            .columns
            .iter()
            .map(CanonicalColumn::arrow_field)
            .collect();
        Arc::new(Schema::new(fields))
    }
}

impl CanonicalColumn {
    /// This column as an Arrow field.
    pub fn arrow_field(&self) -> Field {
        let field = Field::new(&self.name, self.ty.arrow_type(), self.nullable);
        match self.ty {
            CanonicalType::Json | CanonicalType::Uuid => field.with_metadata(HashMap::from([(
                LOGICAL_TYPE_KEY.to_owned(),
                self.ty.name().to_owned(),
            )])),
            _ => field,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse() {
        assert_eq!(
            Source::parse("execution_date"),
            Some(Source::Column("execution_date".into()))
        );
        assert_eq!(Source::parse("null"), Some(Source::Null));
        assert_eq!(Source::parse("value:-1"), Some(Source::Value("-1".into())));
        assert_eq!(
            Source::parse("rule:dag_run(run_id, execution_date)"),
            Some(Source::Rule {
                name: "dag_run".into(),
                args: vec!["run_id".into(), "execution_date".into()]
            })
        );
        assert_eq!(
            Source::parse("rule:run_after"),
            Some(Source::Rule {
                name: "run_after".into(),
                args: vec![]
            })
        );
        assert_eq!(Source::parse("Bad Name"), None);
        assert_eq!(Source::parse("rule:x(a"), None);
    }

    #[test]
    fn type_names_round_trip() {
        for (ty, name) in CanonicalType::ALL {
            assert_eq!(CanonicalType::parse(name), Some(ty));
            assert_eq!(ty.name(), name);
        }
    }
}
