use arrow::array::AsArray;
use arrow::datatypes::{Int32Type, SchemaRef};

use super::write::spill_batch_rows;
use super::*;
use crate::dataset::sorted::tests::batch;
use crate::generate::rng::Rng;

fn schema() -> SchemaRef {
    batch(&[]).schema()
}

/// Spills `rows` sorted by key (`None` first, ties in order), as the partitioner does.
fn spill_sorted(spill: &Spill, day: &str, rows: &[(Option<&str>, i32)]) {
    let mut rows = rows.to_vec();
    rows.sort_by_key(|r| r.0);
    spill.write([(Some(day.to_owned()), batch(&rows))]).unwrap();
}

fn merged(runs: &[Run], batch_rows: usize) -> (Vec<Option<String>>, Vec<i32>) {
    let mut merge = Merge::try_new(runs, schema(), &[0], batch_rows).unwrap();
    let (mut keys, mut ns) = (Vec::new(), Vec::<i32>::new());
    while let Some(batch) = merge.next_batch().unwrap() {
        assert!(batch.num_rows() <= batch_rows);
        keys.extend(
            batch
                .column(0)
                .as_string::<i32>()
                .iter()
                .map(|k| k.map(str::to_owned)),
        );
        ns.extend(batch.column(1).as_primitive::<Int32Type>().values().iter());
    }
    (keys, ns)
}

#[test]
fn runs_of_a_day_merge_into_one_sorted_stream_ties_in_run_order() {
    let root = tempfile::tempdir().unwrap();
    let spill = Spill::try_new(root.path(), "t", schema()).unwrap();
    spill_sorted(
        &spill,
        "2024-01-02",
        &[(Some("c"), 1), (Some("a"), 2), (None, 3)],
    );
    spill_sorted(&spill, "2024-01-01", &[(Some("z"), 9)]);
    spill_sorted(
        &spill,
        "2024-01-02",
        &[(Some("b"), 4), (Some("a"), 5), (Some("d"), 6)],
    );
    let mut runs = spill.take();
    assert!(spill.take().is_empty());
    let on_disk: u64 = std::fs::read_dir(spill.path())
        .unwrap()
        .map(|f| f.unwrap().metadata().unwrap().len())
        .sum();
    assert_eq!(spill.bytes_written(), on_disk);
    assert_eq!(runs.len(), 2);
    let day = runs.remove(&Some("2024-01-02".to_owned())).unwrap();
    assert_eq!(day.iter().map(Run::rows).sum::<usize>(), 6);
    let (keys, ns) = merged(&day, 4);
    assert_eq!(ns, [3, 2, 5, 4, 1, 6]);
    assert_eq!(keys[0], None);
    assert_eq!(keys[5].as_deref(), Some("d"));
}

#[test]
fn one_write_puts_its_days_in_one_file_which_goes_with_its_last_run() {
    let root = tempfile::tempdir().unwrap();
    let spill = Spill::try_new(root.path(), "t", schema()).unwrap();
    // Each day big enough to span whole blocks, so removing one frees some.
    let day = |n: i32| -> Vec<(Option<String>, i32)> {
        (0..3000)
            .map(|i| (Some(format!("d{n}-{i:05}")), n * 10_000 + i))
            .collect()
    };
    let as_batch = |rows: &[(Option<String>, i32)]| {
        let refs: Vec<(Option<&str>, i32)> = rows.iter().map(|(k, n)| (k.as_deref(), *n)).collect();
        batch(&refs)
    };
    let days: Vec<_> = (1..=3).map(day).collect();
    spill
        .write(
            days.iter()
                .enumerate()
                .map(|(i, rows)| (Some(format!("day{i}")), as_batch(rows))),
        )
        .unwrap();
    spill
        .write([(Some("day1".to_owned()), as_batch(&day(4)))])
        .unwrap();
    let files = || {
        let mut names: Vec<String> = std::fs::read_dir(spill.path())
            .unwrap()
            .map(|f| f.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    };
    assert_eq!(files(), ["runs-000000.arrow", "runs-000001.arrow"]);
    let mut runs = spill.take();
    // Each run reads back its own day's rows, from wherever it lies in its file.
    for (i, rows) in days.iter().enumerate() {
        let day = runs.remove(&Some(format!("day{i}"))).unwrap();
        let mut expected: Vec<i32> = rows.iter().map(|r| r.1).collect();
        if i == 1 {
            assert_eq!(day.len(), 2);
            expected.extend(day_values(4));
        }
        let (_, ns) = merged(&day, 1000);
        assert_eq!(ns, expected, "day{i}");
        let first = spill.path().join("runs-000000.arrow");
        let before = std::fs::metadata(&first).unwrap();
        day.into_iter().for_each(Run::remove);
        if i < 2 {
            // The file keeps its size (other runs are read by offset) until its last run
            // goes, but the removed run's blocks are freed.
            let after = std::fs::metadata(&first).unwrap();
            assert_eq!(after.len(), before.len());
            #[cfg(all(target_os = "linux", target_env = "gnu"))]
            {
                use std::os::unix::fs::MetadataExt;
                assert!(
                    after.blocks() < before.blocks(),
                    "{} blocks",
                    after.blocks()
                );
            }
        }
    }
    assert!(files().is_empty(), "{:?}", files());
}

fn day_values(n: i32) -> impl Iterator<Item = i32> {
    (0..3000).map(move |i| n * 10_000 + i)
}

/// Spills runs of day "d" with `sizes` rows each, keys `k00`.. repeating across runs, and
/// returns every row in the order written.
fn spill_runs(spill: &Spill, sizes: &[i32], keys: i32) -> Vec<(Option<String>, i32)> {
    let mut written = Vec::new();
    for (run, &size) in (0..).zip(sizes) {
        let rows: Vec<(Option<String>, i32)> = (0..size)
            .map(|i| (Some(format!("k{:02}", (i * 7 + run) % keys)), run * 100 + i))
            .collect();
        let refs: Vec<(Option<&str>, i32)> = rows.iter().map(|(k, n)| (k.as_deref(), *n)).collect();
        spill_sorted(spill, "d", &refs);
        written.extend(rows);
    }
    written
}

/// `runs` merge into `written` sorted by key, equal keys in the order their runs were written.
fn assert_merge_is_stable_sort(runs: &[Run], mut written: Vec<(Option<String>, i32)>) {
    let (keys, ns) = merged(runs, 8);
    written.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(ns, written.iter().map(|r| r.1).collect::<Vec<_>>());
    assert_eq!(keys, written.into_iter().map(|r| r.0).collect::<Vec<_>>());
}

#[test]
fn more_runs_than_the_fan_in_are_merged_in_groups_keeping_every_row() {
    let root = tempfile::tempdir().unwrap();
    let spill = Spill::try_new(root.path(), "t", schema()).unwrap();
    let written = spill_runs(&spill, &[5; 7], 13);
    let runs = spill.take().remove(&Some("d".to_owned())).unwrap();
    let runs = spill.reduce(runs, &[0], 3, 3).unwrap();
    assert!(runs.len() <= 3, "{} runs left", runs.len());
    // Only the reduced runs are left on disk.
    assert_eq!(std::fs::read_dir(spill.path()).unwrap().count(), runs.len());
    assert_merge_is_stable_sort(&runs, written);
}

#[test]
fn reducing_merges_only_the_neighbouring_runs_with_fewest_rows_in_their_place() {
    let root = tempfile::tempdir().unwrap();
    let spill = Spill::try_new(root.path(), "t", schema()).unwrap();
    let written = spill_runs(&spill, &[40, 1, 2, 30, 5], 11);
    let runs = spill.take().remove(&Some("d".to_owned())).unwrap();
    // Three of five runs must go into one: of the neighbours 40+1+2, 1+2+30 and 2+30+5, the
    // middle three hold the fewest rows; the runs of 40 and 5 rows are not rewritten.
    let runs = spill.reduce(runs, &[0], 8, 3).unwrap();
    assert_eq!(runs.iter().map(Run::rows).collect::<Vec<_>>(), [40, 33, 5]);
    assert_merge_is_stable_sort(&runs, written);
}

#[test]
fn overlapping_and_disjoint_runs_with_ties_merge_like_a_stable_sort() {
    let root = tempfile::tempdir().unwrap();
    let spill = Spill::try_new(root.path(), "t", schema()).unwrap();
    let mut rng = Rng::new(0x2545_f491, &[]);
    let mut next = |bound: u64| rng.range(0, bound as i64) as u64;
    // Keys this long make spilled batches of 64 rows, so a run is several batches, some of
    // which go out whole and some in part.
    let pad = "-".repeat(2100);
    let mut expected = Vec::new();
    for run in 0..8u64 {
        // Runs 0-2 share a small alphabet (many ties); runs 3-5 each own a disjoint range;
        // run 6 holds keys on both sides of run 7's.
        let mut rows: Vec<(Option<String>, i32)> = (0..300)
            .map(|i| {
                let key = match run {
                    0..3 => next(5),
                    3..6 => 10 * run + next(8),
                    6 => 60 + next(4) + 10 * next(2),
                    _ => 64 + next(6),
                };
                (Some(format!("k{key:03}{pad}")), (run * 1000 + i) as i32)
            })
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        let refs: Vec<(Option<&str>, i32)> = rows.iter().map(|(k, n)| (k.as_deref(), *n)).collect();
        spill_sorted(&spill, "d", &refs);
        expected.extend(rows);
    }
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    let runs = spill.take().remove(&Some("d".to_owned())).unwrap();
    for batch_rows in [1, 7, 100, 5000] {
        let (_, ns) = merged(&runs, batch_rows);
        assert_eq!(
            ns,
            expected.iter().map(|r| r.1).collect::<Vec<_>>(),
            "{batch_rows}"
        );
    }
}

#[test]
fn without_sort_columns_runs_follow_each_other() {
    let root = tempfile::tempdir().unwrap();
    let spill = Spill::try_new(root.path(), "t", schema()).unwrap();
    for rows in [
        [(Some("b"), 1), (Some("a"), 2), (None, 3)],
        [(Some("c"), 4), (None, 5), (Some("a"), 6)],
    ] {
        spill.write([(None, batch(&rows))]).unwrap();
    }
    let runs = spill.take().remove(&None).unwrap();
    // Output batches that end inside a run's batch, too.
    for batch_rows in [1, 3] {
        let mut merge = Merge::try_new(&runs, schema(), &[], batch_rows).unwrap();
        let mut ns = Vec::<i32>::new();
        while let Some(batch) = merge.next_batch().unwrap() {
            ns.extend(batch.column(1).as_primitive::<Int32Type>().values().iter());
        }
        assert_eq!(ns, [1, 2, 3, 4, 5, 6], "{batch_rows}");
    }
}

#[test]
fn columns_null_in_every_row_of_a_run_are_left_out_and_read_back_as_null() {
    let root = tempfile::tempdir().unwrap();
    let sizes: Vec<u64> = [None, Some("")]
        .into_iter()
        .map(|key| {
            let spill = Spill::try_new(root.path(), "t", schema()).unwrap();
            let rows: Vec<(Option<&str>, i32)> = (0..1000).map(|i| (key, i)).collect();
            spill.write([(None, batch(&rows))]).unwrap();
            spill.bytes_written()
        })
        .collect();
    // 1000 empty strings are 4 bytes of offsets each; 1000 NULLs are not written at all.
    assert!(sizes[0] + 3000 < sizes[1], "{sizes:?}");

    // Two runs without keys, one with, one without: merged in groups of two, the first
    // group's merged run lacks them too.
    let spill = Spill::try_new(root.path(), "t", schema()).unwrap();
    let mut expected = Vec::new();
    for (run, keyed) in [false, false, true, false].into_iter().enumerate() {
        let keys: Vec<Option<String>> = (0..300)
            .map(|i| keyed.then(|| format!("k{i:03}")))
            .collect();
        let rows: Vec<(Option<&str>, i32)> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.as_deref(), (run * 1000 + i) as i32))
            .collect();
        spill.write([(None, batch(&rows))]).unwrap();
        let ns: Vec<i32> = rows.iter().map(|r| r.1).collect();
        expected.extend(keys.into_iter().zip(ns));
    }
    // Sorted by key, NULLs first and in run order.
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    let runs = spill.take().remove(&None).unwrap();
    let (keys, ns) = merged(&spill.reduce(runs, &[0], 2, 2).unwrap(), 7);
    assert_eq!(ns, expected.iter().map(|r| r.1).collect::<Vec<_>>());
    assert_eq!(keys, expected.into_iter().map(|r| r.0).collect::<Vec<_>>());
}

/// The error of merging a run of 200 rows whose file `damage` changed (given its path and
/// length).
fn merge_error_after(damage: impl FnOnce(&Path, u64)) -> String {
    let root = tempfile::tempdir().unwrap();
    let spill = Spill::try_new(root.path(), "t", schema()).unwrap();
    let rows: Vec<(Option<&str>, i32)> = (0..200).map(|i| (Some("k"), i)).collect();
    spill_sorted(&spill, "d", &rows);
    let runs = spill.take().remove(&Some("d".to_owned())).unwrap();
    damage(
        runs[0].path(),
        std::fs::metadata(runs[0].path()).unwrap().len(),
    );
    let error = Merge::try_new(&runs, schema(), &[0], 16)
        .and_then(|mut merge| while_rows(&mut merge))
        .unwrap_err()
        .to_string();
    assert!(error.contains("reading the temporary file"), "{error}");
    assert!(error.contains("runs-000000.arrow"), "{error}");
    error
}

#[test]
fn a_truncated_run_is_an_error_naming_the_file() {
    let mut length = 0;
    let error = merge_error_after(|path, bytes| {
        length = bytes;
        let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        file.set_len(bytes / 2).unwrap();
    });
    assert!(
        error.contains(&format!("has {} bytes, {length} were written", length / 2)),
        "{error}"
    );
}

#[test]
fn a_run_overwritten_in_place_is_an_error_not_garbage() {
    let error = merge_error_after(|path, bytes| {
        std::fs::write(path, vec![0u8; bytes as usize]).unwrap();
    });
    assert!(
        error.contains("a batch that does not start with a message marker"),
        "{error}"
    );
}

fn while_rows(merge: &mut Merge) -> Result<(), SpillError> {
    while merge.next_batch()?.is_some() {}
    Ok(())
}

#[test]
fn spilled_batches_are_sized_by_bytes_within_bounds() {
    assert_eq!(spill_batch_rows(1024 * 1024 * 1024, 100_000), 64);
    assert_eq!(spill_batch_rows(1024, 1024), 8192);
    assert_eq!(spill_batch_rows(64 * 1024 * 1024, 256 * 1024), 512);
    assert_eq!(fan_in(32 * 1024 * 1024), 128);
    assert_eq!(fan_in(0), 4);
}
