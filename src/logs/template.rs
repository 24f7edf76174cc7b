//! Task-log stream names: Airflow's log filename templates, parsed and rendered.
//!
//! Amazon MWAA names each task try's stream by rendering the Airflow log filename template of
//! the version that wrote it, with every `:` replaced by `_` (CloudWatch forbids `:` in stream
//! names):
//!
//! - up to 2.2 ([`LogTemplate::Legacy`]): `{dag_id}/{task_id}/{ts}/{try}.log`, where `ts` is the
//!   run's logical date in ISO 8601 (`2024-03-01T00_00_00+00_00` once `:` is replaced);
//! - from 2.3, 3.x included ([`LogTemplate::Modern`]):
//!   `dag_id={dag_id}/run_id={run_id}/task_id={task_id}/[map_index={n}/]attempt={try}.log`, the
//!   `map_index` part only for mapped tasks.
//!
//! Parsing is lossy where the names are: a run id read back from a name has `_` where the real
//! one had `:`. The exported dataset gives the real values (see `select`).

use chrono::{DateTime, SecondsFormat, Utc};

/// An Airflow log filename template, as MWAA renders it into stream names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogTemplate {
    /// Airflow 1.10 to 2.2: `{dag_id}/{task_id}/{ts}/{try}.log`.
    Legacy,
    /// Airflow 2.3 and later: `dag_id=…/run_id=…/task_id=…/[map_index=…/]attempt=….log`.
    Modern,
}

/// What a stream name says about the task try that wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaskTry {
    /// The DAG.
    pub dag_id: String,
    /// The task.
    pub task_id: String,
    /// The run; from a name, with `_` for every `:` of the real id.
    pub run_id: Option<String>,
    /// The run's logical date, microseconds since the epoch (UTC).
    pub logical_date: Option<i64>,
    /// The map index; -1 for an unmapped task.
    pub map_index: i32,
    /// The try (attempt) number, from 1.
    pub try_number: i32,
}

impl LogTemplate {
    /// The template Airflow `version` (`2.2.2`, `2.10`, `3.0.6`) uses by default.
    pub fn for_version(version: &str) -> LogTemplate {
        let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        let major = parts.next().unwrap_or(0);
        let minor = parts.next().unwrap_or(0);
        if (major, minor) < (2, 3) {
            LogTemplate::Legacy
        } else {
            LogTemplate::Modern
        }
    }

    /// Which template wrote `name`, and what it says; `None` when neither matches.
    pub fn detect(name: &str) -> Option<(LogTemplate, TaskTry)> {
        [LogTemplate::Modern, LogTemplate::Legacy]
            .into_iter()
            .find_map(|template| template.parse(name).map(|t| (template, t)))
    }

    /// What `name` says, if this template wrote it.
    pub fn parse(self, name: &str) -> Option<TaskTry> {
        match self {
            LogTemplate::Legacy => parse_legacy(name),
            LogTemplate::Modern => parse_modern(name),
        }
    }

    /// The stream name this template gives `try_`, or `None` when it lacks what the template
    /// needs (a logical date for legacy names, a run id for modern ones) or cannot express it
    /// (a mapped task in a legacy name).
    pub fn render(self, try_: &TaskTry) -> Option<String> {
        let name = match self {
            LogTemplate::Legacy => {
                if try_.map_index >= 0 {
                    return None;
                }
                format!(
                    "{}/{}/{}/{}.log",
                    try_.dag_id,
                    try_.task_id,
                    iso_timestamp(try_.logical_date?)?,
                    try_.try_number
                )
            }
            LogTemplate::Modern => {
                let map = if try_.map_index >= 0 {
                    format!("map_index={}/", try_.map_index)
                } else {
                    String::new()
                };
                format!(
                    "dag_id={}/run_id={}/task_id={}/{map}attempt={}.log",
                    try_.dag_id,
                    try_.run_id.as_deref()?,
                    try_.task_id,
                    try_.try_number
                )
            }
        };
        Some(sanitize(&name))
    }
}

/// A name as MWAA writes it: every `:` replaced by `_`.
pub fn sanitize(name: &str) -> String {
    name.replace(':', "_")
}

/// Python's `datetime.isoformat()` of a UTC time, as Airflow's `ts`: seconds, microseconds only
/// when not zero, `+00:00`.
fn iso_timestamp(micros: i64) -> Option<String> {
    let time = DateTime::<Utc>::from_timestamp_micros(micros)?;
    let format = if micros.rem_euclid(1_000_000) == 0 {
        SecondsFormat::Secs
    } else {
        SecondsFormat::Micros
    };
    Some(time.to_rfc3339_opts(format, false))
}

fn parse_try(file: &str) -> Option<i32> {
    file.strip_suffix(".log")?.parse().ok()
}

fn parse_legacy(name: &str) -> Option<TaskTry> {
    let parts: Vec<&str> = name.split('/').collect();
    let [dag_id, task_id, ts, file] = parts.as_slice() else {
        return None;
    };
    if dag_id.is_empty() || task_id.is_empty() || dag_id.starts_with("dag_id=") {
        return None;
    }
    let logical = DateTime::parse_from_rfc3339(&ts.replace('_', ":")).ok()?;
    Some(TaskTry {
        dag_id: (*dag_id).to_owned(),
        task_id: (*task_id).to_owned(),
        run_id: None,
        logical_date: Some(logical.with_timezone(&Utc).timestamp_micros()),
        map_index: -1,
        try_number: parse_try(file)?,
    })
}

fn parse_modern(name: &str) -> Option<TaskTry> {
    let rest = name.strip_prefix("dag_id=")?;
    let (dag_id, rest) = rest.split_once("/run_id=")?;
    // Run ids may hold `/`; task ids may not. The last `/task_id=` ends the run id.
    let (run_id, rest) = rest.rsplit_once("/task_id=")?;
    let parts: Vec<&str> = rest.split('/').collect();
    let (task_id, map_index, file) = match parts.as_slice() {
        [task_id, file] => (*task_id, -1, *file),
        [task_id, map, file] => (
            *task_id,
            map.strip_prefix("map_index=")?.parse().ok()?,
            *file,
        ),
        _ => return None,
    };
    if dag_id.is_empty() || run_id.is_empty() || task_id.is_empty() {
        return None;
    }
    Some(TaskTry {
        dag_id: dag_id.to_owned(),
        task_id: task_id.to_owned(),
        run_id: Some(run_id.to_owned()),
        logical_date: None,
        map_index,
        try_number: parse_try(file.strip_prefix("attempt=")?)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARCH_1: i64 = 1_709_251_200_000_000;

    #[test]
    fn legacy_names_round_trip() {
        let name = "etl_daily/extract/2024-03-01T00_00_00+00_00/3.log";
        let (template, try_) = LogTemplate::detect(name).unwrap();
        assert_eq!(template, LogTemplate::Legacy);
        assert_eq!(try_.logical_date, Some(MARCH_1));
        assert_eq!((try_.map_index, try_.try_number), (-1, 3));
        assert_eq!(LogTemplate::Legacy.render(&try_).unwrap(), name);
        // Microseconds appear only when not zero, as in Python's isoformat.
        let with_micros = TaskTry {
            logical_date: Some(MARCH_1 + 123_456),
            ..try_
        };
        assert_eq!(
            LogTemplate::Legacy.render(&with_micros).unwrap(),
            "etl_daily/extract/2024-03-01T00_00_00.123456+00_00/3.log"
        );
    }

    #[test]
    fn modern_names_round_trip_with_and_without_map_index() {
        for name in [
            "dag_id=etl/run_id=scheduled__2024-03-01T00_00_00+00_00/task_id=grp.load/attempt=1.log",
            "dag_id=etl/run_id=manual__2024-03-01T00_00_00+00_00/task_id=load/map_index=12/attempt=2.log",
            "dag_id=etl/run_id=odd/run/id/task_id=load/attempt=1.log",
        ] {
            let (template, try_) = LogTemplate::detect(name).unwrap();
            assert_eq!(template, LogTemplate::Modern);
            assert_eq!(LogTemplate::Modern.render(&try_).unwrap(), name);
        }
        let try_ = LogTemplate::Modern
            .parse("dag_id=d/run_id=r/task_id=t/map_index=3/attempt=4.log")
            .unwrap();
        assert_eq!((try_.map_index, try_.try_number), (3, 4));
    }

    #[test]
    fn renames_between_templates_replace_colons() {
        let try_ = TaskTry {
            dag_id: "etl".into(),
            task_id: "extract".into(),
            run_id: Some("scheduled__2024-03-01T00:00:00+00:00".into()),
            logical_date: Some(MARCH_1),
            map_index: -1,
            try_number: 2,
        };
        assert_eq!(
            LogTemplate::Modern.render(&try_).unwrap(),
            "dag_id=etl/run_id=scheduled__2024-03-01T00_00_00+00_00/task_id=extract/attempt=2.log"
        );
        assert_eq!(
            LogTemplate::Legacy.render(&try_).unwrap(),
            "etl/extract/2024-03-01T00_00_00+00_00/2.log"
        );
        // A legacy name cannot hold a map index; a modern one needs a run id.
        let mapped = TaskTry {
            map_index: 0,
            ..try_.clone()
        };
        assert_eq!(LogTemplate::Legacy.render(&mapped), None);
        let no_run = TaskTry {
            run_id: None,
            ..try_
        };
        assert_eq!(LogTemplate::Modern.render(&no_run), None);
    }

    #[test]
    fn other_names_are_not_task_logs() {
        for name in [
            "scheduler.log",
            "a/b/c/d.log",
            "a/b/2024-03-01T00_00_00+00_00/x.log",
            "dag_id=d/run_id=r/attempt=1.log",
            "dag_id=d/run_id=r/task_id=t/map_index=x/attempt=1.log",
        ] {
            assert_eq!(LogTemplate::detect(name), None, "{name}");
        }
    }

    #[test]
    fn versions_pick_their_template() {
        assert_eq!(LogTemplate::for_version("1.10.12"), LogTemplate::Legacy);
        assert_eq!(LogTemplate::for_version("2.2.2"), LogTemplate::Legacy);
        assert_eq!(LogTemplate::for_version("2.3"), LogTemplate::Modern);
        assert_eq!(LogTemplate::for_version("2.10.5"), LogTemplate::Modern);
        assert_eq!(LogTemplate::for_version("3.2"), LogTemplate::Modern);
    }
}
