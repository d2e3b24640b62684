//! Behind trusted proxies (issue 22 item 1): from a peer in `trusted_proxies` the client
//! is read from `Forwarded` / `X-Forwarded-For`, right to left, skipping trusted hops;
//! from any other peer those headers are ignored. Rate limits and the audit use the
//! resolved address, IPv6 grouped by /64. Each attack beside its twin.

use serde_json::Value;

use crate::harness::{Ferry, Setup, idp_providers};

const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

fn start(tag: &str, trusted: &str) -> (Setup, Ferry) {
    let setup = Setup::new(tag);
    setup.idp();
    let cfg = format!(
        "issuer: https://ferry.example.com\ndata_dir: data\n{trusted}\nlimits: {{ rate_per_source: 2, rate_global: 100000 }}\n{}audiences:\n  - audience: https://api.example.com\n    rules: [{{ allow: \"true\" }}]\n",
        idp_providers("https://ferry.example.com")
    );
    let ferry = setup.start(&cfg);
    (setup, ferry)
}

/// Sends a junk exchange (400 when admitted, 429 when the source's bucket is empty) as
/// if forwarded for `xff`.
async fn junk(ferry: &Ferry, header: &str, value: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{}/token", ferry.url))
        .header(header, value)
        .form(&[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("subject_token", "not.a.jwt"),
            ("subject_token_type", JWT),
            ("audience", "https://api.example.com"),
        ])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// How many of `n` requests, each claiming the next address of `addrs`, were limited.
async fn limited(ferry: &Ferry, header: &str, addrs: &[String]) -> usize {
    let mut n = 0;
    for a in addrs {
        if junk(ferry, header, a).await == 429 {
            n += 1;
        }
    }
    n
}

fn audited_sources(ferry: &Ferry) -> Vec<String> {
    ferry
        .proc()
        .output()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == "ferry.audit")
        .filter_map(|v| v["source"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    let distinct: Vec<String> = (1..=10).map(|i| format!("203.0.113.{i}")).collect();
    // Untrusted peer: the header is ignored, every request is loopback's, the bucket
    // (rate 2, burst 4) runs dry.
    let (_s, plain) = start("proxies-untrusted", "trusted_proxies: [10.0.0.0/8]");
    assert!(limited(&plain, "x-forwarded-for", &distinct).await >= 5);
    assert!(
        audited_sources(&plain).iter().all(|s| s == "127.0.0.1"),
        "{:?}",
        audited_sources(&plain)
    );
    // Twin: loopback trusted, ten clients, ten buckets.
    let (_s, mut proxied) = start(
        "proxies-trusted",
        "trusted_proxies: [127.0.0.1/32, 10.0.0.0/8]",
    );
    assert_eq!(limited(&proxied, "x-forwarded-for", &distinct).await, 0);
    // Ten requests of one client through the proxy still share its bucket.
    let same: Vec<String> = vec!["198.51.100.9".into(); 10];
    assert!(limited(&proxied, "x-forwarded-for", &same).await >= 5);
    // Two trusted proxies: the spoofed leftmost entry is not read.
    junk(
        &proxied,
        "x-forwarded-for",
        "6.6.6.6, 203.0.113.77, 10.0.0.2",
    )
    .await;
    junk(
        &proxied,
        "forwarded",
        "for=6.6.6.6, for=\"203.0.113.78:4711\", for=10.0.0.3",
    )
    .await;
    // The audit lines of the last requests may still be on their way from the process
    // (the log line on stderr can arrive first: wait for the audit events themselves).
    for a in ["203.0.113.77", "203.0.113.78"] {
        proxied
            .proc_mut()
            .wait_for(&format!("\"source\":\"{a}\""))
            .unwrap();
    }
    let sources = audited_sources(&proxied);
    assert!(sources.contains(&"203.0.113.77".to_owned()), "{sources:?}");
    assert!(sources.contains(&"203.0.113.78".to_owned()), "{sources:?}");
    assert!(!sources.contains(&"6.6.6.6".to_owned()), "{sources:?}");
}

#[tokio::test]
async fn an_ipv6_client_is_counted_per_64() {
    let (_s, mut ferry) = start("proxies-v6", "trusted_proxies: [127.0.0.1/32]");
    let one_64: Vec<String> = (1..=10).map(|i| format!("2001:db8:0:1::{i:x}")).collect();
    assert!(limited(&ferry, "x-forwarded-for", &one_64).await >= 5);
    // Twin: ten /64s.
    let many: Vec<String> = (1..=10)
        .map(|i| format!("2001:db8:0:{:x}::1", 100 + i))
        .collect();
    assert_eq!(limited(&ferry, "x-forwarded-for", &many).await, 0);
    // The audit keeps the full address.
    ferry
        .proc_mut()
        .wait_for("\"source\":\"2001:db8:0:1::3\"")
        .unwrap();
    assert!(audited_sources(&ferry).contains(&"2001:db8:0:1::3".to_owned()));
}

/// A PROXY protocol v2 header for a TCP4 connection from `src` (built by hand from the
/// HAProxy specification, not by the parser Ferry uses).
fn proxy_v2(src: [u8; 4], port: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&port.to_be_bytes());
    h.extend_from_slice(&443u16.to_be_bytes());
    h
}

/// Sends `prefix` then a junk token request on a raw connection; the status, if any.
async fn raw_request(ferry: &Ferry, prefix: &[u8]) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = ferry.url.trim_start_matches("http://").to_owned();
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let body = format!(
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token=x&subject_token_type={}&audience=https%3A%2F%2Fapi.example.com",
        "urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt"
    );
    let req = format!(
        "POST /token HTTP/1.1\r\nHost: ferry\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut bytes = prefix.to_vec();
    bytes.extend_from_slice(req.as_bytes());
    s.write_all(&bytes).await.ok()?;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    text.split_whitespace().nth(1).and_then(|c| c.parse().ok())
}

#[tokio::test]
async fn the_proxy_protocol_names_the_client_only_from_trusted_peers() {
    let (_s, mut ferry) = start(
        "proxies-ppv2",
        "trusted_proxies: [127.0.0.1/32]\nlisten_proxy_protocol: true",
    );
    // From the trusted balancer, with its header: the client is the header's address.
    assert_eq!(
        raw_request(&ferry, &proxy_v2([203, 0, 113, 50], 4000)).await,
        Some(400)
    );
    ferry
        .proc_mut()
        .wait_for("\"source\":\"203.0.113.50\"")
        .unwrap();
    assert!(audited_sources(&ferry).contains(&"203.0.113.50".to_owned()));
    // Twin: the same request without the header is refused at the connection.
    assert_eq!(raw_request(&ferry, b"").await, None);
    // Where loopback is not trusted, a header is just bytes before HTTP: refused as such.
    let (_s, other) = start(
        "proxies-ppv2-untrusted",
        "trusted_proxies: [10.0.0.0/8]\nlisten_proxy_protocol: true",
    );
    assert_eq!(
        raw_request(&other, &proxy_v2([203, 0, 113, 51], 4000)).await,
        Some(400)
    );
    assert!(!audited_sources(&other).contains(&"203.0.113.51".to_owned()));
    assert_eq!(raw_request(&other, b"").await, Some(400));
}

/// Rules see the request's context (issue 22 item 3): the client's address behind the
/// trusted proxy with Kubernetes' CIDR functions, the time, whether the token will be
/// key-bound, whether the client authenticated. Each rule beside its twin.
#[tokio::test]
async fn rules_see_the_source_time_binding_and_client() {
    use ferry_testkit::mint::dpop_proof;
    use ferry_testkit::{TestKey, now, sha256_hex};
    let setup = Setup::new("proxies-context");
    let idp = setup.idp();
    let iss = "https://ferry.example.com";
    let cfg = format!(
        r#"issuer: {iss}
data_dir: data
trusted_proxies: [127.0.0.1/32]
clients:
  - {{ id: ci, auth: client_secret_post, secret_sha256: {secret} }}
{providers}audiences:
  - audience: https://office.example.com
    rules: [{{ allow: "cidr('203.0.113.0/24').containsIP(request.source_ip)" }}]
  - audience: https://bound.example.com
    rules: [{{ allow: "request.sender_constrained" }}]
  - audience: https://clients.example.com
    rules: [{{ allow: "request.client_authenticated" }}]
  - audience: https://after.example.com
    rules: [{{ allow: "request.time > timestamp('2020-01-01T00:00:00Z')" }}]
  - audience: https://before.example.com
    rules: [{{ allow: "request.time < timestamp('2020-01-01T00:00:00Z')" }}]
"#,
        secret = sha256_hex("s3cret"),
        providers = idp_providers(iss),
    );
    let ferry = setup.start(&cfg);
    let http = reqwest::Client::new();
    let exchange = |aud: &'static str,
                    extra: Vec<(&'static str, String)>,
                    xff: &'static str,
                    proof: Option<String>| {
        let token = idp.token(&idp.claims(iss, "alice", now(), serde_json::json!({})));
        let mut form = vec![
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange".to_owned(),
            ),
            ("subject_token", token),
            ("subject_token_type", JWT.to_owned()),
            ("audience", aud.to_owned()),
        ];
        form.extend(extra);
        let mut r = http
            .post(format!("{}/token", ferry.url))
            .header("x-forwarded-for", xff)
            .form(&form);
        if let Some(p) = proof {
            r = r.header("DPoP", p);
        }
        async move { r.send().await.unwrap().status().as_u16() }
    };
    let office = "https://office.example.com";
    assert_eq!(exchange(office, vec![], "203.0.113.5", None).await, 200);
    assert_eq!(exchange(office, vec![], "198.51.100.5", None).await, 400);
    let key = TestKey::ec("holder");
    let proof = dpop_proof(
        &key,
        "POST",
        &format!("{iss}/token"),
        now(),
        "p1",
        None,
        None,
    );
    let bound = "https://bound.example.com";
    assert_eq!(exchange(bound, vec![], "192.0.2.1", Some(proof)).await, 200);
    assert_eq!(exchange(bound, vec![], "192.0.2.1", None).await, 400);
    let clients = "https://clients.example.com";
    let authenticated = vec![
        ("client_id", "ci".to_owned()),
        ("client_secret", "s3cret".to_owned()),
    ];
    assert_eq!(
        exchange(clients, authenticated, "192.0.2.1", None).await,
        200
    );
    assert_eq!(
        exchange(
            clients,
            vec![("client_id", "public-ci".to_owned())],
            "192.0.2.1",
            None
        )
        .await,
        400
    );
    assert_eq!(
        exchange("https://after.example.com", vec![], "192.0.2.1", None).await,
        200
    );
    assert_eq!(
        exchange("https://before.example.com", vec![], "192.0.2.1", None).await,
        400
    );
}
