//! pyarrow (PyPI `pyarrow`) reading exported datasets as an analyst would: one
//! `pyarrow.dataset.dataset(path, format="parquet", partitioning="hive")` per table folder, no
//! other options.
//!
//! `scripts/test.sh` installs pyarrow into a cached virtualenv and exports `CONTRAIL_PYTHON`
//! with its python. Without it the tests that need pyarrow fail: a skipped check is a failed one.

use std::process::Command;

use serde_json::Value;

const READ: &str = r#"
import json, sys
import pyarrow.dataset as ds

root, tables = sys.argv[1], sys.argv[2:]
out = {}
for table in tables:
    data = ds.dataset(f"{root}/{table}", format="parquet", partitioning="hive").to_table()
    out[table] = {
        "rows": data.num_rows,
        "fields": {f.name: str(f.type) for f in data.schema},
    }
print(json.dumps(out))
"#;

/// Reads each of `tables` under `root` (a directory, or `s3://bucket/prefix` reached through
/// `env`) and returns `{table: {"rows": n, "fields": {column: "pyarrow type"}}}`.
pub fn read_dataset(root: &str, tables: &[&str], env: &[(&str, String)]) -> Value {
    let python = std::env::var("CONTRAIL_PYTHON").unwrap_or_else(|_| {
        panic!(
            "CONTRAIL_PYTHON is not set: run scripts/test.sh, which installs pyarrow and sets it"
        )
    });
    let mut command = Command::new(&python);
    command.args(["-c", READ, root]).args(tables);
    for (name, value) in env {
        command.env(name, value);
    }
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("running {python}: {e}"));
    assert!(
        out.status.success(),
        "pyarrow could not read {root}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
