//! From a decoded batch to the canonical batch: columns the source query already produced pass
//! through; payload columns are decoded from their raw bytes (each raw column once); columns the
//! source version lacks are all NULL.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, RecordBatch, RecordBatchOptions, new_null_array};
use arrow::error::ArrowError;

use crate::remap::{PayloadKind, split_payload_column};
use crate::source::query::{Output, PayloadPart, ReadPlan};

/// Builds the canonical batch of `plan` from a batch decoded with `plan.decode_schema`.
///
/// # Errors
/// When a column has NULLs the canonical schema forbids, or the batch does not match the plan.
pub fn assemble(plan: &ReadPlan, decoded: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    let mut payloads: HashMap<(usize, PayloadKind), (ArrayRef, ArrayRef)> = HashMap::new();
    let mut columns = Vec::with_capacity(plan.outputs.len());
    for (output, field) in plan.outputs.iter().zip(plan.output_schema.fields()) {
        let column = match output {
            Output::Column(index) => decoded.column(*index).clone(),
            Output::Null => new_null_array(field.data_type(), decoded.num_rows()),
            Output::Payload { raw, kind, part } => {
                let (json, raw_bytes) = match payloads.entry((*raw, *kind)) {
                    Entry::Occupied(entry) => entry.into_mut(),
                    Entry::Vacant(entry) => {
                        let bytes =
                            decoded.column(*raw).as_binary_opt::<i32>().ok_or_else(|| {
                                ArrowError::InvalidArgumentError(format!(
                                    "payload column {raw} is not binary"
                                ))
                            })?;
                        let (json, raw_bytes) = split_payload_column(*kind, bytes);
                        entry.insert((Arc::new(json), Arc::new(raw_bytes)))
                    }
                };
                match part {
                    PayloadPart::Json => json.clone(),
                    PayloadPart::Raw => raw_bytes.clone(),
                }
            }
        };
        columns.push(column);
    }
    RecordBatch::try_new_with_options(
        plan.output_schema.clone(),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(decoded.num_rows())),
    )
}
