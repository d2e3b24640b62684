//! Socket activation (systemd's `LISTEN_FDS`): Ferry serves on the sockets it is
//! handed, so the one who binds them knows Ferry's URL before Ferry starts and can write
//! it into the configuration; sockets meant for another process are ignored, and
//! sockets Ferry cannot tell apart are refused.

use ferry_testkit::{Issuer, now};
use serde_json::{Value, json};

use crate::harness::{Ferry, Proc, Setup, Socket, TEST_KEK, activated, idp_providers};

const TE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
const API: &str = "https://api.example.com";

/// A setup whose configuration names Ferry's URL as its issuer and as the audience its
/// provider's tokens must carry.
fn setup(tag: &str) -> (Setup, Issuer) {
    let s = Setup::new(tag);
    let idp = s.idp();
    let url = s.url();
    let providers = idp_providers(&url);
    s.config(&format!(
        "issuer: {url}\ndata_dir: data\n{providers}audiences:\n  - audience: {API}\n    rules: [{{ allow: \"true\" }}]\n"
    ));
    (s, idp)
}

async fn get(url: &str) -> (u16, Value) {
    let r = reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn ferry_serves_on_the_socket_it_inherits_and_ignores_one_meant_for_another_process() {
    // Positive: LISTEN_PID is Ferry's own pid. The socket's URL, written into the
    // configuration before Ferry started, is where it serves and what it is.
    let (s, idp) = setup("activation");
    let url = s.url();
    let ferry = s.run();
    assert_eq!(ferry.url, url);
    assert!(
        ferry
            .proc()
            .output()
            .contains("serving on the socket the service manager passed")
    );
    let (status, meta) = get(&format!("{url}/.well-known/oauth-authorization-server")).await;
    assert_eq!((status, meta["issuer"].as_str()), (200, Some(url.as_str())));
    let subject = idp.token(&idp.claims(&url, "workload", now(), json!({})));
    let r = reqwest::Client::new()
        .post(format!("{url}/token"))
        .form(&[
            ("grant_type", TE),
            ("subject_token", &subject),
            ("subject_token_type", JWT),
            ("audience", API),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        200,
        "an exchange on the inherited socket"
    );
    drop(ferry);

    // Twin: the same socket and variables, but LISTEN_PID names another process (this
    // test's: variables leaked from a parent). Ferry says so, ignores the socket and
    // binds `listen` instead.
    let (other, _) = setup("activation-other-pid");
    let mut cmd = activated(
        &[other.socket()],
        None,
        &format!("LISTEN_PID={}", std::process::id()),
        &other.path().join("ferry.yaml"),
    )
    .unwrap();
    cmd.env("FERRY_LISTEN", "127.0.0.1:0");
    let ignored = Ferry::launch(cmd, &[("FERRY_KEK", TEST_KEK)]).unwrap();
    assert_ne!(ignored.url, other.url(), "the inherited socket is not used");
    let out = ignored.proc().output();
    assert!(
        out.contains(&format!(
            "socket(s) to process {}, not to this one",
            std::process::id()
        )),
        "{out}"
    );
    assert!(!out.contains("serving on the socket the service manager passed"));
    let (status, _) = get(&format!(
        "{}/.well-known/oauth-authorization-server",
        ignored.url
    ))
    .await;
    assert_eq!(status, 200, "it serves on the address it bound");
}

#[tokio::test]
async fn a_socket_named_admin_serves_the_admin_listener_and_unnamed_sockets_are_refused() {
    // Positive: two sockets, named as systemd's FileDescriptorName= names them. The
    // admin one serves although `admin.listen` is off: the service manager passed it.
    let (s, _) = setup("activation-admin");
    let admin = Socket::bind();
    let cfg = s.path().join("ferry.yaml");
    let mut cmd = activated(
        &[s.socket(), &admin],
        Some("public:admin"),
        "LISTEN_PID=$$",
        &cfg,
    )
    .unwrap();
    cmd.env_remove("FERRY_LISTEN");
    let ferry = Ferry::launch(
        cmd,
        &[("FERRY_KEK", TEST_KEK), ("FERRY_ADMIN_LISTEN", "off")],
    )
    .unwrap();
    assert_eq!(ferry.url, s.url());
    assert_eq!(ferry.admin.as_deref(), Some(admin.url.as_str()));
    assert_eq!(get(&format!("{}/metrics", admin.url)).await.0, 200);
    drop(ferry);

    // Twin: the same two sockets without names. Ferry cannot tell which is public,
    // so it refuses to start, saying how to name them.
    let mut cmd = activated(&[s.socket(), &admin], None, "LISTEN_PID=$$", &cfg).unwrap();
    cmd.env("FERRY_KEK", TEST_KEK).env_remove("FERRY_LISTEN");
    let mut refused = Proc::spawn(&mut cmd).unwrap();
    let status = refused.wait_exit(30).unwrap();
    assert!(!status.success());
    let out = refused.output();
    assert!(
        out.contains("more than one socket for the public listener")
            && out.contains("FileDescriptorName=admin"),
        "{out}"
    );
}
