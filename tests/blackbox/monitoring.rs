//! The metrics-only listener (`metrics.listen`) under attack: it serves `GET /metrics`
//! and nothing else (what explains, revokes, issues or reports health is a 404 there, and
//! exists on its own listener), its requests add no series, and it keeps the header
//! limit of the other listeners. And the metrics the shipped alerts need
//! (deploy/monitoring): the issuer keys' usability, the signing ring's standby keys, the
//! last configuration reload's result.

use std::collections::BTreeSet;
use std::time::Duration;

use ferry_testkit::keys::jwks;
use ferry_testkit::{Issuer, MockIdp, TestKey, now};
use serde_json::json;

use crate::harness::{Ferry, Setup};

const FERRY: &str = "https://ferry.example.com";

fn config(metrics: &str, extra: &str, idp: &str) -> String {
    format!(
        "issuer: {FERRY}\ndata_dir: data\n{metrics}\n{extra}\nlimits: {{ shutdown_delay: 0s, max_header_bytes: 4096 }}\noutbound: {{ allow_insecure_origins: [\"{idp}\"] }}\nproviders:\n  - id: idp\n    kind: oidc\n    issuer: {idp}\n    audiences: [{FERRY}]\naudiences:\n  - audience: https://deploy.example.com\n    rules:\n      - allow: \"true\"\n"
    )
}

/// The metrics listener's URL, from its "listening" line.
fn metrics_url(ferry: &mut Ferry) -> String {
    let line = ferry
        .proc_mut()
        .wait_for("ferry metrics listening on http")
        .unwrap();
    let start = line.find("http://").unwrap();
    line[start..].split_whitespace().next().unwrap().to_owned()
}

/// Every series on the page, without its value.
fn series(page: &str) -> BTreeSet<String> {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' ').map(|(s, _)| s.to_owned()))
        .collect()
}

async fn status(http: &reqwest::Client, method: &str, url: &str) -> u16 {
    http.request(method.parse().unwrap(), url)
        .body("token=x&subject=y")
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn page(http: &reqwest::Client, url: &str) -> String {
    let r = http.get(format!("{url}/metrics")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    r.text().await.unwrap()
}

#[tokio::test]
async fn the_metrics_listener_serves_metrics_and_nothing_else() {
    let key = TestKey::ec("m1");
    let idp = MockIdp::start(jwks(&[&key])).await.unwrap();
    let setup = Setup::new("metrics-only");
    let mut ferry = setup.start(&config(
        "metrics: { listen: \"127.0.0.1:0\" }",
        "",
        &idp.url,
    ));
    let metrics = metrics_url(&mut ferry);
    let admin = ferry.admin.clone().expect("admin listener");
    let http = reqwest::Client::new();

    let text = page(&http, &metrics).await;
    assert!(text.contains("# HELP ferry_signing_available ") && text.ends_with("# EOF\n"));
    assert_eq!(
        http.head(format!("{metrics}/metrics"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    // What the admin and public listeners serve is not here: 404 for every path but
    // /metrics, whatever the method; each exists on its own listener (the twin).
    for (path, twin) in [
        ("/explain", &admin),
        ("/revoke", &admin),
        ("/readyz", &admin),
        ("/token", &ferry.url),
        ("/healthz", &ferry.url),
        ("/jwks", &ferry.url),
        ("/.well-known/openid-configuration", &ferry.url),
        ("/introspect", &ferry.url),
    ] {
        let on_twin = [
            status(&http, "GET", &format!("{twin}{path}")).await,
            status(&http, "POST", &format!("{twin}{path}")).await,
        ];
        assert!(
            on_twin.iter().any(|s| *s != 404),
            "{path} on its listener: {on_twin:?}"
        );
        for method in ["GET", "POST", "PUT", "DELETE"] {
            assert_eq!(
                status(&http, method, &format!("{metrics}{path}")).await,
                404,
                "{method} {path} on the metrics listener"
            );
        }
    }
    for path in ["/metrics/", "/metrics/x", "/METRICS", "/", "/admin/metrics"] {
        assert_eq!(
            status(&http, "GET", &format!("{metrics}{path}")).await,
            404,
            "{path}"
        );
    }
    // /metrics takes GET (and HEAD) only.
    for method in ["POST", "PUT", "DELETE", "PATCH", "BREW"] {
        assert_eq!(
            status(&http, method, &format!("{metrics}/metrics")).await,
            405,
            "{method} /metrics"
        );
    }

    // Its requests add no series, whatever the path or method: the page's series are
    // the same before and after a flood of invented ones. The twin: one unmatched
    // request on the public listener adds one (the comparison sees a new series).
    let before = series(&page(&http, &metrics).await);
    for i in 0..200 {
        let method = ["GET", "POST", "X-INVENTED", "OPTIONS"][i % 4];
        let _ = status(&http, method, &format!("{metrics}/probe-{i}?q={i}")).await;
    }
    let after_text = page(&http, &metrics).await;
    assert_eq!(series(&after_text), before);
    assert!(!after_text.contains("probe-") && !after_text.contains("X-INVENTED"));
    assert_eq!(
        status(&http, "GET", &format!("{}/probe-1", ferry.url)).await,
        404
    );
    let grown = series(&page(&http, &metrics).await);
    assert!(
        grown.difference(&before).any(|s| s.contains("unmatched")),
        "{grown:?}"
    );

    // The header limit holds there too: 431 past limits.max_header_bytes, beside a
    // request just under it.
    let big = |n: usize| {
        http.get(format!("{metrics}/metrics"))
            .header("x-filler", "a".repeat(n))
            .send()
    };
    assert_eq!(big(3_000).await.unwrap().status().as_u16(), 200);
    // Refused: a 431, or the connection closed before reqwest read it — never a hang,
    // and the listener still serves afterwards.
    match big(8_000).await {
        Ok(r) => assert_eq!(r.status().as_u16(), 431),
        Err(e) => assert!(!e.is_timeout(), "{e}"),
    }
    assert_eq!(big(3_000).await.unwrap().status().as_u16(), 200);
}

#[tokio::test]
async fn the_metrics_the_alerts_need_are_exported() {
    let key = TestKey::ec("m2");
    let idp = MockIdp::start(jwks(&[&key])).await.unwrap();
    let issuer = Issuer::new(idp.url.clone(), key);
    let setup = Setup::new("alert-metrics");
    let metrics_cfg = "metrics: { listen: \"127.0.0.1:0\" }";
    let cfg = setup.config(&config(metrics_cfg, "", &idp.url));
    let mut ferry = setup.run();
    let metrics = metrics_url(&mut ferry);
    let http = reqwest::Client::new();
    // An exchange fetches the issuer's keys.
    let token = issuer.token(&issuer.claims(FERRY, "svc", now(), json!({})));
    let r = http
        .post(format!("{}/token", ferry.url))
        .form(&[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("subject_token", token.as_str()),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
            ("audience", "https://deploy.example.com"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let text = page(&http, &metrics).await;
    for needle in [
        "ferry_issuer_keys_usable{provider=\"idp\"} 1\n",
        // The ring keeps two standby keys beside the active one.
        "ferry_signing_keys{state=\"pending\"} 2\n",
        "ferry_signing_keys{state=\"active\"} 1\n",
        "ferry_config_last_reload_successful 1\n",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }

    // A refused reload shows until one succeeds.
    let reload = |body: String, expect: &'static str| {
        std::fs::write(&cfg, body).unwrap();
        let _ = std::process::Command::new("kill")
            .args(["-HUP", &ferry.proc().pid().to_string()])
            .status();
        let (http, metrics) = (http.clone(), metrics.clone());
        async move {
            for _ in 0..100 {
                if page(&http, &metrics).await.contains(expect) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("never saw {expect}");
        }
    };
    reload(
        config(metrics_cfg, "", &idp.url)
            .replace("audiences: [https://ferry.example.com]", "audiences: []"),
        "ferry_config_reloads_total{result=\"error\"} 1\n",
    )
    .await;
    let text = page(&http, &metrics).await;
    assert!(
        text.contains("ferry_config_last_reload_successful 0\n"),
        "{text}"
    );
    reload(
        config(metrics_cfg, "log_level: info", &idp.url),
        "ferry_config_reloads_total{result=\"ok\"} 1\n",
    )
    .await;
    let text = page(&http, &metrics).await;
    assert!(
        text.contains("ferry_config_last_reload_successful 1\n"),
        "{text}"
    );
}

#[tokio::test]
async fn an_override_may_not_move_the_admin_listener_onto_the_metrics_one() {
    let key = TestKey::ec("m3");
    let idp = MockIdp::start(jwks(&[&key])).await.unwrap();
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap().to_string();
    let setup = Setup::new("metrics-override");
    let cfg = setup.config(&config(
        &format!("metrics: {{ listen: \"{addr}\" }}"),
        "",
        &idp.url,
    ));
    // `--admin-listen` (here through FERRY_ADMIN_LISTEN) onto metrics.listen: refused
    // before anything is bound, naming the setting.
    let out = crate::harness::ferry_cmd()
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("FERRY_LISTEN", "127.0.0.1:0")
        .env("FERRY_ADMIN_LISTEN", &addr)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("metrics.listen: must differ from admin.listen"),
        "{stderr}"
    );
    // The twin, the admin listener elsewhere: both serve.
    drop(held);
    let mut ferry = Ferry::start_with(&cfg, &[("FERRY_KEK", crate::harness::TEST_KEK)]).unwrap();
    assert_eq!(metrics_url(&mut ferry), format!("http://{addr}"));
    assert!(ferry.admin.is_some());
}
