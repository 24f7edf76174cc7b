//! From a decoded batch to the canonical batch: columns the source query already produced pass
//! through; payload columns are decoded from their raw bytes (each raw column once).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, RecordBatch};
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
    for output in &plan.outputs {
        let column = match output {
            Output::Column(index) => decoded.column(*index).clone(),
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
    RecordBatch::try_new(plan.output_schema.clone(), columns)
}
