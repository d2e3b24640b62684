//! The development issuer as a SAML identity provider (issue 23): `ferry-dev-idp serve`
//! keeps a SAML key and publishes its metadata, `mint-saml` signs assertions (alone or in
//! a response), and a real Ferry trusting that metadata file exchanges them — until the
//! development issuer starts afresh with a new key.

use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use crate::harness::{Ferry, Proc, Setup, bin};

const SP: &str = "https://ferry.example.test/sp";
const AUDIENCE: &str = "https://deploy.example.com";
const GROUP: &str = "http://schemas.xmlsoap.org/claims/Group";

/// `ferry-dev-idp serve` on `listen`; returns the process and its issuer URL.
fn serve(data_dir: &Path, listen: &str) -> (Proc, String) {
    let mut proc = Proc::spawn(
        Command::new(bin("ferry-dev-idp"))
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", listen]),
    )
    .unwrap();
    let line = proc.wait_for("listening on ").unwrap();
    let issuer = line.rsplit(' ').next().unwrap().to_owned();
    (proc, issuer)
}

/// `ferry-dev-idp mint-saml` for `subject`, addressed to Ferry at `ferry_url`.
fn mint_saml(data_dir: &Path, ferry_url: &str, subject: &str, response: bool) -> String {
    let recipient = format!("{ferry_url}/token");
    let mut cmd = Command::new(bin("ferry-dev-idp"));
    cmd.arg("mint-saml")
        .arg("--data-dir")
        .arg(data_dir)
        .args([
            "--subject",
            subject,
            "--audience",
            SP,
            "--recipient",
            &recipient,
        ])
        .args(["--attribute", &format!("{GROUP}=dev")])
        .args(["--attribute", &format!("{GROUP}=deployers")]);
    if response {
        cmd.arg("--response");
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "mint-saml: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The `sub` Ferry issued for `token`, or the status it answered.
async fn exchange(ferry: &Ferry, token: &str) -> Result<String, u16> {
    let r = reqwest::Client::new()
        .post(format!("{}/token", ferry.url))
        .form(&[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:saml2",
            ),
            ("subject_token", token),
            ("audience", AUDIENCE),
        ])
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    if status != 200 {
        return Err(status);
    }
    let claims = ferry_testkit::mint::payload(body["access_token"].as_str().unwrap());
    Ok(claims["sub"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn dev_idp_assertions_are_exchanged_until_it_starts_with_a_new_key() {
    let setup = Setup::new("dev-idp-saml");
    let data = setup.path().join("idp");
    let (idp, issuer) = serve(&data, "127.0.0.1:0");
    let listen = issuer.trim_start_matches("http://").to_owned();
    let metadata = data.join("saml-metadata.xml");
    // The metadata file and the one served are the same document, naming `<issuer>/saml`.
    let served = reqwest::get(format!("{issuer}/saml/metadata"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(served, std::fs::read_to_string(&metadata).unwrap());
    assert!(served.contains(&format!("entityID=\"{issuer}/saml\"")));

    let mut ferry = setup.start(&format!(
        "issuer: {url}\n\
         providers:\n  - id: dev-saml\n    kind: saml\n    entity_id: {issuer}/saml\n\
         \x20   metadata: {{ file: {metadata} }}\n    audiences: [{SP}]\n\
         \x20   mapping:\n      subject: assertion.subject\n      groups: assertion.attributes['{GROUP}']\n\
         audiences:\n  - audience: {AUDIENCE}\n    rules:\n      - allow: \"provider == 'dev-saml' && 'deployers' in groups\"\n        scopes: [deploy]\n",
        url = setup.url(),
        metadata = metadata.display(),
    ));
    let url = setup.url();
    let assertion = mint_saml(&data, &url, "alice@example.com", false);
    let response = mint_saml(&data, &url, "bob@example.com", true);
    let xml = |t: &str| String::from_utf8(URL_SAFE_NO_PAD.decode(t).unwrap()).unwrap();
    assert!(xml(&assertion).starts_with("<saml:Assertion "));
    assert!(xml(&response).starts_with("<samlp:Response "));
    assert_eq!(
        exchange(&ferry, &assertion).await.unwrap(),
        "alice@example.com"
    );
    assert_eq!(
        exchange(&ferry, &response).await.unwrap(),
        "bob@example.com"
    );

    // Restarted on its data directory (and address), it keeps its key: once Ferry has
    // verified an assertion minted after the restart (which would have made it reload a
    // changed metadata file), the one minted before still verifies.
    drop(idp);
    let (idp, again) = serve(&data, &listen);
    assert_eq!(again, issuer);
    let after_restart = mint_saml(&data, &url, "carol@example.com", false);
    assert_eq!(
        exchange(&ferry, &after_restart).await.unwrap(),
        "carol@example.com"
    );
    assert_eq!(
        exchange(&ferry, &assertion).await.unwrap(),
        "alice@example.com"
    );

    // Started afresh (an empty data directory), it has a new key and writes new metadata,
    // which Ferry reloads: an assertion of the new key is exchanged (waiting for the
    // reload), the old one — identical but for its key — no longer.
    drop(idp);
    std::fs::remove_dir_all(&data).unwrap();
    let (_idp, fresh) = serve(&data, &listen);
    assert_eq!(fresh, issuer);
    let renewed = mint_saml(&data, &url, "alice@example.com", false);
    let mut answer = Err(0);
    for _ in 0..100 {
        answer = exchange(&ferry, &renewed).await;
        if answer.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(answer.unwrap(), "alice@example.com");
    assert_eq!(exchange(&ferry, &assertion).await, Err(400));
    assert_eq!(exchange(&ferry, &response).await, Err(400));
    assert!(
        ferry
            .proc_mut()
            .wait_for("the signing certificate is not one of")
            .is_ok()
    );
}
