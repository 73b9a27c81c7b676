//! Figures the benches read from the environment and from `/proc`: sizes chosen by variables,
//! CPU time and peak memory of a process, medians, bytes on disk.

use std::path::Path;
use std::time::Duration;

/// `k` parsed from the environment, or `default` when unset or unparsable.
pub fn env_or<T: std::str::FromStr>(k: &str, default: T) -> T {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The process whose figures are read: this one, or a child by pid.
#[derive(Debug, Clone, Copy)]
pub enum Proc {
    /// The running process.
    This,
    /// Another process, by pid.
    Pid(u32),
}

impl Proc {
    fn file(self, name: &str) -> String {
        let path = match self {
            Proc::This => format!("/proc/self/{name}"),
            Proc::Pid(pid) => format!("/proc/{pid}/{name}"),
        };
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// utime + stime, in seconds (0 where `/proc` is missing).
    pub fn cpu_seconds(self) -> f64 {
        self.stat_seconds(11)
    }

    /// cutime + cstime: the CPU of the process's children that have exited and been waited
    /// for (a `Command::output()` child, once it returns), in seconds.
    pub fn children_cpu_seconds(self) -> f64 {
        self.stat_seconds(13)
    }

    /// The sum of the `stat` fields `at` and `at + 1` (counted after the command name), in
    /// seconds.
    fn stat_seconds(self, at: usize) -> f64 {
        let stat = self.file("stat");
        // The command name may hold spaces: fields are counted after its closing parenthesis.
        let after = stat.rsplit(')').next().unwrap_or("");
        let f: Vec<&str> = after.split_whitespace().collect();
        let ticks: f64 = f.get(at).and_then(|v| v.parse().ok()).unwrap_or(0.0)
            + f.get(at + 1).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        ticks / 100.0
    }

    /// Starts a new peak: the kernel sets VmHWM to the current resident memory (`5` written to
    /// `clear_refs`), so [`Proc::peak_rss_mib`] then tells the peak of what ran since.
    pub fn reset_peak_rss(self) {
        let path = match self {
            Proc::This => "/proc/self/clear_refs".to_string(),
            Proc::Pid(pid) => format!("/proc/{pid}/clear_refs"),
        };
        // Not every kernel or container allows it; the peak then stays the process's own.
        let _ = std::fs::write(path, "5");
    }

    /// Peak resident memory (VmHWM), in MiB (0 where `/proc` is missing).
    pub fn peak_rss_mib(self) -> f64 {
        self.file("status")
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(0.0)
    }
}

/// The middle of `v` once sorted (the upper middle for an even count).
pub fn median(mut v: Vec<Duration>) -> Duration {
    assert!(!v.is_empty(), "median of no samples");
    v.sort();
    v[v.len() / 2]
}

/// Bytes and files below `p`, recursively.
pub fn dir_size(p: &Path) -> (u64, u64) {
    let (mut bytes, mut files) = (0, 0);
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let path = e.path();
            if path.is_dir() {
                let (b, f) = dir_size(&path);
                bytes += b;
                files += f;
            } else if let Ok(m) = e.metadata() {
                bytes += m.len();
                files += 1;
            }
        }
    }
    (bytes, files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_used_memory_and_figures_parse() {
        assert!(Proc::This.peak_rss_mib() > 0.0);
        assert!(Proc::This.cpu_seconds() >= 0.0);
        assert_eq!(env_or("PARQUETRY_TEST_SUPPORT_UNSET_VARIABLE", 7usize), 7);
        let ms = Duration::from_millis;
        assert_eq!(median(vec![ms(3), ms(1), ms(2)]), ms(2));
    }
}

/// The data of the bytes-at-rest benches (`parquetry-store`'s `format` bench and the
/// `atrest` comparison with Loki), chosen by `PARQUETRY_BENCH_MB` (raw line volume, default
/// 200), `PARQUETRY_BENCH_STREAMS` (400), `PARQUETRY_BENCH_PUSH_KB` (raw line bytes per push,
/// 1024) and `PARQUETRY_BENCH_METADATA` (1: the trace id also as structured metadata). One
/// definition, so the two benches measure the same logs: forty minutes ending two days ago (a
/// closed day, so compaction takes all of it), `parquetry-loggen` seed 42.
#[derive(Debug, Clone, Copy)]
pub struct AtRestData {
    /// Raw line bytes to generate.
    pub target_bytes: u64,
    /// Streams.
    pub streams: usize,
    /// Raw line bytes per push.
    pub push_bytes: u64,
    /// Whether each entry carries its trace id as structured metadata.
    pub with_metadata: bool,
}

impl AtRestData {
    /// The sizes the environment asks for.
    pub fn from_env() -> AtRestData {
        AtRestData {
            target_bytes: env_or("PARQUETRY_BENCH_MB", 200) as u64 * 1_000_000,
            streams: env_or("PARQUETRY_BENCH_STREAMS", 400),
            push_bytes: env_or("PARQUETRY_BENCH_PUSH_KB", 1024) as u64 * 1024,
            with_metadata: env_or("PARQUETRY_BENCH_METADATA", 1) == 1,
        }
    }

    /// The generator, starting at the data's first entry.
    pub fn generator(&self) -> parquetry_loggen::LogGen {
        let day = crate::now_ns().div_euclid(crate::DAY_NS) - 2;
        let start = day * crate::DAY_NS + 3_600 * 1_000_000_000;
        let lines_per_stream = self.target_bytes / 165 / self.streams as u64;
        let step = (40 * 60 * 1_000_000_000) / lines_per_stream.max(1) as i64;
        parquetry_loggen::LogGen::new(42, self.streams, start, step)
    }

    /// Entries per stream in one push (`LogGen::batch`).
    pub fn per_stream(&self) -> usize {
        (self.push_bytes / 165 / self.streams as u64).max(1) as usize
    }
}
