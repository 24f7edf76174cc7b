//! PostgreSQL column types as Airflow uses them, parsed from catalog specs and from the server.

use std::fmt;

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01), the zero of binary
/// `timestamp` / `timestamptz` values.
pub(crate) const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Start of a binary COPY stream: the 11-byte signature, 32-bit flags, 32-bit header extension
/// length.
pub(crate) const COPY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// End of a binary COPY stream: a tuple field count of -1.
pub(crate) const COPY_TRAILER: &[u8] = &[0xff, 0xff];

/// A PostgreSQL column type, normalised so that catalog specs and `format_type()` output compare.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PgType {
    /// `smallint`.
    SmallInt,
    /// `integer`.
    Integer,
    /// `bigint`.
    BigInt,
    /// `boolean`.
    Boolean,
    /// `real`.
    Real,
    /// `double precision` (SQLAlchemy `Float`).
    Double,
    /// `text`.
    Text,
    /// `varchar(n)`, or unbounded `varchar` when `None`.
    Varchar(Option<u32>),
    /// `timestamp with time zone`.
    Timestamptz,
    /// `timestamp without time zone`; Airflow's values are UTC.
    Timestamp,
    /// `date`.
    Date,
    /// `bytea`.
    Bytea,
    /// `json`.
    Json,
    /// `jsonb`.
    Jsonb,
    /// `uuid`.
    Uuid,
    /// Any other type, as `format_type()` spells it.
    Other(String),
}

impl PgType {
    /// Parses a type as written in a catalog spec (`varchar(250)`, `timestamptz`) or as
    /// returned by PostgreSQL's `format_type()` (`character varying(250)`,
    /// `timestamp with time zone`). Unknown names become [`PgType::Other`].
    pub fn parse(text: &str) -> PgType {
        let text = text.trim().to_ascii_lowercase();
        let (base, modifier) = match text.split_once('(') {
            Some((base, rest)) => (base.trim(), rest.trim_end_matches(')').trim().parse().ok()),
            None => (text.as_str(), None),
        };
        match base {
            "smallint" | "int2" => PgType::SmallInt,
            "integer" | "int" | "int4" => PgType::Integer,
            "bigint" | "int8" => PgType::BigInt,
            "boolean" | "bool" => PgType::Boolean,
            "real" | "float4" => PgType::Real,
            "double precision" | "float8" => PgType::Double,
            "text" => PgType::Text,
            "varchar" | "character varying" => PgType::Varchar(modifier),
            "timestamptz" | "timestamp with time zone" => PgType::Timestamptz,
            "timestamp" | "timestamp without time zone" => PgType::Timestamp,
            "date" => PgType::Date,
            "bytea" => PgType::Bytea,
            "json" => PgType::Json,
            "jsonb" => PgType::Jsonb,
            "uuid" => PgType::Uuid,
            _ => PgType::Other(text.clone()),
        }
    }
}

/// How PostgreSQL sends a value of a type in binary COPY; what a decoder reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WireType {
    /// 2-byte big-endian integer.
    Int2,
    /// 4-byte big-endian integer.
    Int4,
    /// 8-byte big-endian integer.
    Int8,
    /// 4-byte IEEE float.
    Float4,
    /// 8-byte IEEE float.
    Float8,
    /// One byte, 0 or 1.
    Bool,
    /// UTF-8 text: text, varchar, json.
    Text,
    /// A version byte (1) followed by JSON text.
    Jsonb,
    /// Raw bytes.
    Bytea,
    /// 8-byte microseconds since 2000-01-01 (with or without time zone: Airflow's are UTC).
    Timestamp,
    /// 16 bytes.
    Uuid,
}

impl PgType {
    /// The binary wire format of this type, or `None` for types contrail cannot read in binary
    /// (the source query casts those to text).
    pub fn wire(&self) -> Option<WireType> {
        Some(match self {
            PgType::SmallInt => WireType::Int2,
            PgType::Integer => WireType::Int4,
            PgType::BigInt => WireType::Int8,
            PgType::Real => WireType::Float4,
            PgType::Double => WireType::Float8,
            PgType::Boolean => WireType::Bool,
            PgType::Text | PgType::Varchar(_) | PgType::Json => WireType::Text,
            PgType::Jsonb => WireType::Jsonb,
            PgType::Bytea => WireType::Bytea,
            PgType::Timestamptz | PgType::Timestamp => WireType::Timestamp,
            PgType::Uuid => WireType::Uuid,
            PgType::Date | PgType::Other(_) => return None,
        })
    }
}

impl fmt::Display for PgType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PgType::SmallInt => f.write_str("smallint"),
            PgType::Integer => f.write_str("integer"),
            PgType::BigInt => f.write_str("bigint"),
            PgType::Boolean => f.write_str("boolean"),
            PgType::Real => f.write_str("real"),
            PgType::Double => f.write_str("double precision"),
            PgType::Text => f.write_str("text"),
            PgType::Varchar(Some(n)) => write!(f, "varchar({n})"),
            PgType::Varchar(None) => f.write_str("varchar"),
            PgType::Timestamptz => f.write_str("timestamptz"),
            PgType::Timestamp => f.write_str("timestamp"),
            PgType::Date => f.write_str("date"),
            PgType::Bytea => f.write_str("bytea"),
            PgType::Json => f.write_str("json"),
            PgType::Jsonb => f.write_str("jsonb"),
            PgType::Uuid => f.write_str("uuid"),
            PgType::Other(name) => f.write_str(name),
        }
    }
}

/// A column as a catalog spec describes it: `"varchar(250) not null"`, `"serial"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ColumnSpec {
    pub(crate) ty: PgType,
    pub(crate) nullable: bool,
    /// `serial`: an integer filled from a sequence (a generated key).
    pub(crate) serial: bool,
}

impl ColumnSpec {
    /// Parses `"<type> [not null]"` or `"serial"`; `None` for an unknown type.
    pub(crate) fn parse(spec: &str) -> Option<ColumnSpec> {
        let spec = spec.trim().to_ascii_lowercase();
        if spec == "serial" {
            return Some(ColumnSpec {
                ty: PgType::Integer,
                nullable: false,
                serial: true,
            });
        }
        let (ty, nullable) = match spec.strip_suffix("not null") {
            Some(ty) => (ty.trim(), false),
            None => (spec.as_str(), true),
        };
        match PgType::parse(ty) {
            PgType::Other(_) => None,
            ty => Some(ColumnSpec {
                ty,
                nullable,
                serial: false,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_and_server_spellings_agree() {
        let cases = [
            ("varchar(250)", "character varying(250)"),
            ("varchar", "character varying"),
            ("timestamptz", "timestamp with time zone"),
            ("timestamp", "timestamp without time zone"),
            ("float8", "double precision"),
            ("int4", "integer"),
            ("bool", "boolean"),
        ];
        for (spec, server) in cases {
            assert_eq!(
                PgType::parse(spec),
                PgType::parse(server),
                "{spec} vs {server}"
            );
        }
    }

    #[test]
    fn specs_parse_nullability_and_serial() {
        let spec = ColumnSpec::parse("varchar(250) NOT NULL").unwrap();
        assert_eq!(spec.ty, PgType::Varchar(Some(250)));
        assert!(!spec.nullable);
        let serial = ColumnSpec::parse("serial").unwrap();
        assert!(serial.serial && !serial.nullable && serial.ty == PgType::Integer);
        assert!(ColumnSpec::parse("timestamptz").unwrap().nullable);
        assert_eq!(ColumnSpec::parse("varchr(3)"), None);
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "varchar(250)",
            "timestamptz",
            "double precision",
            "jsonb",
            "uuid",
        ] {
            assert_eq!(PgType::parse(text).to_string(), text);
        }
    }
}
