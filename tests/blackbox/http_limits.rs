//! Connection-level limits, attacked over raw TCP: a header sent one byte at a time
//! (slowloris), a header that never ends, idle keep-alive connections, too many
//! connections from one address, and random method names that would otherwise grow the
//! metrics' label set. Every bound is asserted with a wide margin (cut off well before
//! several times the configured timeout), never as a speed.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use ferry_testkit::TestKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{Ferry, Setup};

/// The slack on every timing assertion: a cut-off must come within this much time of a
/// configured 1 s timeout, however loaded the machine is.
const MARGIN: Duration = Duration::from_secs(8);

fn start(tag: &str, limits: &str) -> (Setup, Ferry) {
    let setup = Setup::new(tag);
    let key = TestKey::rsa("dev");
    setup.jwks("keys.json", &[&key]);
    let ferry = setup.start(&format!(
            "issuer: https://ferry.example.com\ndata_dir: data\nlimits: {{ {limits} }}\nproviders:\n  - id: dev\n    issuer: https://idp.example.com\n    audiences: [https://ferry.example.com]\n    jwks: {{ file: keys.json }}\naudiences:\n  - audience: https://deploy.example.com\n    rules:\n      - allow: \"true\"\n"
        ));
    (setup, ferry)
}

async fn connect(ferry: &Ferry) -> TcpStream {
    TcpStream::connect(ferry.url.trim_start_matches("http://"))
        .await
        .unwrap()
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: ferry\r\n\r\n";

/// Reads one response: its status and body (by Content-Length). `None` when the
/// connection closed (or failed) before a whole response arrived, or nothing came
/// within the margin.
async fn response(s: &mut TcpStream) -> Option<(u16, Vec<u8>)> {
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let status: u16 = head.get(9..12)?.parse().ok()?;
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(Some(0), |v| v.trim().parse().ok())?;
                if buf.len() >= end + 4 + len {
                    return Some((status, buf[end + 4..end + 4 + len].to_vec()));
                }
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(MARGIN, read).await.ok().flatten()
}

/// Reads until the server closes the connection: what it sent before closing, or
/// `None` when it was still open after `limit`.
async fn until_closed(s: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut sent = Vec::new();
    let mut chunk = [0u8; 1024];
    let read = async {
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => sent.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(limit, read).await.ok()?;
    Some(sent)
}

#[tokio::test]
async fn a_header_sent_one_byte_at_a_time_is_cut_off() {
    let (_tmp, ferry) = start("slowloris", "header_read_timeout: 1s");
    // Attack: a valid start of a request, then one header byte every 200 ms, forever.
    let mut slow = connect(&ferry).await;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: ferry\r\nX-Slow: ")
        .await
        .unwrap();
    let started = Instant::now();
    let mut cut_off = false;
    let mut chunk = [0u8; 1024];
    while started.elapsed() < MARGIN {
        if slow.write_all(b"a").await.is_err() {
            cut_off = true;
            break;
        }
        let read = tokio::time::timeout(Duration::from_millis(200), slow.read(&mut chunk)).await;
        if let Ok(Ok(0) | Err(_)) = read {
            cut_off = true;
            break;
        }
    }
    assert!(
        cut_off,
        "a header dribbled for {MARGIN:?} was never cut off (header_read_timeout 1s)"
    );

    // Twin: the same request, sent at once, is answered.
    let mut prompt = connect(&ferry).await;
    prompt
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: ferry\r\nX-Slow: aaaa\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(response(&mut prompt).await, Some((200, b"ok".to_vec())));

    // A connection that never sends anything is closed by the same timeout…
    let mut silent = connect(&ferry).await;
    assert!(
        until_closed(&mut silent, MARGIN).await.is_some(),
        "a silent connection stayed open"
    );
    // …but a keep-alive connection between requests is idle, not reading a header: it
    // waits for the idle timeout (60 s by default), well past the 1 s header timeout.
    let mut kept = connect(&ferry).await;
    kept.write_all(HEALTHZ).await.unwrap();
    assert_eq!(response(&mut kept).await, Some((200, b"ok".to_vec())));
    tokio::time::sleep(Duration::from_secs(3)).await;
    kept.write_all(HEALTHZ).await.unwrap();
    assert_eq!(response(&mut kept).await, Some((200, b"ok".to_vec())));
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let (_tmp, ferry) = start("idle", "idle_timeout: 1s");
    let mut idle = connect(&ferry).await;
    idle.write_all(HEALTHZ).await.unwrap();
    assert_eq!(response(&mut idle).await, Some((200, b"ok".to_vec())));
    assert!(
        until_closed(&mut idle, MARGIN).await.is_some(),
        "an idle keep-alive connection stayed open past idle_timeout"
    );
    // Twin: reused at once, the connection serves the next request.
    let mut busy = connect(&ferry).await;
    for _ in 0..3 {
        busy.write_all(HEALTHZ).await.unwrap();
        assert_eq!(response(&mut busy).await, Some((200, b"ok".to_vec())));
    }
}

/// Writes a request head of `values` headers of `len` bytes each, unterminated unless
/// `end`; true when the server cut the connection (a write failed) before all of it was
/// written.
async fn write_headers(s: &mut TcpStream, values: usize, len: usize, end: bool) -> bool {
    if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: ferry\r\n")
        .await
        .is_err()
    {
        return true;
    }
    let value = "a".repeat(len);
    for i in 0..values {
        let line = format!("X-Pad-{i}: {value}\r\n");
        for piece in line.as_bytes().chunks(4096) {
            if s.write_all(piece).await.is_err() {
                return true;
            }
        }
    }
    end && s.write_all(b"\r\n").await.is_err()
}

#[tokio::test]
async fn a_header_larger_than_the_limit_is_refused_while_it_is_read() {
    // Default limits: max_header_bytes 16 KiB.
    let (_tmp, ferry) = start("bigheader", "");
    // Attack: 400 KB of header that never ends. Served with the limit applied only once
    // the header is complete, the server would buffer all of it and wait for more.
    let mut big = connect(&ferry).await;
    let cut_while_writing = write_headers(&mut big, 4, 100_000, false).await;
    if !cut_while_writing {
        // Whatever the kernel buffered, the server answers 431 (or just closes) without
        // waiting for the rest.
        let sent = until_closed(&mut big, MARGIN)
            .await
            .expect("the connection of an oversized header stayed open");
        assert!(
            sent.is_empty() || sent.starts_with(b"HTTP/1.1 431"),
            "{}",
            String::from_utf8_lossy(&sent)
        );
    }
    // Twin: the same shape at a normal size (4 × 2 KB) is answered.
    let mut normal = connect(&ferry).await;
    assert!(!write_headers(&mut normal, 4, 2_000, true).await);
    assert_eq!(response(&mut normal).await, Some((200, b"ok".to_vec())));
}

#[tokio::test]
async fn connections_beyond_the_per_source_cap_are_closed() {
    // A long header timeout, so the idle connections below are not closed by it.
    let (_tmp, ferry) = start(
        "conncap",
        "max_connections_per_source: 4, header_read_timeout: 60s",
    );
    let mut open = Vec::new();
    for _ in 0..4 {
        let mut s = connect(&ferry).await;
        s.write_all(HEALTHZ).await.unwrap();
        assert_eq!(response(&mut s).await, Some((200, b"ok".to_vec())));
        open.push(s);
    }
    // Attack: a fifth connection from the same address is closed unanswered.
    let mut fifth = connect(&ferry).await;
    let _ = fifth.write_all(HEALTHZ).await;
    assert_eq!(
        until_closed(&mut fifth, MARGIN).await.as_deref(),
        Some(&b""[..]),
        "the fifth connection was served, or left open"
    );
    // The first four stay usable.
    for s in &mut open {
        s.write_all(HEALTHZ).await.unwrap();
        assert_eq!(response(s).await, Some((200, b"ok".to_vec())));
    }
    // Twin: once one of the four is closed, a new connection is served (the server
    // notices the close asynchronously, so a refused attempt is retried).
    drop(open.pop());
    let started = Instant::now();
    let served = loop {
        let mut s = connect(&ferry).await;
        if s.write_all(HEALTHZ).await.is_ok() && response(&mut s).await.is_some() {
            break true;
        }
        if started.elapsed() > MARGIN {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(served, "no connection was served after one of four closed");
}

/// The `method` label values of `ferry_http_requests_total` in a scrape.
fn method_labels(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter(|l| l.starts_with("ferry_http_requests_total{"))
        .filter_map(|l| l.split("method=\"").nth(1))
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn random_method_names_are_refused_and_never_become_metric_labels() {
    let (_tmp, ferry) = start("methods", "");
    let admin = ferry.admin.clone().expect("admin listener");
    let http = reqwest::Client::new();
    // Attack: 50 distinct method names, at a form endpoint and at a GET endpoint.
    for i in 0..50 {
        let method = reqwest::Method::from_bytes(format!("FOOBAR{i}").as_bytes()).unwrap();
        let path = if i % 2 == 0 { "/token" } else { "/healthz" };
        let r = http
            .request(method, format!("{}{path}", ferry.url))
            .send()
            .await
            .unwrap();
        // 405 with the route's Allow: a 4xx, never a 5xx for a client's mistake.
        assert_eq!(r.status().as_u16(), 405, "FOOBAR{i} {path}");
        assert!(r.headers().contains_key("allow"), "FOOBAR{i} {path}");
    }
    // Twin: the methods Ferry serves are counted under their own names.
    assert_eq!(
        http.get(format!("{}/healthz", ferry.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let r = http
        .post(format!("{}/token", ferry.url))
        .form(&[("grant_type", "password")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let text = http
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let labels = method_labels(&text);
    assert!(
        labels.contains("GET") && labels.contains("POST"),
        "{labels:?}"
    );
    let allowed: BTreeSet<String> = ["GET", "POST", "HEAD", "OTHER"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert!(labels.is_subset(&allowed), "method labels {labels:?}");
}
