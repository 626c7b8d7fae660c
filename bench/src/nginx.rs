//! nginx with `auth_pam`, which runs a whole PAM authentication and
//! account check for every HTTP request: requests a second with a key
//! (pam_apikey), with pam_permit, and with no authentication, the three
//! servers taking turns in every round. Clients send HTTP/1.0 requests
//! (a new connection each, as `ab` does without keep-alive) from threads
//! of this process, to 127.0.0.1 only.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apikey_tests::services::Nginx;
use apikey_tests::{PamServices, TestUser};
use serde_json::{json, Value};

use crate::load::round1;

/// Concurrent clients, as in the measurement (`ab -c 8`).
pub const CLIENTS: usize = 8;

pub struct Server<'a> {
    pub label: &'a str,
    /// The PAM stack, or `None` for no authentication.
    pub stack: Option<String>,
    /// user:password sent as HTTP Basic.
    pub credentials: String,
}

pub struct Rate {
    pub label: String,
    /// Requests a second, one per round.
    pub rounds: Vec<f64>,
    pub errors: u64,
    pub first_error: Option<String>,
}

impl Rate {
    pub fn median(&self) -> f64 {
        let mut r = self.rounds.clone();
        r.sort_by(f64::total_cmp);
        r.get(r.len() / 2).copied().unwrap_or(0.0)
    }

    pub fn range(&self) -> (f64, f64) {
        let lo = self.rounds.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = self.rounds.iter().copied().fold(0.0, f64::max);
        (if lo.is_finite() { lo } else { 0.0 }, hi)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "server": self.label,
            "median_per_s": round1(self.median()),
            "rounds_per_s": self.rounds.iter().map(|r| round1(*r)).collect::<Vec<_>>(),
            "errors": self.errors,
            "first_error": self.first_error,
        })
    }
}

/// Starts one nginx per server (workers as `worker`), then measures them
/// in turn for `rounds` rounds of `window` each after `warmup`.
pub fn run(
    servers: &[Server<'_>],
    worker: &TestUser,
    rounds: usize,
    warmup: Duration,
    window: Duration,
) -> Result<Vec<Rate>, String> {
    let mut running = Vec::new();
    for (i, server) in servers.iter().enumerate() {
        let pam = PamServices::new();
        let service = format!("nginx-bench-{i}");
        if let Some(stack) = &server.stack {
            pam.add(&service, stack);
        }
        let nginx = Nginx::start_with(
            &pam,
            server.stack.as_ref().map(|_| service.as_str()),
            worker,
        );
        running.push((pam, nginx));
    }
    let mut rates: Vec<Rate> = servers
        .iter()
        .map(|s| Rate {
            label: s.label.to_string(),
            rounds: Vec::new(),
            errors: 0,
            first_error: None,
        })
        .collect();
    for round in 0..rounds.max(1) {
        // Alternate the order, as the other parts do.
        let order: Vec<usize> = if round % 2 == 0 {
            (0..servers.len()).collect()
        } else {
            (0..servers.len()).rev().collect()
        };
        for i in order {
            let request = request(&servers[i].credentials);
            let (per_s, errors, first) = load(running[i].1.port(), &request, warmup, window);
            rates[i].rounds.push(per_s);
            rates[i].errors += errors;
            if rates[i].first_error.is_none() {
                rates[i].first_error = first;
            }
        }
    }
    Ok(rates)
}

fn request(credentials: &str) -> Vec<u8> {
    format!(
        "GET / HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Basic {}\r\n\r\n",
        base64(credentials.as_bytes())
    )
    .into_bytes()
}

/// One request on a new connection; Ok when the answer is 200.
fn one(port: u16, request: &[u8]) -> Result<(), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    s.write_all(request).map_err(|e| format!("send: {e}"))?;
    let mut answer = Vec::with_capacity(512);
    s.read_to_end(&mut answer)
        .map_err(|e| format!("read: {e}"))?;
    if answer.starts_with(b"HTTP/1.1 200") || answer.starts_with(b"HTTP/1.0 200") {
        Ok(())
    } else {
        let line = answer.split(|b| *b == b'\r').next().unwrap_or_default();
        Err(format!("answered {}", String::from_utf8_lossy(line)))
    }
}

/// `CLIENTS` threads sending requests back to back: requests a second
/// over `window`, after `warmup`; errors and the first one.
fn load(
    port: u16,
    request: &[u8],
    warmup: Duration,
    window: Duration,
) -> (f64, u64, Option<String>) {
    let counting = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let first = Arc::new(Mutex::new(None));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (counting, stop, done, errors, first) = (
                counting.clone(),
                stop.clone(),
                done.clone(),
                errors.clone(),
                first.clone(),
            );
            let request = request.to_vec();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let result = one(port, &request);
                    if !counting.load(Ordering::Relaxed) {
                        continue;
                    }
                    match result {
                        Ok(()) => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            first
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .get_or_insert(e);
                        }
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(warmup);
    counting.store(true, Ordering::Relaxed);
    let started = Instant::now();
    std::thread::sleep(window);
    let counted = done.load(Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    counting.store(false, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let first = first.lock().unwrap_or_else(|p| p.into_inner()).take();
    (
        counted as f64 / elapsed,
        errors.load(Ordering::Relaxed),
        first,
    )
}

fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> shift & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_as_rfc_4648_shows_it() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn medians_and_ranges() {
        let r = Rate {
            label: "x".into(),
            rounds: vec![3.0, 1.0, 2.0],
            errors: 0,
            first_error: None,
        };
        assert_eq!(r.median(), 2.0);
        assert_eq!(r.range(), (1.0, 3.0));
    }
}
