//! `ferry-bench max`: a closed-loop load generator that never sleeps.
//!
//! wrk waits in `epoll_wait` between responses; on loopback the kernel wakes it from the
//! *server's* core, inside the server's `writev`, and on this virtual machine that
//! wake-up (an inter-processor interrupt to a halted vCPU) is about a tenth of the
//! server's time per exchange (BENCHMARKS.md, from `perf`). A client on another machine
//! costs the server nothing of the kind. This generator keeps its core busy polling
//! non-blocking sockets, so its sockets never have a sleeping waiter to wake and the
//! server's core pays only for its own work. HTTP/1.1 keep-alive, one request in flight
//! per connection, responses framed by `Content-Length`.
//!
//! `ferry-bench load` (see [`fixed`]) is the open-loop twin: requests are due at a fixed
//! rate, each goes out on an idle connection the moment it is due (spinning, not a
//! timer with a millisecond grain), and its latency counts from when it was due, so a
//! stalled server cannot hide its queue (coordinated omission).

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

struct Conn {
    stream: TcpStream,
    request: usize,
    written: usize,
    buf: Vec<u8>,
    /// When the request in flight was sent (closed loop) or due (open loop).
    sent: Instant,
    busy: bool,
}

impl Conn {
    fn open(authority: &str) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(authority)?;
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        Ok(Self {
            stream,
            request: 0,
            written: 0,
            buf: Vec::with_capacity(4096),
            sent: Instant::now(),
            busy: false,
        })
    }

    fn start(&mut self, request: usize, at: Instant) {
        self.request = request;
        self.written = 0;
        self.sent = at;
        self.busy = true;
    }

    /// Writes what is left of the request, reads what has arrived; once the response is
    /// whole, whether it was a 200.
    fn poll(&mut self, requests: &[Vec<u8>], chunk: &mut [u8]) -> anyhow::Result<Option<bool>> {
        let req = &requests[self.request];
        if self.written < req.len() {
            match self.stream.write(&req[self.written..]) {
                Ok(n) => self.written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
            return Ok(None);
        }
        match self.stream.read(chunk) {
            Ok(0) => anyhow::bail!("the server closed a connection"),
            Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let Some((ok, len)) = complete(&self.buf) else {
            return Ok(None);
        };
        self.buf.drain(..len);
        self.busy = false;
        Ok(Some(ok))
    }
}

/// `POST /token` requests, one per form body.
fn requests(url: &str, bodies: &str) -> anyhow::Result<(String, Vec<Vec<u8>>)> {
    let authority = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow::anyhow!("only http:// URLs"))?
        .trim_end_matches('/')
        .to_owned();
    let requests: Vec<Vec<u8>> = bodies
        .lines()
        .filter(|l| !l.is_empty())
        .map(|body| {
            format!(
                "POST /token HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        })
        .collect();
    anyhow::ensure!(!requests.is_empty(), "no bodies");
    Ok((authority, requests))
}

/// Latency percentiles of `latencies` (microseconds), in milliseconds.
fn percentiles(latencies: &mut [u32]) -> impl Fn(f64) -> f64 + '_ {
    latencies.sort_unstable();
    move |p: f64| {
        let i = ((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1));
        latencies.get(i).map_or(f64::NAN, |us| f64::from(*us) / 1e3)
    }
}

fn micros(since: Instant) -> u32 {
    u32::try_from(since.elapsed().as_micros()).unwrap_or(u32::MAX)
}

/// The response's status and total length, once `buf` holds all of it.
fn complete(buf: &[u8]) -> Option<(bool, usize)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(usize::MAX / 2);
    (buf.len() >= end + length).then(|| (head.starts_with("HTTP/1.1 200 "), end + length))
}

/// Drives `conns` connections to `url` (`http://host:port`) with the form bodies in
/// `bodies` for `secs` seconds and prints the rate and latency percentiles.
pub fn run(url: &str, bodies: &str, conns: usize, secs: u64) -> anyhow::Result<()> {
    let (authority, requests) = requests(url, bodies)?;
    let mut pool = (0..conns)
        .map(|_| Conn::open(&authority))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut next = 0usize;
    let mut latencies: Vec<u32> = Vec::with_capacity(1 << 20);
    let mut errors = 0u64;
    let mut chunk = [0u8; 16384];
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let mut polls = 0u32;
    loop {
        polls = polls.wrapping_add(1);
        if polls.is_multiple_of(64) && Instant::now() >= deadline {
            break;
        }
        for c in &mut pool {
            if !c.busy {
                c.start(next, Instant::now());
                next = (next + 1) % requests.len();
            }
            if let Some(ok) = c.poll(&requests, &mut chunk)? {
                latencies.push(micros(c.sent));
                errors += u64::from(!ok);
            }
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let n = latencies.len();
    let pct = percentiles(&mut latencies);
    println!(
        "max_rps={:.0} max_requests={n} max_errors={errors} max_p50_ms={:.3} max_p99_ms={:.3}",
        n as f64 / wall,
        pct(0.50),
        pct(0.99)
    );
    Ok(())
}

/// Sends `rate` requests per second for `secs` seconds, open loop, on up to `conns`
/// connections, and prints the latency percentiles counted from each request's due time.
pub fn fixed(url: &str, bodies: &str, rate: u64, secs: u64, conns: usize) -> anyhow::Result<()> {
    let (authority, requests) = requests(url, bodies)?;
    let mut pool = (0..conns)
        .map(|_| Conn::open(&authority))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let total = rate * secs;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut latencies: Vec<u32> = Vec::with_capacity(total as usize);
    let (mut errors, mut due_sent, mut done) = (0u64, 0u64, 0u64);
    let mut chunk = [0u8; 16384];
    let start = Instant::now();
    let give_up = start + Duration::from_secs(secs + 10);
    while done < total {
        let now = Instant::now();
        anyhow::ensure!(now < give_up, "responses still missing 10 s after the run");
        // Every request that is due goes out on an idle connection; with none idle it
        // waits, and its wait counts.
        while due_sent < total {
            let due = start + interval.mul_f64(due_sent as f64);
            if due > now {
                break;
            }
            let Some(c) = pool.iter_mut().find(|c| !c.busy) else {
                break;
            };
            c.start((due_sent as usize) % requests.len(), due);
            due_sent += 1;
        }
        for c in pool.iter_mut().filter(|c| c.busy) {
            if let Some(ok) = c.poll(&requests, &mut chunk)? {
                latencies.push(micros(c.sent));
                errors += u64::from(!ok);
                done += 1;
            }
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let pct = percentiles(&mut latencies);
    println!(
        "rate={rate} sent={total} ok={} errors={errors} achieved_per_s={:.0} p50_ms={:.3} p99_ms={:.3} p999_ms={:.3} max_ms={:.3}",
        total - errors,
        total as f64 / wall,
        pct(0.50),
        pct(0.99),
        pct(0.999),
        pct(1.0)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn framing() {
        let r = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(super::complete(r), Some((true, r.len())));
        assert_eq!(super::complete(&r[..r.len() - 1]), None);
        let bad = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\nHTTP";
        assert_eq!(super::complete(bad), Some((false, bad.len() - 4)));
    }
}
