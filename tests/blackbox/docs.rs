//! The documentation is tested (issue 25 item 4; README, "Documentation is tested").
//! Every fenced block of README.md, docs/ and deploy/ is accounted for: YAML is Ferry
//! configuration that `ferry check` accepts (elisions and files filled by `fill`) or is
//! marked as other YAML and parses; a shell block is run here or says why not. The
//! README's own commands are run as a newcomer would: the quickstart, and "Your own
//! GitHub and Kubernetes tokens" — a configuration written from the README, exchanging a
//! GitHub-shaped and a Kubernetes-shaped token. Scripts run in a throwaway directory on
//! loopback, in their own process group (ended afterwards, whatever they left running).

mod blocks;
mod fill;

use std::fs::File;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{TempDir, bin};
use blocks::Block;

/// The tests below that run documentation blocks (`<!-- doc-test: run NAME -->`).
const RUNNERS: &[&str] = &["quickstart", "own-tokens"];

/// The address the README's local examples give Ferry; a test replaces it with a socket
/// of its own, handed to Ferry by socket activation.
const README_ADDR: &str = "127.0.0.1:8080";

#[test]
fn every_block_is_checked_run_or_marked() {
    let blocks = blocks::all();
    assert!(
        blocks.iter().filter(|b| b.is_yaml()).count() >= 20
            && blocks.iter().filter(|b| b.is_shell()).count() >= 10,
        "the documents' blocks were not found"
    );
    let problems = blocks::problems(&blocks, RUNNERS);
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn the_marker_rules_refuse_what_they_promise_to() {
    let doc = |md: &str| blocks::problems(&blocks::parse("t.md", md), RUNNERS);
    // Shell: run by a named test, or illustrative — each beside the unmarked twin.
    let run = "<!-- doc-test: run own-tokens -->\n```sh\nferry check\n```\n";
    let illustrative = "```sh\n# illustrative: needs a cluster\nkubectl apply -k .\n```\n";
    let unmarked = "```sh\nkubectl apply -k .\n```\n";
    assert!(doc(run).is_empty(), "{:?}", doc(run));
    assert!(doc(illustrative).is_empty());
    assert_eq!(doc(unmarked).len(), 1);
    assert_eq!(
        doc("```sh\n# illustrative:\nls\n```\n").len(),
        1,
        "no reason given"
    );
    assert_eq!(
        doc("<!-- doc-test: run nobody -->\n```sh\nls\n```\n").len(),
        1,
        "an unknown runner"
    );
    assert_eq!(doc("<!-- doc-test: walk -->\n```sh\nls\n```\n").len(), 2);
    // Other YAML: marked, and still parsed.
    let k8s = "<!-- not-ferry-config: kubernetes -->\n```yaml\nkind: Pod\n```\n";
    assert!(doc(k8s).is_empty());
    let broken = "<!-- not-ferry-config: kubernetes -->\n```yaml\nkind: [Pod\n```\n";
    assert_eq!(doc(broken).len(), 1);
    // A `#` that silently starts a comment, beside its quoted twin.
    let cut = "```yaml\naudiences:\n  - message: ask #platform for access\n```\n";
    let quoted = "```yaml\naudiences:\n  - message: \"ask #platform for access\"   # why\n```\n";
    assert_eq!(doc(cut).len(), 1, "{:?}", doc(cut));
    assert!(doc(quoted).is_empty(), "{:?}", doc(quoted));
}

/// `ferry check` on one example, in `dir`.
fn check(example: &str, dir: &Path, m: &fill::Material) -> Result<std::process::Child, String> {
    let text = fill::elisions(example, m)?;
    let value: Value =
        serde_saphyr::from_str(&text).map_err(|e| format!("does not parse as YAML: {e}"))?;
    let mut config = fill::merged(value)?;
    std::fs::create_dir_all(dir).unwrap();
    fill::files(&mut config, dir, m);
    let path = dir.join("ferry.yaml");
    std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    Command::new(bin("ferry"))
        .arg("check")
        .arg("--config")
        .arg(&path)
        .current_dir(dir)
        // Nothing from the environment: no connection string, no proxy, no KEK but ours.
        .env_clear()
        .env("FERRY_KEK", fill::KEK)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("ferry check: {e}"))
}

fn outcome(child: Result<std::process::Child, String>) -> Result<(), String> {
    let out = child?.wait_with_output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ferry check refuses it:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[test]
fn every_ferry_configuration_block_passes_ferry_check() {
    let m = fill::Material::new();
    let tmp = TempDir::new("docs-check");
    let blocks: Vec<Block> = blocks::all()
        .into_iter()
        .filter(|b| b.is_yaml() && !b.not_ferry_config())
        .collect();
    assert!(blocks.len() >= 15, "only {} examples found", blocks.len());
    let mut failures = Vec::new();
    // A few processes at a time.
    for (n, chunk) in blocks.chunks(6).enumerate() {
        let children: Vec<_> = chunk
            .iter()
            .enumerate()
            .map(|(i, b)| check(&b.text, &tmp.path().join(format!("{n}-{i}")), &m))
            .collect();
        for (b, child) in chunk.iter().zip(children) {
            if let Err(e) = outcome(child) {
                failures.push(format!(
                    "{}: {e}\n(mark it `<!-- not-ferry-config: WHAT -->` if it is not Ferry configuration)\n{}",
                    b.at(),
                    b.text
                ));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

#[test]
fn a_broken_example_fails_the_check_beside_its_fixed_twin() {
    let m = fill::Material::new();
    let tmp = TempDir::new("docs-twin");
    let good =
        "tls:\n  cert_file: /etc/ferry/tls/server.crt\n  key_file: /etc/ferry/tls/server.key\n";
    let typo =
        "tls:\n  cert_file: /etc/ferry/tls/server.crt\n  keyfile: /etc/ferry/tls/server.key\n";
    assert_eq!(outcome(check(good, &tmp.path().join("good"), &m)), Ok(()));
    let refused = outcome(check(typo, &tmp.path().join("typo"), &m)).unwrap_err();
    assert!(refused.contains("keyfile"), "{refused}");
    let elided = "clients:\n  - { id: ci, auth: client_secret_basic, secret_sha256: …, x: … }\n";
    assert!(check(elided, &tmp.path().join("elided"), &m).is_err());
    // A SAML provider's metadata file is generated for its entity id.
    let saml = "providers:\n  - id: corp\n    kind: saml\n    entity_id: https://idp.example.com/saml\n    metadata: { file: /etc/ferry/idp-metadata.xml }\n    audiences: [https://ferry.example.com]\n";
    assert_eq!(outcome(check(saml, &tmp.path().join("saml"), &m)), Ok(()));
}

/// The blocks test `name` runs, as one script: shell blocks as they are, `file` blocks
/// written at their place.
fn script(name: &str) -> String {
    let mut s = String::new();
    for b in blocks::all() {
        match b.run() {
            Some((n, None)) if n == name => s.push_str(&b.text),
            Some((n, Some(file))) if n == name => {
                s.push_str(&format!(
                    "cat > '{file}' <<'FERRY_DOC_EOF'\n{}FERRY_DOC_EOF\n",
                    b.text
                ));
            }
            _ => {}
        }
    }
    assert!(!s.is_empty(), "no block is marked `doc-test: run {name}`");
    s
}

/// What a script printed.
struct Ran {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs `script` with bash (`set -eu -o pipefail`) in `cwd`, with `path` before `PATH`
/// and, given a socket, the socket as file descriptor 3 (`LISTEN_FDS=1`: the `ferry
/// serve` it starts serves on it). Ends the script's whole process group afterwards.
fn run(script: &str, cwd: &Path, path: &[PathBuf], socket: Option<&TcpListener>) -> Ran {
    let logs = TempDir::new("docs-logs");
    let (out, err) = (logs.path().join("out"), logs.path().join("err"));
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(format!("set -eu -o pipefail\n{script}"))
        .current_dir(cwd)
        .env(
            "PATH",
            std::env::join_paths(path.iter().cloned().chain(std::env::split_paths(
                &std::env::var_os("PATH").unwrap_or_default(),
            )))
            .unwrap(),
        )
        // Parallel tests must not compete for the admin listener's default port.
        .env("FERRY_ADMIN_LISTEN", "127.0.0.1:0");
    for var in [
        "FERRY_KEK",
        "FERRY_LISTEN",
        "FERRY_CONFIG",
        "FERRY_LOG_LEVEL",
        "RUST_LOG",
        "LISTEN_FDS",
        "LISTEN_PID",
        "LISTEN_FDNAMES",
    ] {
        cmd.env_remove(var);
    }
    if let Some(socket) = socket {
        use command_fds::{CommandFdExt, FdMapping};
        cmd.env("LISTEN_FDS", "1");
        cmd.fd_mappings(vec![FdMapping {
            parent_fd: socket.try_clone().unwrap().into(),
            child_fd: 3,
        }])
        .unwrap();
    }
    let mut child = cmd
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(File::create(&out).unwrap())
        .stderr(File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Whatever the script left running (its Ferry, a development issuer).
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stderr(Stdio::null())
        .status();
    let _ = child.wait();
    Ran {
        ok: status.is_some_and(|s| s.success()),
        stdout: std::fs::read_to_string(&out).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err).unwrap_or_default()
            + if status.is_none() {
                "\n(timed out)"
            } else {
                ""
            },
    }
}

/// The token responses a script printed, one JSON object per line.
fn responses(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .filter(|v| v.get("access_token").is_some())
        .collect()
}

/// The claims of an access token (its signature is Ferry's business, tested elsewhere).
fn claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[test]
fn the_readme_quickstart_exchanges_a_token() {
    // The README's first command, run from the clone as written; the binaries it would
    // build are built (the black-box tests run after `cargo build --bins`), so `cargo`
    // is a stub here rather than a second build inside the test.
    let root = blocks::root();
    assert_eq!(
        bin("ferry"),
        root.join("target/debug/ferry"),
        "the quickstart runs target/debug/ferry"
    );
    let stub = TempDir::new("docs-cargo");
    let cargo = stub.path().join("cargo");
    std::fs::write(
        &cargo,
        "#!/bin/sh\n[ \"$1\" = build ] && exit 0\necho \"unexpected: cargo $*\" >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&cargo, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let ran = run(
        &script("quickstart"),
        &root,
        &[stub.path().to_owned()],
        None,
    );
    assert!(ran.ok, "{}\n{}", ran.stdout, ran.stderr);
    // The JWT exchange and the SAML one each print a response with a token.
    assert_eq!(
        ran.stdout.matches("\"access_token\":").count(),
        2,
        "{}",
        ran.stdout
    );
}

#[test]
fn own_github_and_kubernetes_tokens_exchange_as_the_readme_says() {
    let script = script("own-tokens");
    assert!(
        script.contains(README_ADDR),
        "the README's local example gives Ferry {README_ADDR}"
    );
    let socket = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap().to_string();
    let tmp = TempDir::new("docs-own-tokens");
    let ran = run(
        &script.replace(README_ADDR, &addr),
        tmp.path(),
        &[bin("ferry").parent().unwrap().to_owned()],
        Some(&socket),
    );
    assert!(ran.ok, "{}\n{}", ran.stdout, ran.stderr);
    let got = responses(&ran.stdout);
    assert_eq!(got.len(), 2, "{}\n{}", ran.stdout, ran.stderr);
    let (github, cluster) = (&got[0], &got[1]);
    assert_eq!(github["scope"], "deploy:write");
    assert_eq!(cluster["scope"], "deploy:read");
    let github = claims(github["access_token"].as_str().unwrap());
    let cluster = claims(cluster["access_token"].as_str().unwrap());
    assert_eq!(github["iss"], format!("http://{addr}"));
    assert_eq!(github["sub"], "repo:acme/app:refs/heads/main");
    assert_eq!(github["ferry"]["provider"], "github");
    assert_eq!(
        github["ferry"]["iss"],
        "https://token.actions.githubusercontent.com"
    );
    assert_eq!(cluster["sub"], "system:serviceaccount:payments:api");
    assert_eq!(cluster["ferry"]["provider"], "cluster");
    assert_eq!(
        cluster["ferry"]["iss"],
        "https://kubernetes.default.svc.cluster.local"
    );
}
