//! Resolves the files of `schemas/` into a [`Catalog`], checking that they agree with each other.
//!
//! Every check here fails with the file and the entry at fault, so a wrong edit to `schemas/` is
//! caught by the first test run rather than by a user.

use std::collections::{BTreeSet, HashMap};

use crate::catalog::canonical::{
    self, CanonicalColumn, CanonicalTable, CanonicalType, RuleArgs, Source,
};
use crate::catalog::files::{RawTimeline, TableFile, VersionsFile};
use crate::catalog::pgtype::ColumnSpec;
use crate::catalog::{
    Catalog, Column, ForeignKey, PgType, SchemaVersion, TableSchema, Timeline, VersionSchema,
};
use crate::error::{Error, Result};

const VERSIONS_FILE: &str = "versions.toml";
const TABLES_DIR: &str = "tables/";

/// Builds the catalog from `(path relative to schemas/, contents)` pairs.
pub(crate) fn load(files: &[(&str, &str)]) -> Result<Catalog> {
    let versions_text = files
        .iter()
        .find(|(path, _)| *path == VERSIONS_FILE)
        .map(|(_, text)| *text)
        .ok_or_else(|| Error::catalog(VERSIONS_FILE, "missing"))?;
    let versions_file: VersionsFile =
        toml::from_str(versions_text).map_err(|e| Error::catalog(VERSIONS_FILE, e.to_string()))?;
    let versions = resolve_versions(versions_file.version)?;

    let mut parsed = Vec::new();
    for (path, text) in files
        .iter()
        .filter(|(path, _)| path.starts_with(TABLES_DIR))
    {
        let file: TableFile =
            toml::from_str(text).map_err(|e| Error::catalog(*path, e.to_string()))?;
        let expected = format!("{TABLES_DIR}{}.toml", file.name);
        if *path != expected {
            return Err(Error::catalog(
                *path,
                format!(
                    "declares table {:?}; rename the file to {expected}",
                    file.name
                ),
            ));
        }
        parsed.push((path.to_string(), file));
    }

    let mut schemas: Vec<VersionSchema> = versions
        .iter()
        .map(|_| VersionSchema { tables: Vec::new() })
        .collect();
    for (path, file) in &parsed {
        let ctx = Ctx {
            file: path,
            versions: &versions,
        };
        let exists = ctx.timeline("exists", &file.exists, |v| Ok(*v))?;
        let time = ctx.timeline("time", &file.time, |v| Ok(v.clone()))?;
        let primary = ctx.timeline("keys.primary", &file.keys.primary, |v| Ok(v.clone()))?;
        let unique = ctx.timeline("keys.unique", &file.keys.unique, |v| Ok(v.clone()))?;
        let foreign = ctx.timeline("keys.foreign", &file.keys.foreign, |list| {
            list.iter()
                .map(|fk| {
                    ForeignKey::parse(fk)
                        .ok_or_else(|| format!("foreign key {fk:?} is not `a, b -> table(c, d)`"))
                })
                .collect::<std::result::Result<Vec<_>, _>>()
        })?;
        let mut columns = Vec::new();
        for (name, raw) in &file.columns {
            let tl = ctx.timeline(&format!("columns.{name}"), raw, |spec| {
                if spec.trim() == "-" {
                    Ok(None)
                } else {
                    ColumnSpec::parse(spec)
                        .map(Some)
                        .ok_or_else(|| format!("unknown column type in {spec:?}"))
                }
            })?;
            columns.push((name.clone(), tl));
        }
        let drift = resolve_drift(&ctx, file)?;

        for version in &versions {
            if exists.at(version) != Some(&true) {
                continue;
            }
            let table = TableSchema {
                name: file.name.clone(),
                columns: columns
                    .iter()
                    .filter_map(|(name, tl)| {
                        tl.at(version).and_then(Option::as_ref).map(|spec| Column {
                            name: name.clone(),
                            ty: spec.ty.clone(),
                            drift: drift.get(name).cloned().unwrap_or_default(),
                            nullable: spec.nullable,
                            serial: spec.serial,
                        })
                    })
                    .collect(),
                primary_key: primary.at(version).cloned().unwrap_or_default(),
                unique: unique.at(version).cloned().unwrap_or_default(),
                foreign_keys: foreign.at(version).cloned().unwrap_or_default(),
                time_columns: time.at(version).cloned().unwrap_or_default(),
            };
            ctx.check_table(version, &table)?;
            schemas[version.index].tables.push(table);
        }
    }
    for schema in &mut schemas {
        schema.tables.sort_by(|a, b| a.name.cmp(&b.name));
    }

    let mut canonical = Vec::new();
    for (path, file) in &parsed {
        let ctx = Ctx {
            file: path,
            versions: &versions,
        };
        let table = resolve_canonical(&ctx, file)?;
        ctx.check_canonical(&table, &schemas)?;
        canonical.push(table);
    }
    canonical.sort_by(|a, b| a.name.cmp(&b.name));

    Ok(Catalog {
        canonical_version: versions_file.canonical_version,
        versions,
        schemas,
        canonical,
    })
}

fn resolve_versions(
    entries: Vec<crate::catalog::files::VersionEntry>,
) -> Result<Vec<SchemaVersion>> {
    let mut seen_names = BTreeSet::new();
    let mut seen_heads = BTreeSet::new();
    let mut versions = Vec::new();
    for (index, entry) in entries.into_iter().enumerate() {
        for name in std::iter::once(&entry.id).chain(&entry.aliases) {
            if !seen_names.insert(name.clone()) {
                return Err(Error::catalog(
                    VERSIONS_FILE,
                    format!("version name {name} is used twice"),
                ));
            }
        }
        for head in &entry.heads {
            if !seen_heads.insert(head.clone()) {
                return Err(Error::catalog(
                    VERSIONS_FILE,
                    format!("head {head} is listed twice"),
                ));
            }
        }
        if entry.heads.is_empty() {
            return Err(Error::catalog(
                VERSIONS_FILE,
                format!("version {} has no heads", entry.id),
            ));
        }
        versions.push(SchemaVersion {
            index,
            id: entry.id,
            aliases: entry.aliases,
            releases: entry.releases,
            heads: entry.heads,
        });
    }
    Ok(versions)
}

fn resolve_drift(ctx: &Ctx<'_>, file: &TableFile) -> Result<HashMap<String, Vec<PgType>>> {
    let mut drift = HashMap::new();
    for (name, types) in &file.drift {
        if !file.columns.contains_key(name) {
            return Err(ctx.error(format!("drift names unknown column {name}")));
        }
        let types = types
            .iter()
            .map(|t| match PgType::parse(t) {
                PgType::Other(_) => Err(ctx.error(format!("drift.{name}: unknown type {t:?}"))),
                ty => Ok(ty),
            })
            .collect::<Result<Vec<_>>>()?;
        drift.insert(name.clone(), types);
    }
    Ok(drift)
}

fn resolve_canonical(ctx: &Ctx<'_>, file: &TableFile) -> Result<CanonicalTable> {
    let section = &file.canonical;
    let mut columns = Vec::new();
    for (name, entry) in &section.columns {
        let ty = CanonicalType::parse(&entry.ty).ok_or_else(|| {
            ctx.error(format!(
                "canonical.columns.{name}: unknown type {:?}",
                entry.ty
            ))
        })?;
        let from = ctx.timeline(
            &format!("canonical.columns.{name}.from"),
            &entry.from,
            |text| Source::parse(text).ok_or_else(|| format!("cannot parse source {text:?}")),
        )?;
        columns.push(CanonicalColumn {
            name: name.clone(),
            ty,
            nullable: entry.nullable,
            doc: entry.doc.clone(),
            from,
        });
    }
    let table = CanonicalTable {
        name: file.name.clone(),
        description: file.description.clone(),
        natural_key: section.natural_key.clone(),
        sort: section.sort.clone(),
        partition: section.partition.clone(),
        columns,
        skip: section
            .skip
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    };
    for (what, list) in [
        ("natural_key", &table.natural_key),
        ("sort", &table.sort),
        ("partition", &table.partition),
    ] {
        if let Some(missing) = list.iter().find(|c| table.column(c).is_none()) {
            return Err(ctx.error(format!(
                "canonical.{what} names {missing}, which is not a canonical column"
            )));
        }
    }
    if let Some(bad) = table.partition.iter().find(|c| {
        table
            .column(c)
            .is_some_and(|c| c.ty != CanonicalType::Timestamp)
    }) {
        return Err(ctx.error(format!(
            "canonical.partition column {bad} is not a timestamp"
        )));
    }
    Ok(table)
}

/// The file being resolved and the versions it may name.
struct Ctx<'a> {
    file: &'a str,
    versions: &'a [SchemaVersion],
}

impl Ctx<'_> {
    fn error(&self, message: impl Into<String>) -> Error {
        Error::catalog(self.file, message)
    }

    fn timeline<T, U>(
        &self,
        what: &str,
        raw: &RawTimeline<T>,
        convert: impl Fn(&T) -> std::result::Result<U, String>,
    ) -> Result<Timeline<U>> {
        let mut entries: Vec<(usize, U)> = Vec::new();
        for (id, value) in raw {
            let version = self.versions.iter().find(|v| v.id == *id).ok_or_else(|| {
                let known: Vec<_> = self.versions.iter().map(|v| v.id.as_str()).collect();
                self.error(format!(
                    "{what}: unknown version {id:?}; versions are {}",
                    known.join(", ")
                ))
            })?;
            if entries
                .last()
                .is_some_and(|(last, _)| *last >= version.index)
            {
                return Err(self.error(format!(
                    "{what}: versions must be listed oldest first ({id} is out of order)"
                )));
            }
            let value = convert(value).map_err(|m| self.error(format!("{what} at {id}: {m}")))?;
            entries.push((version.index, value));
        }
        Ok(Timeline::from_sorted(entries))
    }

    fn check_table(&self, version: &SchemaVersion, table: &TableSchema) -> Result<()> {
        let at = &version.id;
        if table.primary_key.is_empty() {
            return Err(self.error(format!("no primary key at {at}")));
        }
        let keys = table
            .primary_key
            .iter()
            .chain(table.unique.iter().flatten())
            .chain(table.foreign_keys.iter().flat_map(|fk| &fk.columns))
            .chain(&table.time_columns);
        for name in keys {
            if table.column(name).is_none() {
                return Err(self.error(format!("key or time column {name} does not exist at {at}")));
            }
        }
        Ok(())
    }

    fn check_canonical(&self, canonical: &CanonicalTable, schemas: &[VersionSchema]) -> Result<()> {
        let mut ever_present: BTreeSet<&str> = BTreeSet::new();
        for version in self.versions {
            let schema = &schemas[version.index];
            let Some(table) = schema.table(&canonical.name) else {
                continue;
            };
            let at = &version.id;
            let mut consumed: BTreeSet<&str> = BTreeSet::new();
            for column in &canonical.columns {
                match canonical.source_of(column, version, table) {
                    Source::Column(name) => {
                        let Some(source) = table.column(&name) else {
                            return Err(self.error(format!(
                                "canonical column {} reads {name}, which does not exist at {at}",
                                column.name
                            )));
                        };
                        consumed.insert(&source.name);
                    }
                    Source::Rule { name, args } => {
                        let rule = canonical::rule(&name).ok_or_else(|| {
                            self.error(format!(
                                "canonical column {}: unknown rule {name} at {at}",
                                column.name
                            ))
                        })?;
                        let over = match rule.args {
                            RuleArgs::ThisTable => Some(table),
                            RuleArgs::DagRun => schema.table("dag_run"),
                            RuleArgs::TaskInstance => schema.table("task_instance"),
                        };
                        for arg in &args {
                            let Some(source) = over.and_then(|t| t.column(arg)) else {
                                return Err(self.error(format!("canonical column {}: rule {name} reads {arg}, which does not exist at {at}", column.name)));
                            };
                            if rule.args == RuleArgs::ThisTable {
                                consumed.insert(&source.name);
                            }
                        }
                    }
                    Source::Value(_) | Source::Null => {}
                }
                if !column.nullable && canonical.source_of(column, version, table) == Source::Null {
                    return Err(self.error(format!(
                        "canonical column {} is not nullable but has no source at {at}",
                        column.name
                    )));
                }
            }
            for column in &table.columns {
                ever_present.insert(&column.name);
                let skipped = canonical.skip.iter().any(|(name, _)| *name == column.name);
                if !consumed.contains(column.name.as_str()) && !skipped {
                    return Err(self.error(format!(
                        "column {} at {at} reaches no canonical column: map it with `from`, or list it under canonical.skip with a reason",
                        column.name
                    )));
                }
            }
        }
        if let Some((name, _)) = canonical
            .skip
            .iter()
            .find(|(name, _)| !ever_present.contains(name.as_str()))
        {
            return Err(self.error(format!("canonical.skip names {name}, which no version has")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERSIONS: &str = r#"
canonical_version = 1
[[version]]
id = "1.0"
releases = "1.0"
heads = ["aaa"]
[[version]]
id = "2.0"
releases = "2.0"
heads = ["bbb"]
"#;

    const TABLE: &str = r#"
name = "thing"
description = "A thing."
exists = { "1.0" = true }
time = { "1.0" = ["made"] }
[columns]
id = { "1.0" = "serial" }
made = { "1.0" = "timestamptz", "2.0" = "timestamptz not null" }
old = { "1.0" = "text", "2.0" = "-" }
new_name = { "2.0" = "text" }
[keys]
primary = { "1.0" = ["id"] }
[canonical]
natural_key = ["id"]
sort = ["id"]
partition = ["made"]
[canonical.columns]
id = { type = "int32", nullable = false }
made = { type = "timestamp" }
new_name = { type = "utf8", from = { "1.0" = "old", "2.0" = "new_name" } }
"#;

    fn load_with(table: &str) -> Result<Catalog> {
        load(&[("versions.toml", VERSIONS), ("tables/thing.toml", table)])
    }

    fn error_of(table: &str) -> String {
        load_with(table)
            .expect_err("the catalog should be refused")
            .to_string()
    }

    #[test]
    fn timelines_resolve_per_version() {
        let catalog = load_with(TABLE).unwrap();
        let v1 = &catalog.versions()[0];
        let v2 = &catalog.versions()[1];
        let t1 = catalog.schema(v1).table("thing").unwrap();
        let t2 = catalog.schema(v2).table("thing").unwrap();
        assert!(t1.column("old").is_some() && t1.column("new_name").is_none());
        assert!(t2.column("old").is_none() && t2.column("new_name").is_some());
        assert!(t1.column("made").unwrap().nullable);
        assert!(!t2.column("made").unwrap().nullable);
        assert!(t1.column("id").unwrap().serial);
        let canonical = &catalog.canonical()[0];
        let renamed = canonical.column("new_name").unwrap();
        assert_eq!(
            canonical.source_of(renamed, v1, t1),
            Source::Column("old".into())
        );
        assert_eq!(
            canonical.source_of(renamed, v2, t2),
            Source::Column("new_name".into())
        );
    }

    #[test]
    fn unknown_version_is_named() {
        let err = error_of(&TABLE.replace(
            r#"new_name = { "2.0" = "text" }"#,
            r#"new_name = { "2.5" = "text" }"#,
        ));
        assert!(
            err.contains("tables/thing.toml") && err.contains("unknown version \"2.5\""),
            "{err}"
        );
    }

    #[test]
    fn versions_out_of_order_are_refused() {
        let err = error_of(&TABLE.replace(
            r#"made = { "1.0" = "timestamptz", "2.0" = "timestamptz not null" }"#,
            r#"made = { "2.0" = "timestamptz not null", "1.0" = "timestamptz" }"#,
        ));
        assert!(err.contains("oldest first"), "{err}");
    }

    #[test]
    fn a_column_that_reaches_no_canonical_column_is_refused() {
        let err = error_of(&TABLE.replace(
            r#"new_name = { type = "utf8", from = { "1.0" = "old", "2.0" = "new_name" } }"#,
            r#"new_name = { type = "utf8" }"#,
        ));
        assert!(
            err.contains("column old at 1.0 reaches no canonical column"),
            "{err}"
        );
    }

    #[test]
    fn a_source_column_that_does_not_exist_is_refused() {
        let err = error_of(&TABLE.replace(
            r#"from = { "1.0" = "old", "2.0" = "new_name" }"#,
            r#"from = { "1.0" = "old" }"#,
        ));
        assert!(
            err.contains("reads old, which does not exist at 2.0"),
            "{err}"
        );
    }

    #[test]
    fn unknown_types_and_rules_are_refused() {
        assert!(
            error_of(&TABLE.replace(
                r#""1.0" = "text", "2.0" = "-""#,
                r#""1.0" = "txt", "2.0" = "-""#
            ))
            .contains("unknown column type")
        );
        assert!(
            error_of(&TABLE.replace(r#"type = "timestamp""#, r#"type = "datetime""#))
                .contains("unknown type")
        );
        let err = error_of(&TABLE.replace(r#""1.0" = "old""#, r#""1.0" = "rule:unpickle(old)""#));
        assert!(err.contains("unknown rule unpickle"), "{err}");
    }

    #[test]
    fn keys_must_name_existing_columns() {
        let err = error_of(&TABLE.replace(
            r#"primary = { "1.0" = ["id"] }"#,
            r#"primary = { "1.0" = ["id"], "2.0" = ["old"] }"#,
        ));
        assert!(err.contains("old does not exist at 2.0"), "{err}");
    }

    #[test]
    fn file_name_must_match_the_table() {
        let err = load(&[("versions.toml", VERSIONS), ("tables/other.toml", TABLE)])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("rename the file to tables/thing.toml"),
            "{err}"
        );
    }
}
