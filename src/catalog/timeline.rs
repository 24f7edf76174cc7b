//! Values that change from one Airflow schema version to the next.

use crate::catalog::SchemaVersion;

/// A value keyed by the schema version it takes effect in; it holds until the next entry.
///
/// Entries are sorted by version index. Before the first entry there is no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeline<T> {
    entries: Vec<(usize, T)>,
}

impl<T> Timeline<T> {
    /// Builds a timeline from `(version index, value)` pairs that are strictly increasing.
    pub(crate) fn from_sorted(entries: Vec<(usize, T)>) -> Self {
        debug_assert!(entries.windows(2).all(|w| w[0].0 < w[1].0));
        Self { entries }
    }

    /// The value in force at `version`, if any.
    pub fn at(&self, version: &SchemaVersion) -> Option<&T> {
        self.at_index(version.index)
    }

    /// The value in force at the version with catalog index `index`, if any.
    pub fn at_index(&self, index: usize) -> Option<&T> {
        self.entries
            .iter()
            .rev()
            .find(|(from, _)| *from <= index)
            .map(|(_, value)| value)
    }

    /// All entries, oldest first, as `(version index, value)`.
    pub fn entries(&self) -> &[(usize, T)] {
        &self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_holds_until_next_entry() {
        let t = Timeline::from_sorted(vec![(1, "a"), (4, "b")]);
        assert_eq!(t.at_index(0), None);
        assert_eq!(t.at_index(1), Some(&"a"));
        assert_eq!(t.at_index(3), Some(&"a"));
        assert_eq!(t.at_index(4), Some(&"b"));
        assert_eq!(t.at_index(99), Some(&"b"));
    }
}
