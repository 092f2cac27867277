//! How a run reports its progress to whoever prints it.

/// Where a run tells its user how it goes: the caller prints it (a progress bar...).
pub trait Progress {
    /// A line about the run as a whole (its settings, a generator's note).
    fn note(&self, line: &str);
    /// The last trial's figures, replaced by the next.
    fn trial(&self, status: &str);
    /// A finished row's headline.
    fn row_done(&self, line: &str);
}
