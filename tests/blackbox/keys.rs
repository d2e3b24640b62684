//! Ferry's own signing keys through the real binary: encrypted at rest, a wrong
//! key-encryption key refused at start, `ferry keys` (list, rotate, revoke,
//! export-public, rewrap, new-kek), and two processes sharing one data directory.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{Ferry, Setup, TEST_KEK, bin, ferry_cmd};

fn config(extra_signing: &str) -> String {
    format!(
        r#"
issuer: https://ferry.example.com
data_dir: data
tokens: {{ default_ttl: 2s, max_ttl: 2s, min_ttl: 1s }}
signing:
  jwks_max_age: 1s
  leeway: 0s
  rotation_period: 1h
{extra_signing}
providers:
  - id: a
    issuer: https://idp.example.com
    audiences: [https://ferry.example.com]
    jwks: {{ inline: {{"keys": [{{"kty": "EC", "crv": "P-256", "kid": "k", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}}]}} }}
audiences:
  - audience: https://deploy.example.com
    rules:
      - allow: "true"
"#
    )
}

fn keys(dir: &Path, args: &[&str], kek: &str) -> (bool, String) {
    let out = ferry_cmd()
        .env("FERRY_KEK", kek)
        .arg("keys")
        .args(args)
        .args(["--config", "ferry.yaml"])
        .current_dir(dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn ring(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("data/ring.json")).unwrap()).unwrap()
}

fn active(ring: &Value) -> Vec<String> {
    ring["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["state"] == "active")
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn keys_are_encrypted_at_rest_and_a_wrong_kek_is_refused_at_start() {
    let setup = Setup::new("kek");
    let cfg = setup.config(&config(""));
    drop(setup.run());
    let text = std::fs::read_to_string(setup.path().join("data/ring.json")).unwrap();
    assert!(
        text.contains("\"kind\": \"encrypted\"") && !text.contains("pkcs8"),
        "{text}"
    );

    // Another KEK: a clear error, and the ring is untouched.
    let other = String::from_utf8(
        Command::new(bin("ferry"))
            .args(["keys", "new-kek"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let out = std::process::Command::new(bin("ferry"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("FERRY_KEK", other.trim())
        .env("FERRY_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("key-encryption key is wrong or missing"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(setup.path().join("data/ring.json")).unwrap(),
        text
    );
    // No KEK at all: told how to provide one.
    let out = std::process::Command::new(bin("ferry"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .env_remove("FERRY_KEK")
        .env("FERRY_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("no key-encryption key: set FERRY_KEK"));
    // Twin: the right KEK starts.
    assert!(Ferry::start_on(setup.socket(), &cfg, &setup.env_vars()).is_ok());
}

use std::process::Command;

#[test]
fn the_keys_command_lists_rotates_revokes_exports_and_rewraps() {
    let setup = Setup::new("keys-cli");
    let dir = setup.path();
    std::fs::write(dir.join("ferry.yaml"), config("")).unwrap();
    let (ok, out) = keys(dir, &["list"], TEST_KEK);
    assert!(ok, "{out}");
    assert!(out.contains("active") && out.contains("pending"), "{out}");
    let first = active(&ring(dir)).pop().unwrap();

    // The standby has been published for jwks_max_age + leeway (1 s) after a moment.
    std::thread::sleep(Duration::from_millis(1_100));
    let (ok, out) = keys(dir, &["rotate"], TEST_KEK);
    assert!(ok, "{out}");
    let second = active(&ring(dir)).pop().unwrap();
    assert_ne!(first, second);

    let (ok, jwks) = keys(dir, &["export-public"], TEST_KEK);
    assert!(ok);
    let jwks: Value = serde_json::from_str(&jwks).unwrap();
    assert!(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == first.as_str()),
        "retired key published"
    );
    assert!(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k.get("d").is_none())
    );

    // Emergency revocation of the active key: the standby published long enough signs
    // at once and the revoked key leaves the JWKS.
    let (ok, out) = keys(dir, &["revoke", &second], TEST_KEK);
    assert!(ok, "{out}");
    assert!(
        out.contains("jwks_max_age"),
        "the remaining exposure is stated: {out}"
    );
    let third = active(&ring(dir)).pop().unwrap();
    assert_ne!(third, second);
    let (_, jwks) = keys(dir, &["export-public"], TEST_KEK);
    assert!(!jwks.contains(&second));
    // Revoking again with a one-hour publication margin (set now, so the outcome does
    // not hang on how fast this machine runs the commands): the remaining standbys are
    // too recent, so it is refused without --force; with it, the key leaves the JWKS
    // all the same.
    std::fs::write(
        dir.join("ferry.yaml"),
        config("")
            .replace("jwks_max_age: 1s", "jwks_max_age: 1h")
            .replace("rotation_period: 1h", "rotation_period: 3h"),
    )
    .unwrap();
    let (ok, out) = keys(dir, &["revoke", &third], TEST_KEK);
    assert!(!ok && out.contains("--force"), "{out}");
    let (ok, out) = keys(dir, &["revoke", &third, "--force"], TEST_KEK);
    assert!(ok, "{out}");
    let (_, jwks) = keys(dir, &["export-public"], TEST_KEK);
    assert!(!jwks.contains(&third));
    assert_eq!(active(&ring(dir)).len(), 1);

    // Rewrap under a new KEK, keeping the old one for reading.
    let new = String::from_utf8(
        Command::new(bin("ferry"))
            .args(["keys", "new-kek"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let new = new.trim();
    let two = config("  key_encryption_keys:\n    - env: NEW_KEK\n    - env: FERRY_KEK\n");
    std::fs::write(dir.join("ferry.yaml"), &two).unwrap();
    let out = ferry_cmd()
        .env("NEW_KEK", new)
        .args(["keys", "rewrap", "--config", "ferry.yaml"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Now the new KEK alone opens the ring; the old alone does not.
    let only_new = config("  key_encryption_keys:\n    - env: NEW_KEK\n");
    std::fs::write(dir.join("ferry.yaml"), &only_new).unwrap();
    let ok_new = ferry_cmd()
        .env("NEW_KEK", new)
        .args(["keys", "list", "--config", "ferry.yaml"])
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(ok_new.success());
    std::fs::write(dir.join("ferry.yaml"), config("")).unwrap();
    let (ok, _) = keys(dir, &["list"], TEST_KEK);
    assert!(!ok, "the old KEK no longer opens the rewrapped keys");
}

#[tokio::test]
async fn two_processes_sharing_a_directory_keep_one_active_key() {
    let setup = Setup::new("two-procs");
    let cfg = setup.path().join("ferry.yaml");
    // Rotation every 2 s with a 1 s publication margin: both servers race to rotate.
    std::fs::write(
        &cfg,
        config("").replace("rotation_period: 1h", "rotation_period: 2s"),
    )
    .unwrap();
    let a = Ferry::start(&cfg).unwrap();
    let b = Ferry::start(&cfg).unwrap();
    let http = reqwest::Client::new();
    let mut versions = Vec::new();
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let r = ring(setup.path());
        assert_eq!(
            active(&r).len(),
            1,
            "version {}: {:?}",
            r["version"],
            active(&r)
        );
        versions.push(r["version"].as_u64().unwrap());
        // Both serve the same active key in their JWKS.
        for f in [&a, &b] {
            let jwks: Value = http
                .get(format!("{}/jwks", f.url))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert!(!jwks["keys"].as_array().unwrap().is_empty());
        }
    }
    assert!(
        versions.last().unwrap() > &versions[0],
        "the ring rotated: {versions:?}"
    );
    // Both processes wrote versions of the shared ring at some point or another; the
    // writer of the last one is recorded.
    assert!(
        ring(setup.path())["written_by"]
            .as_str()
            .unwrap()
            .contains(':')
    );
}

#[tokio::test]
async fn a_server_whose_keys_live_in_softhsm() {
    let module = std::env::var("FERRY_TEST_PKCS11_MODULE")
        .expect("FERRY_TEST_PKCS11_MODULE is not set: run the test command (scripts/test.sh), which sets up SoftHSM2");
    let setup = Setup::new("hsm");
    let cfg = setup.path().join("ferry.yaml");
    let hsm = format!(
        "  hsm:\n    module: {module}\n    token_label: {}\n    pin: {{ env: HSM_PIN }}\n",
        std::env::var("FERRY_TEST_PKCS11_TOKEN").unwrap_or_else(|_| "ferry-test".into())
    );
    std::fs::write(&cfg, config(&hsm)).unwrap();
    let pin = std::env::var("FERRY_TEST_PKCS11_PIN").unwrap_or_else(|_| "1234".into());
    let ferry = Ferry::start_with(&cfg, &[("HSM_PIN", &pin)]).unwrap();
    let jwks: Value = reqwest::get(format!("{}/jwks", ferry.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 3);
    assert!(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["alg"] == "ES256")
    );
    let text = std::fs::read_to_string(setup.path().join("data/ring.json")).unwrap();
    assert!(
        text.contains("\"kind\": \"pkcs11\"") && !text.contains("blob"),
        "{text}"
    );
    // Twin: a wrong PIN does not start.
    drop(ferry);
    assert!(Ferry::start_with(&cfg, &[("HSM_PIN", "0000")]).is_err());
}
