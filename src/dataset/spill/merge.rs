//! Reading runs back and merging them into one sorted stream.

use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::row::{Row, Rows};

use super::read::{NullColumns, RunReader};
use super::{Run, SpillError};
use crate::dataset::gather::gather_rows;
use crate::dataset::sorted::SortKeys;

/// One run being read.
struct Input {
    reader: RunReader,
    path: PathBuf,
    /// The run's current batch: its index in [`Merge::staged`], the next row, its rows.
    slot: usize,
    row: usize,
    len: usize,
    /// The sort keys of the batch's first and last rows, and of all its rows once a row in
    /// between is compared: a batch whose rows all go out in one step (runs that do not
    /// overlap) is never converted whole. Whenever `row` is neither the first nor the last,
    /// `keys` holds all of them.
    ends: Option<Rows>,
    keys: Option<Rows>,
}

/// Sorted runs merged into one sorted stream of batches. Equal keys come in run order.
pub struct Merge {
    schema: SchemaRef,
    /// What columns left out of runs are read back as.
    nulls: NullColumns,
    keys: Option<SortKeys>,
    batch_rows: usize,
    inputs: Vec<Input>,
    /// Inputs with rows left, as a binary min-heap by (current key, input index).
    heap: Vec<usize>,
    /// Batches that rows of the next output batch come from.
    staged: Vec<RecordBatch>,
    /// `(staged batch, row)` of each row of the next output batch.
    order: Vec<(usize, usize)>,
}

impl Merge {
    /// Opens `runs` (each sorted by `sort_columns`) to be merged into batches of at most
    /// `batch_rows` rows.
    ///
    /// # Errors
    /// When a run cannot be opened or read, or a sort column cannot be ordered.
    pub fn try_new(
        runs: &[Run],
        schema: SchemaRef,
        sort_columns: &[usize],
        batch_rows: usize,
    ) -> Result<Self, SpillError> {
        let keys = SortKeys::try_new(&schema, sort_columns).map_err(SpillError::reading(
            runs.first().map_or(Path::new(""), |r| r.path()),
        ))?;
        let mut merge = Self {
            nulls: NullColumns::new(schema.clone()),
            schema,
            keys,
            batch_rows: batch_rows.max(1),
            inputs: Vec::with_capacity(runs.len()),
            heap: Vec::with_capacity(runs.len()),
            staged: Vec::new(),
            order: Vec::new(),
        };
        for run in runs {
            let reader = run.open(&merge.schema)?;
            merge.inputs.push(Input {
                reader,
                path: run.path().to_owned(),
                slot: 0,
                row: 0,
                len: 0,
                ends: None,
                keys: None,
            });
            let input = merge.inputs.len() - 1;
            if merge.load(input)? {
                merge.heap.push(input);
            }
        }
        for position in (0..merge.heap.len() / 2).rev() {
            merge.sift_down(position);
        }
        Ok(merge)
    }

    /// The next merged batch, or `None` when every run is used up.
    ///
    /// # Errors
    /// When a run cannot be read (a corrupt or truncated temporary file).
    pub fn next_batch(&mut self) -> Result<Option<RecordBatch>, SpillError> {
        while self.order.len() < self.batch_rows {
            let Some(&top) = self.heap.first() else {
                break;
            };
            let take = self
                .rows_first(top)?
                .min(self.batch_rows - self.order.len());
            let input = &mut self.inputs[top];
            let slot = input.slot;
            self.order
                .extend((input.row..input.row + take).map(|row| (slot, row)));
            input.row += take;
            if input.row < input.len {
                self.convert(top)?;
            } else if !self.load(top)? {
                let last = self.heap.len() - 1;
                self.heap.swap(0, last);
                self.heap.pop();
            }
            self.sift_down(0);
        }
        if self.order.is_empty() {
            return Ok(None);
        }
        self.emit().map(Some)
    }

    /// Gathers the rows in `order` into a batch and forgets batches no input still points at.
    fn emit(&mut self) -> Result<RecordBatch, SpillError> {
        // Gathering fails only on a bug (mismatched batches); name a run all the same.
        let path = self
            .inputs
            .first()
            .map_or(Path::new(""), |i| i.path.as_path());
        let batch = gather_rows(&self.staged, &self.order)
            .and_then(|batch| batch.with_schema(self.schema.clone()))
            .map_err(SpillError::reading(path))?;
        self.order.clear();
        let staged = std::mem::take(&mut self.staged);
        for &i in &self.heap {
            let input = &mut self.inputs[i];
            self.staged.push(staged[input.slot].clone());
            input.slot = self.staged.len() - 1;
        }
        Ok(batch)
    }

    /// Reads input `i`'s next non-empty batch; false when the run is used up.
    fn load(&mut self, i: usize) -> Result<bool, SpillError> {
        let input = &mut self.inputs[i];
        while let Some(batch) = input
            .reader
            .next_batch(&self.nulls)
            .map_err(SpillError::reading(&input.path))?
        {
            if batch.num_rows() == 0 {
                continue;
            }
            input.ends = self
                .keys
                .as_ref()
                .map(|keys| keys.of_ends(&batch))
                .transpose()
                .map_err(SpillError::reading(&input.path))?;
            input.keys = None;
            input.row = 0;
            input.len = batch.num_rows();
            self.staged.push(batch);
            input.slot = self.staged.len() - 1;
            return Ok(true);
        }
        Ok(false)
    }

    /// Converts the sort keys of every row of input `i`'s batch, unless done already.
    fn convert(&mut self, i: usize) -> Result<(), SpillError> {
        let input = &mut self.inputs[i];
        if let (None, Some(keys)) = (&input.keys, &self.keys) {
            let batch = &self.staged[input.slot];
            input.keys = Some(keys.of(batch).map_err(SpillError::reading(&input.path))?);
        }
        Ok(())
    }

    /// How many of the heap's top input's next rows (at least one) come before every other
    /// input's current row: all of them go out in one step. Runs that do not overlap (a day's
    /// runs often hold different DAGs) then cost a comparison or two per batch, not per row.
    ///
    /// # Errors
    /// When the keys of the top input's batch cannot be converted (a bug).
    fn rows_first(&mut self, top: usize) -> Result<usize, SpillError> {
        let runner_up = match (self.heap.get(1), self.heap.get(2)) {
            (Some(&a), Some(&b)) => Some(if self.before(a, b) { a } else { b }),
            (a, b) => a.or(b).copied(),
        };
        let (row, len) = (self.inputs[top].row, self.inputs[top].len);
        let Some(other) = runner_up else {
            return Ok(len - row);
        };
        if self.row_before(top, len - 1, other) {
            return Ok(len - row);
        }
        // Rows in between are compared from here on.
        self.convert(top)?;
        let input = &self.inputs[top];
        let first = |row: usize| self.row_before(top, row, other);
        // Rows of a run are sorted: `first` holds up to some row and fails after it. It holds
        // at the current row (the heap's order) and fails at the last.
        let (mut low, mut high) = (input.row + 1, input.len - 1);
        if !first(low) {
            return Ok(1);
        }
        while low < high {
            let middle = low + (high - low) / 2;
            if first(middle) {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        Ok(low - input.row)
    }

    /// Whether input `a`'s current row comes before input `b`'s.
    fn before(&self, a: usize, b: usize) -> bool {
        self.row_before(a, self.inputs[a].row, b)
    }

    /// Whether row `row` of input `a`'s batch comes before input `b`'s current row (equal keys:
    /// the earlier run first).
    fn row_before(&self, a: usize, row: usize, b: usize) -> bool {
        let keys = match (self.key(a, row), self.key(b, self.inputs[b].row)) {
            (Some(ka), Some(kb)) => ka.cmp(&kb),
            _ => std::cmp::Ordering::Equal,
        };
        keys.then(a.cmp(&b)).is_lt()
    }

    /// The sort key of row `row` of input `i`'s batch; `None` without sort columns. Without
    /// the keys of all its rows, `row` is the first or the last (see [`Input::keys`]).
    fn key(&self, i: usize, row: usize) -> Option<Row<'_>> {
        self.keys.as_ref()?;
        let input = &self.inputs[i];
        if let Some(keys) = &input.keys {
            return Some(keys.row(row));
        }
        debug_assert!(
            row == 0 || row + 1 == input.len,
            "row {row} of {}",
            input.len
        );
        input
            .ends
            .as_ref()
            .map(|ends| ends.row(usize::from(row != 0)))
    }

    fn sift_down(&mut self, mut position: usize) {
        let n = self.heap.len();
        loop {
            let (left, right) = (2 * position + 1, 2 * position + 2);
            let mut smallest = position;
            if left < n && self.before(self.heap[left], self.heap[smallest]) {
                smallest = left;
            }
            if right < n && self.before(self.heap[right], self.heap[smallest]) {
                smallest = right;
            }
            if smallest == position {
                return;
            }
            self.heap.swap(position, smallest);
            position = smallest;
        }
    }
}
