//! `ferry cred-config`: the shapes Google's libraries read, the refusals beside their
//! twins, and the file's safety (0600, no overwrite without --force, no link followed,
//! no secret printed). The libraries themselves read these files in
//! `clients/python/test_google.py`.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::{Args, SourceType, SubjectTokenType, plan, run, write_private};

fn base(out: &Path) -> Args {
    Args {
        url: "https://sts.example.com".into(),
        audience: "https://deploy.example.com".into(),
        output_file: out.to_owned(),
        ..Args::default()
    }
}

fn abs(p: &str) -> String {
    std::path::absolute(p).unwrap().to_str().unwrap().to_owned()
}

#[test]
fn a_file_source_with_a_json_format_client_and_universe_domain() {
    let mut a = base(Path::new("creds.json"));
    a.credential_source_file = Some(PathBuf::from("token.json"));
    a.credential_source_type = Some(SourceType::Json);
    a.credential_source_field_name = Some("value".into());
    a.client_id = Some("ci".into());
    a.universe_domain = Some("example.com".into());
    let p = plan(&a, Some("s3cret".into())).unwrap();
    assert_eq!(
        p.credentials,
        json!({
            "type": "external_account",
            "audience": "https://deploy.example.com",
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": "https://sts.example.com/token",
            "credential_source": {"file": abs("token.json"),
                                  "format": {"type": "json", "subject_token_field_name": "value"}},
            "client_id": "ci",
            "client_secret": "s3cret",
            "universe_domain": "example.com",
        })
    );
    assert_eq!(p.certificate_config, None);
    // gcloud's member order, which a reader of the file expects.
    assert!(
        p.text
            .starts_with("{\n  \"type\": \"external_account\",\n  \"audience\""),
        "{}",
        p.text
    );
    let parsed: serde_json::Value = serde_json::from_str(&p.text).unwrap();
    assert_eq!(parsed, p.credentials);
}

#[test]
fn a_url_source_with_headers_and_each_subject_token_type() {
    for (t, urn) in [
        (SubjectTokenType::Jwt, "jwt"),
        (SubjectTokenType::IdToken, "id_token"),
        (SubjectTokenType::Saml2, "saml2"),
    ] {
        let mut a = base(Path::new("c.json"));
        a.url = "http://127.0.0.1:8080/".into();
        a.subject_token_type = Some(t);
        a.credential_source_url = Some("http://169.254.169.254/token".into());
        a.credential_source_headers = vec!["Metadata-Flavor=Google,X-A=b=c".into()];
        a.credential_source_type = Some(SourceType::Text);
        let c = plan(&a, None).unwrap().credentials;
        assert_eq!(
            c["subject_token_type"],
            format!("urn:ietf:params:oauth:token-type:{urn}")
        );
        assert_eq!(c["token_url"], "http://127.0.0.1:8080/token");
        assert_eq!(
            c["credential_source"],
            json!({"url": "http://169.254.169.254/token",
                   "headers": {"Metadata-Flavor": "Google", "X-A": "b=c"},
                   "format": {"type": "text"}})
        );
        // As gcloud writes it: the URL first, the format last.
        let p = plan(&a, None).unwrap();
        let (url, headers, format) = (
            p.text.find("\"url\"").unwrap(),
            p.text.find("\"headers\"").unwrap(),
            p.text.find("\"format\"").unwrap(),
        );
        assert!(url < headers && headers < format, "{}", p.text);
        assert!(c.get("client_id").is_none() && c.get("universe_domain").is_none());
    }
}

#[test]
fn an_executable_source_takes_google_s_timeout_bounds() {
    let mut a = base(Path::new("c.json"));
    a.executable_command = Some("/usr/bin/get-token --audience x".into());
    let c = plan(&a, None).unwrap().credentials;
    assert_eq!(
        c["credential_source"],
        json!({"executable": {"command": "/usr/bin/get-token --audience x", "timeout_millis": 30000}})
    );
    a.executable_output_file = Some("cache.json".into());
    for (ms, ok) in [
        (5_000, true),
        (120_000, true),
        (4_999, false),
        (120_001, false),
    ] {
        a.executable_timeout_millis = Some(ms);
        let r = plan(&a, None);
        assert_eq!(r.is_ok(), ok, "{ms}: {r:?}");
        if let Ok(p) = r {
            assert_eq!(
                p.credentials["credential_source"]["executable"]["output_file"],
                abs("cache.json")
            );
        }
    }
}

#[test]
fn a_certificate_source_writes_its_configuration_and_sends_mtls() {
    let mut a = base(Path::new("/tmp/x/creds.json"));
    a.credential_cert_path = Some("/pki/leaf.pem".into());
    a.credential_cert_private_key_path = Some("/pki/leaf.key".into());
    a.credential_cert_trust_chain_path = Some("/pki/chain.pem".into());
    let p = plan(&a, None).unwrap();
    assert_eq!(
        p.credentials["subject_token_type"],
        "urn:ietf:params:oauth:token-type:mtls"
    );
    assert_eq!(
        p.credentials["credential_source"],
        json!({"certificate": {"certificate_config_location": "/tmp/x/certificate_config.json",
                               "trust_chain_path": "/pki/chain.pem"}})
    );
    assert_eq!(
        p.certificate_config,
        Some((
            PathBuf::from("/tmp/x/certificate_config.json"),
            json!({"cert_configs": {"workload": {"cert_path": "/pki/leaf.pem", "key_path": "/pki/leaf.key"}}})
        ))
    );
    let mut d = base(Path::new("c.json"));
    d.use_default_certificate_config = true;
    let p = plan(&d, None).unwrap();
    assert_eq!(
        p.credentials["credential_source"],
        json!({"certificate": {"use_default_certificate_config": true}})
    );
    assert_eq!(p.certificate_config, None);
}

type Edit = fn(&mut Args);

/// Each refusal: its name, the edit of a valid request, and what the error must say.
fn refusals() -> Vec<(&'static str, Edit, &'static str)> {
    vec![
        ("no source", |_| {}, "exactly one source"),
        (
            "two sources",
            |a| {
                a.credential_source_file = Some("t".into());
                a.executable_command = Some("x".into());
            },
            "exactly one source",
        ),
        (
            "field name without json",
            |a| {
                a.credential_source_file = Some("t".into());
                a.credential_source_field_name = Some("v".into());
            },
            "needs --credential-source-type json",
        ),
        (
            "json without field name",
            |a| {
                a.credential_source_file = Some("t".into());
                a.credential_source_type = Some(SourceType::Json);
            },
            "needs --credential-source-field-name",
        ),
        (
            "headers on a file source",
            |a| {
                a.credential_source_file = Some("t".into());
                a.credential_source_headers = vec!["A=b".into()];
            },
            "applies to a URL source",
        ),
        (
            "mtls without a certificate",
            |a| {
                a.credential_source_file = Some("t".into());
                a.subject_token_type = Some(SubjectTokenType::Mtls);
            },
            "needs a certificate source",
        ),
        (
            "a certificate sending a jwt",
            |a| {
                a.use_default_certificate_config = true;
                a.subject_token_type = Some(SubjectTokenType::Jwt);
            },
            "sends an mtls subject token",
        ),
        (
            "plain http across a network",
            |a| {
                a.credential_source_file = Some("t".into());
                a.url = "http://sts.example.com".into();
            },
            "must be https",
        ),
        (
            "a query in the URL",
            |a| {
                a.credential_source_file = Some("t".into());
                a.url = "https://sts.example.com/?x=1".into();
            },
            "no query",
        ),
        (
            "a bad universe domain",
            |a| {
                a.credential_source_file = Some("t".into());
                a.universe_domain = Some("evil.com/x".into());
            },
            "DNS name",
        ),
    ]
}

/// Refusals added after the outside review: the universe domain, URL sources, headers,
/// the executable.
fn reviewed_refusals() -> Vec<(&'static str, Edit, &'static str)> {
    vec![
        // Downscoping clients send the token to sts.<universe-domain>: it must be --url's
        // host (twin: example.com in the first test).
        (
            "a universe domain --url does not name",
            |a| {
                a.credential_source_file = Some("t".into());
                a.universe_domain = Some("exarnple.com".into());
            },
            "sts.<domain>",
        ),
        (
            "Google's own universe",
            |a| {
                a.credential_source_file = Some("t".into());
                a.url = "https://sts.googleapis.com".into();
                a.universe_domain = Some("googleapis.com".into());
            },
            "Google's own STS",
        ),
        (
            "an address as universe",
            |a| {
                a.credential_source_file = Some("t".into());
                a.universe_domain = Some("10.0.0.1".into());
            },
            "not an address",
        ),
        // A URL source: https (twin: the URL test), http only nearby and bare.
        (
            "a URL source in clear across a network",
            |a| a.credential_source_url = Some("http://idp.example.com/token".into()),
            "must be https",
        ),
        (
            "a URL source in clear to a private address",
            |a| a.credential_source_url = Some("http://10.0.0.1/token".into()),
            "must be https",
        ),
        (
            "user info in the source URL",
            |a| a.credential_source_url = Some("https://u:p@idp.example.com/token".into()),
            "no user info",
        ),
        (
            "a Host header",
            |a| {
                a.credential_source_url = Some("https://idp.example.com/token".into());
                a.credential_source_headers = vec!["Host=evil.example.com".into()];
            },
            "connection headers",
        ),
        (
            "a header twice, in two cases",
            |a| {
                a.credential_source_url = Some("https://idp.example.com/token".into());
                a.credential_source_headers = vec!["X-A=1,x-a=2".into()];
            },
            "given twice",
        ),
        (
            "a relative executable",
            |a| a.executable_command = Some("get-token --audience x".into()),
            "absolute path",
        ),
    ]
}

#[test]
fn nearby_sources_in_clear_are_allowed_without_headers() {
    for url in [
        "http://127.0.0.1:8080/t",
        "http://169.254.169.254/t",
        "http://[fe80::1]/t",
    ] {
        let mut a = base(Path::new("c.json"));
        a.credential_source_url = Some(url.into());
        assert!(plan(&a, None).is_ok(), "{url}");
    }
}

#[test]
fn refusals_beside_their_twins() {
    let file: Edit = |a| a.credential_source_file = Some("t".into());
    // The twin: a file source alone is fine.
    let mut ok = base(Path::new("c.json"));
    file(&mut ok);
    assert!(plan(&ok, None).is_ok());
    for (name, edit, want) in refusals().into_iter().chain(reviewed_refusals()) {
        let mut a = base(Path::new("c.json"));
        edit(&mut a);
        let e = plan(&a, None).unwrap_err();
        assert!(e.contains(want), "{name}: {e}");
    }
}

#[test]
fn a_bad_header_is_refused_without_quoting_it() {
    let mut a = base(Path::new("c.json"));
    a.credential_source_url = Some("https://idp.example.com/token".into());
    for bad in ["Authorization: Bearer hunter2", "X-K=hunter2\u{7}"] {
        a.credential_source_headers = vec![bad.into()];
        let e = plan(&a, None).unwrap_err();
        assert!(e.contains("--credential-source-headers"), "{e}");
        assert!(!e.contains("hunter2"), "the value is not echoed: {e}");
    }
    a.credential_source_headers = vec!["Authorization=Bearer hunter2".into()];
    assert_eq!(
        plan(&a, None).unwrap().credentials["credential_source"]["headers"],
        json!({"Authorization": "Bearer hunter2"})
    );
}

#[cfg(unix)]
#[test]
fn the_file_is_0600_never_overwritten_without_force_and_no_link_is_followed() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("creds.json");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    write_private(&out, "one", false).unwrap();
    assert_eq!(mode(&out), 0o600);
    let e = write_private(&out, "two", false).unwrap_err();
    assert!(e.contains("--force"), "{e}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "one");
    // --force replaces it, 0600 even over a file that was readable by all.
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o644)).unwrap();
    write_private(&out, "two", true).unwrap();
    assert_eq!(
        (std::fs::read_to_string(&out).unwrap().as_str(), mode(&out)),
        ("two", 0o600)
    );
    // A link planted where the file goes: refused without --force, replaced (not
    // followed) with it.
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "keep").unwrap();
    let link = dir.path().join("link.json");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    assert!(write_private(&link, "x", false).is_err());
    write_private(&link, "x", true).unwrap();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    assert!(!std::fs::symlink_metadata(&link).unwrap().is_symlink());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        3,
        "no temporary file left"
    );
    // Never a device, nor a link to one, even with --force (twin: the link to a regular
    // file above).
    let device = dir.path().join("null.json");
    std::os::unix::fs::symlink("/dev/null", &device).unwrap();
    let e = write_private(&device, "x", true).unwrap_err();
    assert!(e.contains("not a regular file"), "{e}");
    assert!(std::fs::symlink_metadata(&device).unwrap().is_symlink());
    assert!(write_private(Path::new("/dev/null"), "x", true).is_err());
}

#[test]
fn the_secret_comes_from_a_file_and_is_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s3cret-value\n").unwrap();
    let mut a = base(&dir.path().join("creds.json"));
    a.credential_source_file = Some("t".into());
    a.client_id = Some("ci".into());
    a.client_secret_file = Some(secret.clone());
    let printed = run(&a).unwrap();
    assert!(!printed.contains("s3cret"), "{printed}");
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("creds.json")).unwrap()).unwrap();
    assert_eq!(written["client_secret"], "s3cret-value");
    // Twin: a secret file with two lines is refused, and the refusal does not quote it.
    std::fs::write(&secret, "s3cret\nmore\n").unwrap();
    a.output_file = dir.path().join("other.json");
    let e = run(&a).unwrap_err();
    assert!(!e.contains("s3cret"), "{e}");
    assert!(!a.output_file.exists());
}
