//! Stand-in for `crate::remap::payload::json_to_pickle` until the `pickle` branch lands: the
//! generator must not carry a pickle encoder of its own, so this only delegates to serde-pickle
//! (protocol 3) and is replaced by the shared encoder on merge.

/// Pickles the JSON value in `json` (`None` where it does not parse, which the generator never
/// produces).
pub(crate) fn json_to_pickle(json: &str) -> Vec<u8> {
    serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .and_then(|value| serde_pickle::to_vec(&value, serde_pickle::SerOptions::new()).ok())
        .unwrap_or_default()
}
