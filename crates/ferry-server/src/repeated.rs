//! Warnings a request can cause, logged at most once per interval with a count. A fault
//! every request hits (a shortened token lifetime, an outage answered with 503) then
//! makes one line per interval instead of one per request, and no client can flood the
//! logs: the first occurrence is logged at once, the next ones are counted, and the
//! count is logged when the interval ends (by the next occurrence or by [`flush`]).
//!
//! Keys are the call sites' fixed messages (`&'static str`), so the table holds at most
//! one entry per call site, whatever the traffic.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ferry_verify::time::instant_now;

/// The interval: at most one line per message per this.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// The level a message is logged at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// `warn`.
    Warn,
    /// `error`.
    Error,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// When the current interval began (the last line logged).
    since: Instant,
    /// Occurrences since then, not yet logged.
    pending: u64,
    level: Level,
}

/// The per-message counters.
#[derive(Debug)]
pub struct RepeatedWarnings {
    interval: Duration,
    entries: Mutex<HashMap<&'static str, Entry>>,
}

impl Default for RepeatedWarnings {
    fn default() -> Self {
        Self::new(INTERVAL)
    }
}

impl RepeatedWarnings {
    /// Counters logging at most once per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// One occurrence of `message` at `now`: `Some(n)` when a line is to be logged now,
    /// standing for `n` occurrences (this one and those counted since the last line);
    /// `None` when it was only counted.
    pub fn note(&self, message: &'static str, now: Instant) -> Option<u64> {
        self.note_at(message, Level::Warn, now)
    }

    /// [`Self::note`] for a message logged at `level` (by [`flush`] too). A call site
    /// that wants its first line in an interval to carry detail logs that line itself
    /// when this returns `Some`.
    pub fn note_at(&self, message: &'static str, level: Level, now: Instant) -> Option<u64> {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match entries.get_mut(message) {
            None => {
                entries.insert(
                    message,
                    Entry {
                        since: now,
                        pending: 0,
                        level,
                    },
                );
                Some(1)
            }
            Some(e) if now.saturating_duration_since(e.since) >= self.interval => {
                let n = e.pending + 1;
                e.since = now;
                e.pending = 0;
                Some(n)
            }
            Some(e) => {
                e.pending += 1;
                None
            }
        }
    }

    /// The counts whose interval ended by `now` without a line: each is to be logged
    /// once, and starts a new interval.
    pub fn due(&self, now: Instant) -> Vec<(&'static str, u64)> {
        self.due_with_level(now)
            .into_iter()
            .map(|(m, n, _)| (m, n))
            .collect()
    }

    fn due_with_level(&self, now: Instant) -> Vec<(&'static str, u64, Level)> {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out = Vec::new();
        for (message, e) in entries.iter_mut() {
            if e.pending > 0 && now.saturating_duration_since(e.since) >= self.interval {
                out.push((*message, e.pending, e.level));
                e.since = now;
                e.pending = 0;
            }
        }
        out.sort_unstable();
        out
    }

    /// Notes `message` now and logs it at warn level when due, with `repeated` = the
    /// occurrences the line stands for.
    pub fn warn(&self, message: &'static str) {
        if let Some(n) = self.note_at(message, Level::Warn, instant_now()) {
            log(message, n, Level::Warn, self.interval);
        }
    }

    /// As [`Self::warn`], at error level.
    pub fn error(&self, message: &'static str) {
        if let Some(n) = self.note_at(message, Level::Error, instant_now()) {
            log(message, n, Level::Error, self.interval);
        }
    }
}

fn log(message: &'static str, repeated: u64, level: Level, interval: Duration) {
    let interval_s = interval.as_secs();
    match level {
        Level::Error => tracing::error!(repeated, interval_s, "{message}"),
        Level::Warn => tracing::warn!(repeated, interval_s, "{message}"),
    }
}

/// Logs every count whose interval ended: run every [`INTERVAL`] by a background task,
/// so the count of a burst that stopped is not lost.
pub fn flush(warnings: &RepeatedWarnings) {
    for (message, n, level) in warnings.due_with_level(instant_now()) {
        log(message, n, level, warnings.interval);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const A: &str = "token lifetime shortened";
    const B: &str = "requests answered 503";

    #[test]
    fn a_thousand_occurrences_make_one_line_per_interval_with_their_count() {
        let w = RepeatedWarnings::new(Duration::from_secs(10));
        let t0 = instant_now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // The first is logged at once; the rest of the interval is only counted.
        assert_eq!(w.note(A, at(0)), Some(1));
        let lines = (1..1_000).filter(|i| w.note(A, at(*i)).is_some()).count();
        assert_eq!(lines, 0);
        // Another message has its own interval.
        assert_eq!(w.note(B, at(5)), Some(1));
        // Nothing is due before the interval ends...
        assert!(w.due(at(9_999)).is_empty());
        // ...then the count of the burst, once.
        assert_eq!(w.due(at(10_000)), vec![(A, 999)]);
        assert!(w.due(at(10_001)).is_empty());
        // An occurrence after a flushed interval is counted for the next line.
        assert_eq!(w.note(A, at(10_500)), None);
        assert_eq!(w.note(A, at(20_000)), Some(2));
    }

    #[test]
    fn a_rare_warning_is_logged_every_time() {
        // Twin: occurrences an interval apart are each logged, with a count of one.
        let w = RepeatedWarnings::new(Duration::from_secs(10));
        let t0 = instant_now();
        for i in 0..5 {
            assert_eq!(w.note(A, t0 + Duration::from_secs(10 * i)), Some(1));
        }
    }
}
