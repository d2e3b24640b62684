//! The admin listener under attack: its authentication is fixed when its socket is bound
//! (a reload cannot turn it off), a loopback admin refuses what a browser sends (CSRF
//! from any web page, DNS rebinding), state-changing endpoints take only their documented
//! content type, and the public `/readyz` says nothing but its status.

use std::path::Path;
use std::time::Duration;

use ferry_testkit::{Issuer, TestKey, now};
use serde_json::{Value, json};

use crate::harness::{Ferry, Proc, Setup, TEST_KEK, ferry_cmd};

const TE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
const FERRY: &str = "https://ferry.example.com";
const A: &str = "https://a.example.com";
const B: &str = "https://b.example.com";
/// `printf %s secret | sha256sum`
const SECRET_HASH: &str = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";

fn config(admin: &str, audiences: &[&str]) -> String {
    let mut s = format!(
        "issuer: {FERRY}\ndata_dir: data\n{admin}\nproviders:\n  - id: idp\n    issuer: https://idp.example.com\n    audiences: [{FERRY}]\n    jwks: {{ file: idp.json }}\naudiences:\n"
    );
    for a in audiences {
        s.push_str(&format!(
            "  - audience: {a}\n    rules:\n      - allow: \"true\"\n"
        ));
    }
    s
}

struct Env {
    setup: Setup,
    idp: Issuer,
    cfg: std::path::PathBuf,
}

fn env(tag: &str, admin: &str) -> Env {
    let setup = Setup::new(tag);
    let idp = Issuer::new("https://idp.example.com", TestKey::ec("k1"));
    setup.jwks("idp.json", &[&idp.key]);
    setup.write("admin-tokens", format!("{SECRET_HASH}\n"));
    let cfg = setup.config(&config(admin, &[A]));
    Env { setup, idp, cfg }
}

impl Env {
    async fn exchange(&self, url: &str, audience: &str) -> u16 {
        let token = self
            .idp
            .token(&self.idp.claims(FERRY, "svc", now(), json!({})));
        reqwest::Client::new()
            .post(format!("{url}/token"))
            .form(&[
                ("grant_type", TE),
                ("subject_token", token.as_str()),
                ("subject_token_type", JWT),
                ("audience", audience),
            ])
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

fn write_cert(dir: &Path) -> Vec<u8> {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    std::fs::write(dir.join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
    cert.cert.pem().into_bytes()
}

/// Sends SIGHUP and waits for the reload's outcome line after the `seen`-th one.
async fn reload(ferry: &Ferry, seen: usize) -> String {
    let _ = std::process::Command::new("kill")
        .args(["-HUP", &ferry.proc().pid().to_string()])
        .status();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let out = ferry.proc().output();
        let outcomes: Vec<&str> = out
            .lines()
            .filter(|l| {
                l.contains("configuration reload refused") || l.contains("configuration reloaded")
            })
            .collect();
        if let Some(l) = outcomes.get(seen) {
            return (*l).to_owned();
        }
    }
    panic!("no reload outcome:\n{}", ferry.proc().output());
}

#[tokio::test]
async fn admin_authentication_is_fixed_at_bind_and_a_reload_changing_admin_is_refused() {
    // Bound on every interface (not loopback): TLS and bearer tokens. The file names
    // another listen address that the command line overrides.
    let admin = "admin: { listen: \"127.0.0.1:1\", tls: { cert_file: cert.pem, key_file: key.pem }, bearer_token_hashes_file: admin-tokens }";
    let e = env("admin-bind", admin);
    let pem = write_cert(e.setup.path());
    let ferry = Ferry::start_on(
        e.setup.socket(),
        &e.cfg,
        &[("FERRY_KEK", TEST_KEK), ("FERRY_ADMIN_LISTEN", "0.0.0.0:0")],
    )
    .unwrap();
    let bound = ferry.admin.clone().expect("admin listener");
    assert!(bound.starts_with("https://0.0.0.0:"), "{bound}");
    let admin_url = bound.replace("0.0.0.0", "127.0.0.1");
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .build()
        .unwrap();
    let metrics = |auth: bool| {
        let mut r = http.get(format!("{admin_url}/metrics"));
        if auth {
            r = r.bearer_auth("secret");
        }
        async move { r.send().await.unwrap().status().as_u16() }
    };
    let revoke = |auth: bool| {
        let mut r = http
            .post(format!("{admin_url}/revoke"))
            .form(&[("subject", "nobody")]);
        if auth {
            r = r.bearer_auth("secret");
        }
        async move { r.send().await.unwrap().status().as_u16() }
    };
    assert_eq!((metrics(false).await, metrics(true).await), (401, 200));
    assert_eq!(e.exchange(&ferry.url, B).await, 400, "B is not served yet");

    // The attack: a reload whose file turns the admin listener off (and, in the same
    // file, adds audience B). The socket stays bound; it must keep asking for tokens,
    // and nothing of the reload applies.
    std::fs::write(&e.cfg, config("admin: { listen: \"off\" }", &[A, B])).unwrap();
    let line = reload(&ferry, 0).await;
    assert!(line.contains("configuration reload refused"), "{line}");
    assert!(line.contains("admin settings changed"), "{line}");
    assert_eq!((metrics(false).await, metrics(true).await), (401, 200));
    assert_eq!((revoke(false).await, revoke(true).await), (401, 200));
    assert_eq!(e.exchange(&ferry.url, B).await, 400, "nothing applied");

    // The same with the admin listener moved to loopback without tokens.
    std::fs::write(
        &e.cfg,
        config("admin: { listen: \"127.0.0.1:1\" }", &[A, B]),
    )
    .unwrap();
    let line = reload(&ferry, 1).await;
    assert!(line.contains("admin settings changed"), "{line}");
    assert_eq!((metrics(false).await, metrics(true).await), (401, 200));
    assert_eq!(e.exchange(&ferry.url, B).await, 400, "nothing applied");

    // Twin: the same change of audiences with the admin settings untouched (the file's
    // admin.listen still overridden by the command line) takes effect.
    std::fs::write(&e.cfg, config(admin, &[A, B])).unwrap();
    let line = reload(&ferry, 2).await;
    assert!(line.contains("configuration reloaded"), "{line}");
    assert_eq!(e.exchange(&ferry.url, B).await, 200);
    assert_eq!((metrics(false).await, metrics(true).await), (401, 200));
}

#[tokio::test]
async fn a_loopback_admin_refuses_browser_requests_and_other_content_types() {
    let e = env("admin-browser", "");
    let ferry = e.setup.run();
    let admin = ferry.admin.clone().expect("admin listener");
    let port = admin.rsplit(':').next().unwrap().to_owned();
    let http = reqwest::Client::new();
    let get = |headers: &[(&'static str, String)]| {
        let mut r = http.get(format!("{admin}/metrics"));
        for (k, v) in headers {
            r = r.header(*k, v.as_str());
        }
        async move { r.send().await.unwrap().status().as_u16() }
    };
    // A page on any web site posting to the admin listener carries an Origin.
    assert_eq!(get(&[("origin", "https://evil.example".into())]).await, 403);
    assert_eq!(get(&[("origin", "null".into())]).await, 403);
    assert_eq!(get(&[]).await, 200);
    // DNS rebinding: the browser sends the attacker's name as Host.
    assert_eq!(get(&[("host", format!("evil.example:{port}"))]).await, 403);
    assert_eq!(get(&[("host", "evil.example".into())]).await, 403);
    for ok in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("LocalHost:{port}"),
        format!("[::1]:{port}"),
        "localhost".into(),
    ] {
        assert_eq!(get(&[("host", ok.clone())]).await, 200, "{ok}");
    }

    // State-changing endpoints take only their documented content type: a form post
    // from a page (text/plain needs no CORS preflight) is refused.
    let post = |path: &str, ctype: &'static str, body: &'static str| {
        let r = http
            .post(format!("{admin}{path}"))
            .header("content-type", ctype)
            .body(body);
        async move { r.send().await.unwrap().status().as_u16() }
    };
    let form = "application/x-www-form-urlencoded";
    assert_eq!(post("/revoke", "text/plain", "subject=nobody").await, 415);
    assert_eq!(
        post(
            "/revoke",
            "multipart/form-data; boundary=x",
            "subject=nobody"
        )
        .await,
        415
    );
    assert_eq!(post("/revoke", form, "subject=nobody").await, 200);
    assert_eq!(
        post(
            "/revoke",
            "application/x-www-form-urlencoded; charset=utf-8",
            "subject=nobody"
        )
        .await,
        200
    );
    let explain = r#"{"claims": {"sub": "svc"}, "audience": ["https://a.example.com"]}"#;
    assert_eq!(post("/explain", "text/plain", explain).await, 415);
    assert_eq!(post("/explain", "application/json", explain).await, 200);
    // The 415 is JSON and names the type expected (issue 25 item 6).
    let r = http
        .post(format!("{admin}/explain"))
        .header("content-type", "text/plain")
        .body(explain)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        body["error_description"],
        "unsupported content type: expected application/json"
    );
    // With an Origin, even the right content type is refused.
    let r = http
        .post(format!("{admin}/revoke"))
        .header("origin", "https://evil.example")
        .form(&[("subject", "nobody")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    // Refusals are audited like every admin request.
    assert!(ferry.proc().output().contains("\"decision\":\"deny\""));
}

#[tokio::test]
async fn the_public_readyz_answers_status_only_and_the_admin_one_the_details() {
    let e = env("admin-readyz", "");
    let ferry = e.setup.run();
    let get = |url: String| async move {
        let r = reqwest::get(url).await.unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    let (status, public) = get(format!("{}/readyz", ferry.url)).await;
    assert_eq!((status, public), (200, json!({"status": "ready"})));
    let (status, admin) = get(format!("{}/readyz", ferry.admin.clone().unwrap())).await;
    assert_eq!(status, 200);
    assert_eq!(admin["status"], "ready");
    for detail in ["providers", "signing_key", "key_ring_version", "key_store"] {
        assert!(admin.get(detail).is_some(), "{detail} in {admin}");
    }
}

#[tokio::test]
async fn an_admin_listener_bound_off_loopback_without_tls_and_tokens_does_not_start() {
    // The file says nothing of the admin listener (loopback by default); the command
    // line moves it to every interface. Twin: the first test here, with TLS and tokens.
    let e = env("admin-no-tls", "");
    let mut proc = Proc::spawn(
        ferry_cmd()
            .arg("serve")
            .arg("--config")
            .arg(&e.cfg)
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "0.0.0.0:0"])
            .env_remove("FERRY_ADMIN_LISTEN"),
    )
    .unwrap();
    let status = proc.wait_exit(30).unwrap();
    assert!(!status.success());
    let out = proc.output();
    assert!(
        out.contains("off loopback: it requires admin.tls and admin.bearer_token_hashes_file"),
        "{out}"
    );
    assert!(!out.contains("ferry listening on"), "{out}");
}
