//! Durable revocations: revoked tokens, revocation rules and reference handles live in
//! PostgreSQL (replicas) or the data directory (one node), never only in Redis. Two
//! replicas sharing PostgreSQL and Redis revoke a token (by its client), a subject (by an
//! administrator) and a handle; Redis restarts empty and every replica restarts: all
//! still revoked everywhere, listed, not narrowable, while the live token and handle
//! stay active. A single node with Redis for replay keeps them across the same restarts.
//! Neither store holds the JWT behind a handle in clear. While PostgreSQL is down,
//! `/revoke` answers 503 and reads are served from the synced copy.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ferry_testkit::keys::jwks;
use ferry_testkit::mint::payload;
use ferry_testkit::{Issuer, Postgres, TestKey, now, sha256_hex};
use serde_json::{Value, json};

use crate::harness::{Ferry, Proc, TEST_KEK, TempDir};
use crate::replay::{redis, redis_anywhere};
use crate::revocation::{API, AT, INACTIVE, REF, TE};

const ISS: &str = "https://ferry.example.com";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

fn config(redis_port: u16, store: &str) -> String {
    format!(
        r#"issuer: {ISS}
data_dir: data
limits: {{ rate_per_source: 100000, rate_global: 100000, rate_per_provider: 100000, rate_per_client: 100000 }}
tokens: {{ default_ttl: 10m, max_ttl: 1h, min_ttl: 1s }}
replay: {{ redis: "redis://127.0.0.1:{redis_port}", timeout: 1s }}
{store}
clients:
  - {{ id: ci, auth: client_secret_basic, secret_sha256: {ci} }}
  - {{ id: gateway, auth: client_secret_basic, secret_sha256: {gw}, introspect: true }}
  - {{ id: relying, auth: client_secret_basic, secret_sha256: {rs}, revocations: true }}
providers:
  - id: idp
    issuer: https://idp.example.com
    audiences: [{ISS}]
    jwks: {{ file: idp.json }}
audiences:
  - audience: {API}
    rules:
      - allow: "true"
        scopes: [read]
"#,
        ci = sha256_hex("ci-secret"),
        gw = sha256_hex("gateway-secret"),
        rs = sha256_hex("relying-secret"),
    )
}

/// Keys in PostgreSQL: revocations default to the same database.
const SHARED: &str = "signing:\n  postgres: { url: { env: FERRY_TEST_PG }, poll_interval: 250ms, timeout: 2s }\nrevocation:\n  postgres: { url: { env: FERRY_TEST_PG }, poll_interval: 250ms, timeout: 1s }";

struct Replica {
    dir: std::path::PathBuf,
    pg: String,
}

impl Replica {
    fn new(root: &Path, name: &str, idp: &Issuer, cfg: &str, pg: &str) -> Self {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("idp.json"), jwks(&[&idp.key]).to_string()).unwrap();
        std::fs::write(dir.join("ferry.yaml"), cfg).unwrap();
        Self {
            dir,
            pg: pg.to_owned(),
        }
    }

    fn start(&self) -> Ferry {
        Ferry::start_with(
            &self.dir.join("ferry.yaml"),
            &[("FERRY_KEK", TEST_KEK), ("FERRY_TEST_PG", &self.pg)],
        )
        .unwrap()
    }
}

/// `redis-server` restarted empty on the same port: the old one stopped, a new one
/// without persistence (so without data) started.
fn restart_redis_empty(old: Proc, port: u16) -> Proc {
    drop(old);
    redis(port)
}

struct Client {
    http: reqwest::Client,
    idp: Issuer,
}

impl Client {
    async fn issue(&self, url: &str, sub: &str, reference: bool) -> String {
        let subject = self.idp.token(&self.idp.claims(ISS, sub, now(), json!({})));
        let mut form = vec![
            ("grant_type", TE),
            ("subject_token", subject.as_str()),
            ("subject_token_type", JWT),
            ("audience", API),
        ];
        if reference {
            form.push(("requested_token_type", REF));
        }
        let r = self
            .http
            .post(format!("{url}/token"))
            .basic_auth("ci", Some("ci-secret"))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let v: Value = r.json().await.unwrap();
        v["access_token"].as_str().unwrap().to_owned()
    }

    async fn revoke(&self, url: &str, token: &str) -> u16 {
        self.http
            .post(format!("{url}/revoke"))
            .basic_auth("ci", Some("ci-secret"))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    async fn admin_revoke(&self, admin: &str, form: &[(&str, &str)]) -> u16 {
        self.http
            .post(format!("{admin}/revoke"))
            .form(form)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    async fn introspect(&self, url: &str, token: &str) -> String {
        let r = self
            .http
            .post(format!("{url}/introspect"))
            .basic_auth("gateway", Some("gateway-secret"))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        r.text().await.unwrap()
    }

    /// The JWT a handle stands for (the phantom-token gateway's call).
    async fn jwt_of(&self, url: &str, handle: &str) -> String {
        let r = self
            .http
            .post(format!("{url}/introspect"))
            .basic_auth("gateway", Some("gateway-secret"))
            .header("accept", "application/jwt")
            .form(&[("token", handle)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["content-type"], "application/jwt");
        r.text().await.unwrap()
    }

    async fn revocation_list(&self, url: &str) -> Value {
        let list = self
            .http
            .get(format!("{url}/revocations"))
            .basic_auth("relying", Some("relying-secret"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        Value::Object(payload(&list))
    }

    async fn narrow(&self, url: &str, token: &str) -> u16 {
        self.http
            .post(format!("{url}/token"))
            .basic_auth("ci", Some("ci-secret"))
            .form(&[
                ("grant_type", TE),
                ("subject_token", token),
                ("subject_token_type", AT),
                ("audience", API),
            ])
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

/// What was revoked and what was not.
struct Issued {
    by_client: String,
    by_admin: String,
    handle_revoked: String,
    kept: String,
    handle_kept: String,
}

/// Issues at `a`, revokes at `a` and `b` (by the client, by an administrator).
async fn issue_and_revoke(c: &Client, a: &Ferry, b: &Ferry) -> Issued {
    let issued = Issued {
        by_client: c.issue(&a.url, "workload", false).await,
        by_admin: c.issue(&a.url, "repo:acme/leaked", false).await,
        handle_revoked: c.issue(&a.url, "workload", true).await,
        kept: c.issue(&b.url, "workload", false).await,
        handle_kept: c.issue(&b.url, "workload", true).await,
    };
    assert_eq!(c.revoke(&a.url, &issued.by_client).await, 200);
    assert_eq!(c.revoke(&b.url, &issued.handle_revoked).await, 200);
    let admin = b.admin.clone().unwrap();
    assert_eq!(
        c.admin_revoke(&admin, &[("subject", "repo:acme/leaked")])
            .await,
        200
    );
    issued
}

/// Everything revoked is inactive, listed and not narrowable at `f`; the twins live.
async fn still_revoked(c: &Client, f: &Ferry, i: &Issued) {
    for t in [&i.by_client, &i.by_admin, &i.handle_revoked] {
        assert_eq!(c.introspect(&f.url, t).await, INACTIVE, "{t:.16}");
        assert_eq!(c.narrow(&f.url, t).await, 400, "{t:.16}");
    }
    for t in [&i.kept, &i.handle_kept] {
        assert!(
            c.introspect(&f.url, t).await.contains("\"active\":true"),
            "{t:.16}"
        );
        assert_eq!(c.narrow(&f.url, t).await, 200, "{t:.16}");
    }
    let list = c.revocation_list(&f.url).await;
    let jti = payload(&i.by_client)["jti"].clone();
    assert!(
        list["revoked"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["jti"] == jti),
        "{list}"
    );
    assert!(
        list["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["value"] == "repo:acme/leaked"),
        "{list}"
    );
}

/// `needle` and the payload segment of the JWT `jwt` appear nowhere in `stored`.
fn not_in_clear(stored: &[u8], jwt: &str) {
    let payload_segment = jwt.split('.').nth(1).unwrap();
    for needle in [jwt, payload_segment] {
        assert!(
            !stored.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "a JWT stored in clear"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_survive_an_empty_redis_and_a_restart_of_every_replica() {
    let tmp = TempDir::new("durable-revocation");
    let pg = Postgres::start();
    let (redis_port, mut redis_proc) = redis_anywhere();
    let c = Client {
        http: reqwest::Client::new(),
        idp: Issuer::new("https://idp.example.com", TestKey::ec("i1")),
    };
    let cfg = config(redis_port, SHARED);
    let replicas = ["a", "b"].map(|n| Replica::new(tmp.path(), n, &c.idp, &cfg, &pg.url()));
    let (a, b) = (replicas[0].start(), replicas[1].start());
    let issued = issue_and_revoke(&c, &a, &b).await;
    // At once at the other replica.
    still_revoked(&c, &a, &issued).await;
    still_revoked(&c, &b, &issued).await;
    let jwt = c.jwt_of(&b.url, &issued.handle_kept).await;

    // Redis restarted empty, then every replica restarted.
    redis_proc = restart_redis_empty(redis_proc, redis_port);
    drop((a, b));
    let (a, b) = (replicas[0].start(), replicas[1].start());
    still_revoked(&c, &a, &issued).await;
    still_revoked(&c, &b, &issued).await;
    assert_eq!(c.jwt_of(&a.url, &issued.handle_kept).await, jwt);

    // In the database: the handle's JWT only sealed (twin: the revoked jti is there).
    let rows = pg.psql(
        "SELECT string_agg(hash || ' ' || sealed, ',') FROM ferry_reference_handles;
         SELECT string_agg(jti, ',') FROM ferry_revoked_jtis",
    );
    not_in_clear(rows.as_bytes(), &jwt);
    assert!(rows.contains(payload(&issued.by_client)["jti"].as_str().unwrap()));
    // Redis holds no revocation state at all.
    let keys = Command::new("redis-cli")
        .args([
            "-p",
            &redis_port.to_string(),
            "--scan",
            "--pattern",
            "ferry:re[vf]*",
        ])
        .output()
        .unwrap();
    assert!(
        keys.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&keys.stdout)
    );
    drop(redis_proc);
}

#[tokio::test]
async fn a_single_node_keeps_revocations_in_its_data_directory_whatever_redis_does() {
    let tmp = TempDir::new("durable-revocation-single");
    let (redis_port, mut redis_proc) = redis_anywhere();
    let c = Client {
        http: reqwest::Client::new(),
        idp: Issuer::new("https://idp.example.com", TestKey::ec("i1")),
    };
    let node = Replica::new(tmp.path(), "one", &c.idp, &config(redis_port, ""), "");
    let f = node.start();
    assert!(
        f.proc()
            .output()
            .contains("kept in each node's data directory"),
        "serve warns what `ferry check` refuses"
    );
    let issued = issue_and_revoke(&c, &f, &f).await;
    let jwt = c.jwt_of(&f.url, &issued.handle_kept).await;
    redis_proc = restart_redis_empty(redis_proc, redis_port);
    drop(f);
    let f = node.start();
    still_revoked(&c, &f, &issued).await;
    assert_eq!(c.jwt_of(&f.url, &issued.handle_kept).await, jwt);
    // On disk: the handle's JWT only sealed.
    let mut stored = Vec::new();
    for dir in [
        node.dir.join("data"),
        node.dir.join("data/reference-handles"),
    ] {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            if e.path().is_file() {
                stored.extend(std::fs::read(e.path()).unwrap());
            }
        }
    }
    not_in_clear(&stored, &jwt);
    assert!(!stored.is_empty());
    drop(redis_proc);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_postgres_is_down_revoking_answers_503_and_reads_use_the_synced_copy() {
    let tmp = TempDir::new("durable-revocation-outage");
    let mut pg = Postgres::start();
    let (redis_port, _redis) = redis_anywhere();
    let c = Client {
        http: reqwest::Client::new(),
        idp: Issuer::new("https://idp.example.com", TestKey::ec("i1")),
    };
    let node = Replica::new(
        tmp.path(),
        "a",
        &c.idp,
        &config(redis_port, SHARED),
        &pg.url(),
    );
    let f = node.start();
    let admin = f.admin.clone().unwrap();
    let revoked = c.issue(&f.url, "workload", false).await;
    let later = c.issue(&f.url, "workload", false).await;
    let handle = c.issue(&f.url, "workload", true).await;
    assert_eq!(c.revoke(&f.url, &revoked).await, 200);

    pg.stop();
    assert_eq!(c.revoke(&f.url, &later).await, 503);
    assert_eq!(
        c.admin_revoke(&admin, &[("subject", "workload")]).await,
        503
    );
    // Reads from the copy: the revoked token stays revoked, the others active.
    assert_eq!(c.introspect(&f.url, &revoked).await, INACTIVE);
    assert!(
        c.introspect(&f.url, &later)
            .await
            .contains("\"active\":true")
    );
    assert!(
        c.introspect(&f.url, &handle)
            .await
            .contains("\"active\":true")
    );
    assert_eq!(c.narrow(&f.url, &revoked).await, 400);
    let metrics = c
        .http
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("ferry_revocation_store_up 0")
            && metrics.contains("ferry_revocation_sync_age_seconds "),
        "{metrics}"
    );

    // Readiness stays (every replica shares the database); the admin one says why.
    let ready = |url: String| {
        let http = c.http.clone();
        async move {
            let r = http.get(format!("{url}/readyz")).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    assert_eq!(ready(f.url.clone()).await.0, 200);
    let (status, body) = ready(admin.clone()).await;
    assert_eq!(status, 200);
    assert!(
        body.contains("\"revocation_store\":\"unavailable\""),
        "{body}"
    );

    // Twin: PostgreSQL back, revoking works again.
    pg.start_again();
    let mut status = 0;
    for _ in 0..50 {
        status = c.revoke(&f.url, &later).await;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status, 200);
    assert_eq!(c.introspect(&f.url, &later).await, INACTIVE);
    assert!(ready(admin).await.1.contains("\"revocation_store\":\"ok\""));
}
