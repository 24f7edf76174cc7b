//! Embeds every file under `schemas/` into the binary, so contrail is one file that needs
//! nothing installed beside it (it often runs as a task inside Amazon MWAA).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::{env, fs, io};

fn main() -> io::Result<()> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").map_err(io::Error::other)?);
    let schemas = root.join("schemas");
    println!("cargo:rerun-if-changed=schemas");
    let mut files = Vec::new();
    collect(&schemas, &mut files)?;
    files.sort();
    let mut out =
        String::from("/// Every file under `schemas/`: (path relative to it, contents).\n");
    out.push_str("pub(crate) static SCHEMA_FILES: &[(&str, &str)] = &[\n");
    for file in &files {
        let relative = file.strip_prefix(&schemas).map_err(io::Error::other)?;
        let relative = relative.to_string_lossy().replace('\\', "/");
        // The path is spelled from CARGO_MANIFEST_DIR when the crate compiles, not baked in
        // here: a target directory shared by several checkouts (a CI clone, a worktree) then
        // always embeds the files of the checkout being built.
        let path = format!("/schemas/{relative}");
        writeln!(
            out,
            "    ({relative:?}, include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), {path:?}))),"
        )
        .map_err(io::Error::other)?;
    }
    out.push_str("];\n");
    let target = PathBuf::from(env::var("OUT_DIR").map_err(io::Error::other)?);
    fs::write(target.join("schema_files.rs"), out)
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, files)?;
        } else if path.extension().is_some_and(|ext| ext == "toml") {
            files.push(path);
        }
    }
    Ok(())
}
