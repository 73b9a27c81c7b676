//! True figures for the `stats` block of a response.

/// What a query cost. Filled as the query runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryStats {
    /// Objects whose footers were consulted.
    pub objects_considered: u64,
    /// Objects the scan opened.
    pub objects_scanned: u64,
    /// Streams matching the selector.
    pub streams: u64,
    /// Compressed bytes of the objects scanned.
    pub bytes_scanned: u64,
    /// Line bytes in the matching streams within the time range, per the catalogs: what a
    /// chunk store would have decompressed.
    pub bytes_processed: u64,
    /// Entries in the matching streams within the time range, per the catalogs.
    pub lines_processed: u64,
    /// Entries that passed the whole pipeline (before the limit).
    pub post_filter_lines: u64,
    /// Entries returned.
    pub entries_returned: u64,
    /// Wall time of the query, seconds.
    pub exec_time_s: f64,
    /// Storage requests of the scans and their estimated price (`stats.parquetry`).
    pub cost: crate::cost::CostStats,
    /// What the answer may lack, for the response's top-level `warnings` (Prometheus API
    /// style, which Grafana shows next to the result): objects left out as unreadable.
    pub warnings: Vec<String>,
}

impl QueryStats {
    /// Adds the counted figures of another part of the same query (a fan-out leaf). Objects
    /// two parts opened count once per part: each reads them, and pays for it.
    pub fn add(&mut self, other: &QueryStats) {
        self.objects_considered += other.objects_considered;
        self.objects_scanned += other.objects_scanned;
        self.streams += other.streams;
        self.bytes_scanned += other.bytes_scanned;
        self.bytes_processed += other.bytes_processed;
        self.lines_processed += other.lines_processed;
        self.post_filter_lines += other.post_filter_lines;
        self.cost.add(&other.cost);
        for w in &other.warnings {
            self.warn(w.clone());
        }
    }

    /// Adds a warning once, however many parts of the query met the same cause.
    pub fn warn(&mut self, warning: String) {
        if !self.warnings.contains(&warning) {
            self.warnings.push(warning);
        }
    }
}
