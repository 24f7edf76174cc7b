//! Rows to PostgreSQL's binary COPY format, column by column, typed by the live database.
//!
//! A table writer declares its columns as [`Col`]s: a name, the [`Kind`] of value it produces
//! and a function that writes it. [`plan`] keeps the ones the table has at the target version,
//! checks that every NOT NULL column is among them and that each kind fits the column's real
//! type, and the [`Encoder`] then writes rows in chunks sent over a bounded channel.

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::catalog::detect::LiveTable;
use crate::catalog::{COPY_HEADER, COPY_TRAILER, PG_EPOCH_MICROS};
use crate::catalog::{PgType, TableSchema};
use crate::error::{Error, Result};
use crate::remap::{json_to_pickle, json_to_xcom_bytes};

/// The kind of value a column writer produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Text,
    Int,
    Float,
    Bool,
    /// Microseconds since the Unix epoch, UTC.
    Time,
    /// JSON text, for json / jsonb / text columns.
    Json,
    Bytes,
    Uuid,
    /// A JSON value stored as JSON, or as bytes (UTF-8 JSON or a pickle) in a bytea column.
    Payload,
}

impl Kind {
    fn accepts(self, ty: &PgType) -> bool {
        use PgType as T;
        match self {
            Kind::Text => matches!(ty, T::Text | T::Varchar(_)),
            Kind::Int => matches!(ty, T::SmallInt | T::Integer | T::BigInt),
            Kind::Float => matches!(ty, T::Double | T::Real),
            Kind::Bool => matches!(ty, T::Boolean),
            Kind::Time => matches!(ty, T::Timestamptz | T::Timestamp),
            Kind::Json => matches!(ty, T::Json | T::Jsonb | T::Text | T::Varchar(_)),
            Kind::Bytes => matches!(ty, T::Bytea),
            Kind::Uuid => matches!(ty, T::Uuid),
            Kind::Payload => matches!(ty, T::Json | T::Jsonb | T::Bytea),
        }
    }
}

/// A kind of row a table writer emits. Rows borrow the world they are drawn from for as long as
/// one pass step lasts, so column writers are functions of a row of *any* lifetime.
pub(crate) trait Family: 'static {
    /// The row type.
    type Row<'a>;
}

/// Writes one column of a row of family `F`.
pub(crate) type WriteFn<F> = for<'a, 'r, 'c, 'b> fn(&'r <F as Family>::Row<'a>, &'c mut Cell<'b>);

/// One column a table writer knows how to fill.
pub(crate) struct Col<F: Family> {
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
    pub(crate) write: WriteFn<F>,
}

impl<F: Family> Clone for Col<F> {
    fn clone(&self) -> Self {
        Col { ..*self }
    }
}

/// Declares a row family: a marker type, its [`Family`] impl and a `helper(name, kind, writer)`
/// that builds its [`Col`]s (a concrete signature, so closures need no annotations).
macro_rules! family {
    ($family:ident, $row:ident, $helper:ident) => {
        struct $family;
        impl crate::generate::copy::Family for $family {
            type Row<'a> = $row<'a>;
        }
        fn $helper(
            name: &'static str,
            kind: crate::generate::copy::Kind,
            write: for<'a, 'r, 'c, 'b> fn(&'r $row<'a>, &'c mut crate::generate::copy::Cell<'b>),
        ) -> crate::generate::copy::Col<$family> {
            crate::generate::copy::Col { name, kind, write }
        }
    };
    (static $family:ident, $row:ident, $helper:ident) => {
        struct $family;
        impl crate::generate::copy::Family for $family {
            type Row<'a> = $row;
        }
        fn $helper(
            name: &'static str,
            kind: crate::generate::copy::Kind,
            write: for<'r, 'c, 'b> fn(&'r $row, &'c mut crate::generate::copy::Cell<'b>),
        ) -> crate::generate::copy::Col<$family> {
            crate::generate::copy::Col { name, kind, write }
        }
    };
}
pub(crate) use family;

/// The columns of one table to write, with their live types, in COPY order.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) table: String,
    pub(crate) columns: Vec<(&'static str, PgType)>,
}

impl Plan {
    /// `COPY schema.table (a, b, ...) FROM STDIN (FORMAT binary)`.
    pub(crate) fn copy_sql(&self, schema: &str) -> String {
        let names: Vec<String> = self.columns.iter().map(|(n, _)| quote(n)).collect();
        format!(
            "COPY {}.{} ({}) FROM STDIN (FORMAT binary)",
            quote(schema),
            quote(&self.table),
            names.join(", ")
        )
    }

    /// The writers of `defs` in plan order, each with its column's type.
    pub(crate) fn select<F: Family>(&self, defs: &[Col<F>]) -> Vec<(Col<F>, PgType)> {
        self.columns
            .iter()
            .filter_map(|(name, ty)| {
                defs.iter()
                    .find(|c| c.name == *name && c.kind.accepts(ty))
                    .map(|c| (c.clone(), ty.clone()))
            })
            .collect()
    }
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// Chooses the columns of `defs` that `table` has at the target version.
///
/// # Errors
/// [`Error::Generate`] when a NOT NULL column (in the catalog or the database) has no writer, a
/// column the catalog promises is missing from the database, or a writer's kind does not fit
/// the column's type.
pub(crate) fn plan<F: Family>(
    table: &TableSchema,
    live: &LiveTable,
    defs: &[Col<F>],
) -> Result<Plan> {
    let fail = |message: String| Error::Generate {
        table: table.name.clone(),
        message,
    };
    let mut columns: Vec<(&'static str, PgType)> = Vec::new();
    for (i, def) in defs.iter().enumerate() {
        if table.column(def.name).is_none() || columns.iter().any(|(n, _)| *n == def.name) {
            continue;
        }
        let live_column = live.column(def.name).ok_or_else(|| {
            fail(format!(
                "column {} is missing from the database though its Airflow version has it; \
                 run `contrail inspect` to see how the schema differs",
                def.name
            ))
        })?;
        if !def.kind.accepts(&live_column.ty) {
            // Another writer of the same column may fit its type at this version.
            if defs[i + 1..].iter().any(|d| d.name == def.name) {
                continue;
            }
            return Err(fail(format!(
                "column {} has type {}, which the generator cannot fill with {:?} values",
                def.name, live_column.ty, def.kind
            )));
        }
        columns.push((def.name, live_column.ty.clone()));
    }
    let filled = |name: &str| columns.iter().any(|(n, _)| *n == name);
    for column in &table.columns {
        if !column.nullable && !filled(&column.name) {
            return Err(fail(format!(
                "NOT NULL column {} has no generator; teach src/generate/tables how to fill it",
                column.name
            )));
        }
    }
    for column in &live.columns {
        if !column.nullable
            && !column.serial
            && !filled(&column.name)
            && table.column(&column.name).is_none()
        {
            return Err(fail(format!(
                "the database has a NOT NULL column {} that its Airflow version does not; \
                 run `contrail inspect` to see how the schema differs",
                column.name
            )));
        }
    }
    Ok(Plan {
        table: table.name.clone(),
        columns,
    })
}

/// Where one value of a row is written.
pub(crate) struct Cell<'b> {
    buf: &'b mut Vec<u8>,
    ty: &'b PgType,
}

impl Cell<'_> {
    fn field(&mut self, data: &[u8]) {
        self.buf
            .extend_from_slice(&(data.len() as i32).to_be_bytes());
        self.buf.extend_from_slice(data);
    }

    /// SQL NULL.
    pub(crate) fn null(&mut self) {
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
    }

    pub(crate) fn text(&mut self, value: &str) {
        self.field(value.as_bytes());
    }

    pub(crate) fn int(&mut self, value: i64) {
        match self.ty {
            PgType::SmallInt => self.field(&(value as i16).to_be_bytes()),
            PgType::BigInt => self.field(&value.to_be_bytes()),
            _ => self.field(&(value as i32).to_be_bytes()),
        }
    }

    pub(crate) fn float(&mut self, value: f64) {
        match self.ty {
            PgType::Real => self.field(&(value as f32).to_be_bytes()),
            _ => self.field(&value.to_be_bytes()),
        }
    }

    pub(crate) fn bool(&mut self, value: bool) {
        self.field(&[u8::from(value)]);
    }

    /// A timestamp, microseconds since the Unix epoch (UTC for both timestamp types).
    pub(crate) fn time(&mut self, micros: i64) {
        self.field(&(micros - PG_EPOCH_MICROS).to_be_bytes());
    }

    pub(crate) fn bytes(&mut self, value: &[u8]) {
        self.field(value);
    }

    pub(crate) fn uuid(&mut self, value: &[u8; 16]) {
        self.field(value);
    }

    /// JSON text into json, jsonb (version byte 1 first) or text.
    pub(crate) fn json(&mut self, json: &str) {
        if *self.ty == PgType::Jsonb {
            self.buf
                .extend_from_slice(&(json.len() as i32 + 1).to_be_bytes());
            self.buf.push(1);
            self.buf.extend_from_slice(json.as_bytes());
        } else {
            self.text(json);
        }
    }

    /// A JSON value in a payload column: as JSON where the column is json/jsonb; where it is
    /// bytea (Airflow < 3), a protocol-5 pickle if `pickled`, else the UTF-8 JSON Airflow's
    /// `XComEncoder` writes.
    pub(crate) fn payload(&mut self, value: &Value, pickled: bool) {
        match (self.ty, pickled) {
            (PgType::Bytea, true) => self.field(&json_to_pickle(value)),
            (PgType::Bytea, false) => self.field(&json_to_xcom_bytes(value)),
            _ => self.json(&value.to_string()),
        }
    }

    pub(crate) fn opt_time(&mut self, value: Option<i64>) {
        match value {
            Some(v) => self.time(v),
            None => self.null(),
        }
    }

    pub(crate) fn opt_text(&mut self, value: Option<&str>) {
        match value {
            Some(v) => self.text(v),
            None => self.null(),
        }
    }

    pub(crate) fn opt_int(&mut self, value: Option<i64>) {
        match value {
            Some(v) => self.int(v),
            None => self.null(),
        }
    }

    pub(crate) fn opt_float(&mut self, value: Option<f64>) {
        match value {
            Some(v) => self.float(v),
            None => self.null(),
        }
    }
}

/// Rows and bytes one table's COPY stream carried.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Written {
    pub(crate) rows: u64,
    pub(crate) bytes: u64,
}

/// Encodes rows into chunks of binary COPY data and hands them to the sending side.
pub(crate) struct Encoder {
    table: String,
    buf: Vec<u8>,
    chunk: usize,
    tx: mpsc::Sender<Bytes>,
    written: Written,
}

impl Encoder {
    pub(crate) fn new(table: &str, chunk: usize, tx: mpsc::Sender<Bytes>) -> Encoder {
        let mut buf = Vec::with_capacity(chunk + chunk / 4);
        buf.extend_from_slice(COPY_HEADER);
        Encoder {
            table: table.to_owned(),
            buf,
            chunk,
            tx,
            written: Written::default(),
        }
    }

    /// Writes one row: every selected column of `entity`.
    ///
    /// # Errors
    /// [`Error::Generate`] when the sending side has stopped (its own error says why).
    pub(crate) fn row<F: Family>(
        &mut self,
        cols: &[(Col<F>, PgType)],
        entity: &F::Row<'_>,
    ) -> Result<()> {
        self.buf
            .extend_from_slice(&(cols.len() as i16).to_be_bytes());
        for (col, ty) in cols {
            let mut cell = Cell {
                buf: &mut self.buf,
                ty,
            };
            (col.write)(entity, &mut cell);
        }
        self.written.rows += 1;
        if self.buf.len() >= self.chunk {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let chunk = std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(self.chunk + self.chunk / 4),
        );
        self.written.bytes += chunk.len() as u64;
        self.tx
            .blocking_send(Bytes::from(chunk))
            .map_err(|_| Error::Generate {
                table: self.table.clone(),
                message: "PostgreSQL stopped accepting rows".to_owned(),
            })
    }

    /// Ends the stream and sends what is left.
    ///
    /// # Errors
    /// As [`Encoder::row`].
    pub(crate) fn finish(mut self) -> Result<Written> {
        self.buf.extend_from_slice(COPY_TRAILER);
        self.flush()?;
        Ok(self.written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(ty: PgType, write: impl FnOnce(&mut Cell<'_>)) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut cell = Cell {
            buf: &mut buf,
            ty: &ty,
        };
        write(&mut cell);
        buf
    }

    #[test]
    fn values_encode_as_postgres_binary() {
        assert_eq!(
            encode(PgType::Integer, |c| c.int(7)),
            [0, 0, 0, 4, 0, 0, 0, 7]
        );
        assert_eq!(encode(PgType::BigInt, |c| c.int(-1))[..4], [0, 0, 0, 8]);
        assert_eq!(encode(PgType::Text, |c| c.null()), [255, 255, 255, 255]);
        assert_eq!(encode(PgType::Boolean, |c| c.bool(true)), [0, 0, 0, 1, 1]);
        assert_eq!(
            encode(PgType::Timestamptz, |c| c.time(PG_EPOCH_MICROS + 1)),
            [0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1]
        );
        assert_eq!(
            encode(PgType::Jsonb, |c| c.json("{}")),
            [0, 0, 0, 3, 1, b'{', b'}']
        );
        assert_eq!(
            encode(PgType::Json, |c| c.json("{}")),
            [0, 0, 0, 2, b'{', b'}']
        );
        let one = serde_json::json!(1);
        assert_eq!(
            encode(PgType::Bytea, |c| c.payload(&one, false)),
            [0, 0, 0, 1, b'1']
        );
        assert_eq!(
            encode(PgType::Jsonb, |c| c.payload(&one, true)),
            [0, 0, 0, 2, 1, b'1']
        );
        let pickled = encode(PgType::Bytea, |c| c.payload(&one, true));
        assert_eq!(&pickled[4..6], [0x80, 5]);
    }

    #[test]
    fn kinds_fit_only_their_types() {
        assert!(Kind::Payload.accepts(&PgType::Bytea));
        assert!(Kind::Payload.accepts(&PgType::Jsonb));
        assert!(!Kind::Text.accepts(&PgType::Integer));
        assert!(Kind::Time.accepts(&PgType::Timestamp));
    }
}
