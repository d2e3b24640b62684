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

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

struct Conn {
    stream: TcpStream,
    request: usize,
    written: usize,
    buf: Vec<u8>,
    sent: Instant,
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
    let authority = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow::anyhow!("only http:// URLs"))?
        .trim_end_matches('/');
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
    let mut next = 0usize;
    let mut pool = Vec::with_capacity(conns);
    for _ in 0..conns {
        let stream = TcpStream::connect(authority)?;
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        pool.push(Conn {
            stream,
            request: next,
            written: 0,
            buf: Vec::with_capacity(4096),
            sent: Instant::now(),
        });
        next = (next + 1) % requests.len();
    }
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
            let req = &requests[c.request];
            if c.written < req.len() {
                match c.stream.write(&req[c.written..]) {
                    Ok(n) => c.written += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e.into()),
                }
                continue;
            }
            match c.stream.read(&mut chunk) {
                Ok(0) => anyhow::bail!("the server closed a connection"),
                Ok(n) => c.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e.into()),
            }
            if let Some((ok, len)) = complete(&c.buf) {
                let micros = c.sent.elapsed().as_micros();
                latencies.push(u32::try_from(micros).unwrap_or(u32::MAX));
                errors += u64::from(!ok);
                c.buf.drain(..len);
                c.request = next;
                next = (next + 1) % requests.len();
                c.written = 0;
                c.sent = Instant::now();
            }
        }
    }
    let wall = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1));
        latencies.get(i).map_or(f64::NAN, |us| f64::from(*us) / 1e3)
    };
    println!(
        "max_rps={:.0} max_requests={} max_errors={errors} max_p50_ms={:.3} max_p99_ms={:.3}",
        latencies.len() as f64 / wall,
        latencies.len(),
        pct(0.50),
        pct(0.99)
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
