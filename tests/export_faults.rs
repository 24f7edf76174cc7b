//! `contrail export` when things go wrong: bad input is refused before anything is written, and
//! an export that fails or is killed half-way leaves no manifest, so readers never see a half
//! dataset, and a re-run completes it.
