//! Closed-loop callers: each one sends its next call as soon as the last
//! one is answered, over a connection it keeps open, so the numbers are
//! what a busy host service sees and not connection set-up.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How long a run warms up (caller credentials cached, pages in memory)
/// and then how long it is measured.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub warmup: Duration,
    pub measure: Duration,
}

/// Latencies of the calls that started and ended inside the measured
/// window, and every unexpected answer of the whole run.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub callers: usize,
    /// Sorted, nanoseconds.
    pub latencies_ns: Vec<u64>,
    pub seconds: f64,
    pub errors: u64,
    pub first_error: Option<String>,
}

impl Sample {
    /// The smallest latency with at least `p` of the calls at or below it.
    pub fn percentile_us(&self, p: f64) -> f64 {
        let n = self.latencies_ns.len();
        if n == 0 {
            return 0.0;
        }
        let rank = ((p * n as f64).ceil() as usize).clamp(1, n);
        self.latencies_ns[rank - 1] as f64 / 1000.0
    }

    pub fn p50_us(&self) -> f64 {
        self.percentile_us(0.50)
    }

    pub fn p99_us(&self) -> f64 {
        self.percentile_us(0.99)
    }

    pub fn calls(&self) -> usize {
        self.latencies_ns.len()
    }

    pub fn per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.calls() as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// Adds the calls of another run with as many callers (rounds of one
    /// measurement interleaved with others).
    pub fn merge(&mut self, other: Sample) {
        self.callers = other.callers;
        self.latencies_ns.extend(other.latencies_ns);
        self.latencies_ns.sort_unstable();
        self.seconds += other.seconds;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "callers": self.callers,
            "calls": self.calls(),
            "p50_us": round1(self.p50_us()),
            "p99_us": round1(self.p99_us()),
            "per_s": self.per_second().round(),
            "errors": self.errors,
        })
    }
}

pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Runs `callers` loops of `call(i)` for the window. A call's `Err` is an
/// unexpected answer (a valid key refused, a bus error), counted and kept
/// for the report; it never stops the run.
pub async fn closed_loop<F, Fut>(callers: usize, window: Window, call: F) -> Sample
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let call = Arc::new(call);
    let start = Instant::now();
    let measure_from = start + window.warmup;
    let end = measure_from + window.measure;
    let tasks: Vec<_> = (0..callers)
        .map(|i| {
            let call = Arc::clone(&call);
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0u64;
                let mut first_error = None;
                loop {
                    let t0 = Instant::now();
                    if t0 >= end {
                        break;
                    }
                    let outcome = call(i).await;
                    let t1 = Instant::now();
                    if let Err(e) = outcome {
                        errors += 1;
                        first_error.get_or_insert(e);
                    }
                    if t0 >= measure_from && t1 <= end {
                        latencies.push((t1 - t0).as_nanos() as u64);
                    }
                }
                (latencies, errors, first_error)
            })
        })
        .collect();
    let mut sample = Sample {
        callers,
        seconds: window.measure.as_secs_f64(),
        ..Sample::default()
    };
    for task in tasks {
        let (latencies, errors, first_error) = task.await.expect("caller task");
        sample.latencies_ns.extend(latencies);
        sample.errors += errors;
        if sample.first_error.is_none() {
            sample.first_error = first_error;
        }
    }
    sample.latencies_ns.sort_unstable();
    sample
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let s = Sample {
            latencies_ns: (1..=100).map(|i| i * 1000).collect(),
            seconds: 2.0,
            ..Sample::default()
        };
        assert_eq!(s.p50_us(), 50.0);
        assert_eq!(s.p99_us(), 99.0);
        assert_eq!(s.percentile_us(1.0), 100.0);
        assert_eq!(s.per_second(), 50.0);
        assert_eq!(Sample::default().p99_us(), 0.0);
    }

    #[test]
    fn merged_rounds_count_as_one_run() {
        let round = |from: u64| Sample {
            callers: 8,
            latencies_ns: (from..from + 50).map(|i| i * 1000).collect(),
            seconds: 1.0,
            errors: 1,
            first_error: Some(format!("e{from}")),
        };
        let mut all = Sample::default();
        all.merge(round(51));
        all.merge(round(1));
        assert_eq!((all.callers, all.calls(), all.errors), (8, 100, 2));
        assert_eq!(
            (all.p50_us(), all.p99_us(), all.per_second()),
            (50.0, 99.0, 50.0)
        );
        assert_eq!(all.first_error.as_deref(), Some("e51"));
    }
}
