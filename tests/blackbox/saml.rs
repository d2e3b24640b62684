//! SAML 2.0 assertions as subject tokens (issue 23): a real Ferry with a `kind: saml`
//! provider, fed the attack corpus — the eight signature-wrapping variants, comment
//! truncation, unsigned and re-referenced elements, foreign keys and transforms, SHA-1,
//! XXE and entity expansion, times, audiences, recipients, replay, size and depth —
//! each beside its positive twin, the untouched signed document. No answer is a 5xx.

use base64::Engine as _;
use ferry_testkit::now;
use ferry_testkit::saml::{Assertion, SamlIdp, SamlKey, token};
use serde_json::Value;

use crate::harness::{Ferry, Setup};

const ENTITY: &str = "https://idp.example.test/saml";
const SP: &str = "https://ferry.example.test/sp";
const AUDIENCE: &str = "https://deploy.example.com";
const TE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const SAML2: &str = "urn:ietf:params:oauth:token-type:saml2";
const GROUP: &str = "http://schemas.xmlsoap.org/claims/Group";

struct Fx {
    setup: Setup,
    ferry: std::sync::Mutex<Ferry>,
    idp: SamlIdp,
    http: reqwest::Client,
}

fn config(setup: &Setup, provider_extra: &str) -> String {
    format!(
        "issuer: {url}\n\
         limits: {{ max_body_bytes: 1048576 }}\n\
         providers:\n  - id: corp\n    kind: saml\n    entity_id: {ENTITY}\n    metadata: {{ file: idp-metadata.xml }}\n    audiences: [{SP}]\n{provider_extra}\
         \x20   mapping:\n      subject: assertion.subject\n      groups: assertion.attributes['{GROUP}']\n      attributes:\n        issuer: assertion.issuer\n\
         audiences:\n  - audience: {AUDIENCE}\n    rules:\n      - allow: provider == 'corp' && subject != 'user@evil.com'\n        scopes: [deploy]\n",
        url = setup.url()
    )
}

impl Fx {
    fn start(tag: &str, provider_extra: &str) -> Self {
        Self::start_for(
            SamlIdp::new(ENTITY, SamlKey::Rsa).unwrap(),
            tag,
            provider_extra,
        )
    }

    fn start_for(idp: SamlIdp, tag: &str, provider_extra: &str) -> Self {
        let setup = Setup::new(tag);
        setup.write("idp-metadata.xml", idp.metadata());
        let ferry = std::sync::Mutex::new(setup.start(&config(&setup, provider_extra)));
        Self {
            setup,
            ferry,
            idp,
            http: reqwest::Client::new(),
        }
    }

    fn recipient(&self) -> String {
        format!("{}/token", self.setup.url())
    }

    fn assertion(&self, subject: &str) -> Assertion {
        let mut a = self.idp.assertion(subject, SP, &self.recipient(), now());
        a.attributes = vec![(GROUP.into(), vec!["dev".into(), "ops".into()])];
        a
    }

    fn signed(&self, a: &Assertion) -> String {
        self.idp.sign(&a.xml(), &a.id).unwrap()
    }

    async fn post_token(&self, subject_token: &str) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/token", self.setup.url()))
            .form(&[
                ("grant_type", TE),
                ("subject_token_type", SAML2),
                ("subject_token", subject_token),
                ("audience", AUDIENCE),
            ])
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        assert!(status < 500, "a SAML document got {status}");
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, xml: &str) -> (u16, Value) {
        self.post_token(&token(xml)).await
    }

    /// Posts `xml`, expects a 400, and waits for the audit event naming `reason`.
    async fn refused(&self, case: &str, xml: &str, reason: &str) {
        let (status, body) = self.post(xml).await;
        assert_eq!(status, 400, "{case}: {body}");
        assert_eq!(body["error"], "invalid_request", "{case}");
        let needle = format!("\"reason\":\"{reason}");
        let mut ferry = self.ferry.lock().unwrap();
        assert!(
            ferry.proc_mut().wait_for(&needle).is_ok(),
            "{case}: no audit event with {needle}"
        );
    }

    /// The subject of the token Ferry issued for `xml`, or the status it answered.
    async fn subject(&self, xml: &str) -> Result<String, u16> {
        let (status, body) = self.post(xml).await;
        if status != 200 {
            return Err(status);
        }
        let claims = ferry_testkit::mint::payload(body["access_token"].as_str().unwrap());
        Ok(claims["sub"].as_str().unwrap().to_owned())
    }
}

/// The `ds:Signature` element of a signed document, and the document without it.
fn split_signature(xml: &str) -> (String, String) {
    let start = xml.find("<ds:Signature").unwrap();
    let end = xml.find("</ds:Signature>").unwrap() + "</ds:Signature>".len();
    (
        xml[start..end].to_owned(),
        format!("{}{}", &xml[..start], &xml[end..]),
    )
}

/// `inner` inserted just before `</ds:Signature>` of `sig`.
fn with_object(sig: &str, inner: &str) -> String {
    sig.replace(
        "</ds:Signature>",
        &format!("<ds:Object>{inner}</ds:Object></ds:Signature>"),
    )
}

#[tokio::test]
async fn a_signed_assertion_is_exchanged_and_mapped_in_every_wrapping() {
    let fx = Fx::start("saml-ok", "");
    let a = fx.assertion("alice@example.test");
    let signed = fx.signed(&a);
    let (status, body) = fx.post(&signed).await;
    assert_eq!(status, 200, "{body}");
    let claims = ferry_testkit::mint::payload(body["access_token"].as_str().unwrap());
    assert_eq!(claims["sub"], "alice@example.test", "{claims:?}");
    assert_eq!(
        claims.get("groups"),
        Some(&serde_json::json!(["dev", "ops"])),
        "{claims:?}"
    );
    assert_eq!(claims["ferry"]["provider"], "corp");
    assert_eq!(claims["ferry"]["iss"], ENTITY);
    assert_eq!(claims["attributes"]["issuer"], ENTITY);
    // In a response, signed inside, outside, or both; every base64 form.
    let response = a.response(&signed, "_r1");
    assert_eq!(fx.subject(&response).await.unwrap(), "alice@example.test");
    let both = fx.idp.sign(&response, "_r1").unwrap();
    assert_eq!(fx.subject(&both).await.unwrap(), "alice@example.test");
    let outer = fx.idp.sign(&a.response(&a.xml(), "_r2"), "_r2").unwrap();
    assert_eq!(fx.subject(&outer).await.unwrap(), "alice@example.test");
    let e = base64::engine::general_purpose::STANDARD;
    assert_eq!(fx.post_token(&e.encode(&signed)).await.0, 200);
    let padded = base64::engine::general_purpose::URL_SAFE.encode(&signed);
    assert_eq!(fx.post_token(&padded).await.0, 200);
    // The audit names the provider and the assertion's subject.
    let out = fx
        .ferry
        .lock()
        .unwrap()
        .proc_mut()
        .wait_for("\"provider\":\"corp\"")
        .unwrap();
    assert!(out.contains("\"provider\":\"corp\""), "{out}");
}

/// XSW1–8 (Somorovsky et al., "On Breaking SAML", 2012): the signed element moved
/// where a naive verifier still finds it, an evil one put where a naive reader looks.
#[tokio::test]
async fn signature_wrapping_variants_are_refused_beside_their_signed_originals() {
    let fx = Fx::start("saml-xsw", "");
    let good = fx.assertion("alice@example.test");
    let mut evil = fx.assertion("admin@example.test");
    evil.id = "_evil".into();
    let evil_xml = evil.xml();
    let signed_assertion = fx.signed(&good);
    let signed_response = fx
        .idp
        .sign(&good.response(&good.xml(), "_r"), "_r")
        .unwrap();
    // The twins: the untouched signed documents.
    assert_eq!(
        fx.subject(&signed_assertion).await.unwrap(),
        "alice@example.test"
    );
    assert_eq!(
        fx.subject(&signed_response).await.unwrap(),
        "alice@example.test"
    );

    let (resp_sig, resp_unsigned) = split_signature(&signed_response);
    let (assn_sig, assn_unsigned) = split_signature(&signed_assertion);
    let evil_response = |body: &str| evil.response(body, "_evilr");
    const NESTED: &str = "the SAML document's structure is refused: a response inside a response";
    const TWO: &str =
        "the SAML document's structure is refused: the document must hold exactly one assertion";
    let cases: Vec<(&str, String, &str)> = vec![
        // XSW1: the response's signature on an evil response, the original inside its Object.
        (
            "XSW1",
            evil_response(&format!(
                "{}{evil_xml}",
                with_object(&resp_sig, &resp_unsigned)
            )),
            NESTED,
        ),
        // XSW2: the same with the original response beside the signature.
        (
            "XSW2",
            evil_response(&format!("{resp_unsigned}{resp_sig}{evil_xml}")),
            NESTED,
        ),
        // XSW3: an evil assertion before the signed one.
        (
            "XSW3",
            good.response(&format!("{evil_xml}{signed_assertion}"), "_r3"),
            TWO,
        ),
        // XSW4: the signed assertion inside the evil one.
        (
            "XSW4",
            good.response(
                &evil_xml.replace(
                    "</saml:Assertion>",
                    &format!("{signed_assertion}</saml:Assertion>"),
                ),
                "_r4",
            ),
            TWO,
        ),
        // XSW5: the signature copied onto the evil assertion, the original unsigned beside it.
        (
            "XSW5",
            good.response(
                &format!(
                    "{}{assn_unsigned}",
                    evil_xml.replacen("</saml:Issuer>", &format!("</saml:Issuer>{assn_sig}"), 1)
                ),
                "_r5",
            ),
            TWO,
        ),
        // XSW6: the same, the original inside the copied signature's Object.
        (
            "XSW6",
            good.response(
                &evil_xml.replacen(
                    "</saml:Issuer>",
                    &format!("</saml:Issuer>{}", with_object(&assn_sig, &assn_unsigned)),
                    1,
                ),
                "_r6",
            ),
            TWO,
        ),
        // XSW7: the signed assertion hidden in an Extensions element, the evil one beside.
        (
            "XSW7",
            good.response(
                &format!("<samlp:Extensions>{signed_assertion}</samlp:Extensions>{evil_xml}"),
                "_r7",
            ),
            TWO,
        ),
        // XSW8: the evil assertion with the signature, the original (unsigned) in its Object.
        (
            "XSW8",
            good.response(
                &evil_xml
                    .replacen(
                        "</saml:Issuer>",
                        &format!("</saml:Issuer>{}", with_object(&assn_sig, &assn_unsigned)),
                        1,
                    )
                    .replace("ID=\"_evil\"", &format!("ID=\"{}\"", good.id)),
                "_r8",
            ),
            "the SAML document has duplicate IDs",
        ),
    ];
    for (name, xml, reason) in cases {
        fx.refused(name, &xml, reason).await;
    }
}

#[tokio::test]
async fn a_comment_cannot_cut_the_name_id_short() {
    let fx = Fx::start("saml-comment", "");
    let a = fx.assertion("user@evil.com.example");
    let signed = fx.signed(&a);
    assert_eq!(fx.subject(&signed).await.unwrap(), "user@evil.com.example");
    let commented = signed.replace("user@evil.com.example", "user@evil.com<!---->.example");
    // Still signed (canonical XML drops comments), and read whole: never user@evil.com.
    assert_eq!(
        fx.subject(&commented).await.unwrap(),
        "user@evil.com.example"
    );
}

#[tokio::test]
async fn unsigned_moved_and_duplicated_elements_are_refused() {
    let fx = Fx::start("saml-structure", "");
    let a = fx.assertion("alice@example.test");
    let signed = fx.signed(&a);
    let mut other = fx.assertion("admin@example.test");
    other.id = "_other".into();
    let response = fx.idp.sign(&a.response(&a.xml(), "_r"), "_r").unwrap();
    assert_eq!(fx.post(&signed).await.0, 200);
    assert_eq!(fx.post(&response).await.0, 200);
    let cases = [
        ("unsigned assertion", a.xml(), "the SAML assertion is not signed"),
        ("unsigned beside signed", a.response(&format!("{signed}{}", other.xml()), "_r2"), "the SAML document's structure is refused: the document must hold exactly one"),
        ("signed response, assertion changed", response.replace("alice@example.test", "admin@example.test"), "a signed element was modified"),
        ("duplicate ID", a.response(&format!("{signed}<samlp:Extensions ID=\"{}\"/>", a.id), "_r3"), "the SAML document has duplicate IDs"),
        // The response's signature moved into the assertion: it references another element.
        (
            "reference to another element",
            {
                let (sig, unsigned) = split_signature(&response);
                unsigned.replacen(&format!("<saml:Issuer>{ENTITY}</saml:Issuer><saml:Subject>"), &format!("<saml:Issuer>{ENTITY}</saml:Issuer>{sig}<saml:Subject>"), 1)
            },
            "a signature's reference does not name the element it signs",
        ),
        (
            "two signatures on one element",
            {
                let (sig, _) = split_signature(&signed);
                signed.replacen(&sig, &format!("{sig}{sig}"), 1)
            },
            "the SAML document's structure is refused: an element carries more than one signature",
        ),
        ("XPath transform", signed.replace(
            "<ds:Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/>",
            "<ds:Transform Algorithm=\"http://www.w3.org/TR/1999/REC-xpath-19991116\"><ds:XPath>not(ancestor-or-self::saml:Subject)</ds:XPath></ds:Transform>",
        ), "a signature uses a transform"),
        ("SHA-1 without the opt-in", signed.replace(
            "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
            "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
        ), "a signature uses SHA-1"),
        ("encrypted assertion", a.response("<saml:EncryptedAssertion><xenc:EncryptedData xmlns:xenc=\"http://www.w3.org/2001/04/xmlenc#\"/></saml:EncryptedAssertion>", "_r4"), "encrypted SAML assertions are not supported"),
    ];
    for (name, xml, reason) in cases {
        fx.refused(name, &xml, reason).await;
    }
}

#[tokio::test]
async fn a_certificate_outside_the_metadata_does_not_sign() {
    let fx = Fx::start("saml-keys", "");
    let a = fx.assertion("alice@example.test");
    assert_eq!(fx.post(&fx.signed(&a)).await.0, 200);
    // Same entity id, another key: its certificate rides in KeyInfo, not in metadata.
    let rogue = SamlIdp::new(ENTITY, SamlKey::Rsa).unwrap();
    fx.refused(
        "rogue key",
        &rogue.sign(&a.xml(), &a.id).unwrap(),
        "the signing certificate is not one of",
    )
    .await;
    // KeyInfo naming the trusted certificate does not help a foreign signature either.
    let forged = rogue.sign(&a.xml(), &a.id).unwrap();
    let trusted = base64::engine::general_purpose::STANDARD.encode(&fx.idp.certificate_der);
    let start = forged.find("<ds:X509Certificate>").unwrap() + "<ds:X509Certificate>".len();
    let end = forged.find("</ds:X509Certificate>").unwrap();
    let forged = format!("{}{trusted}{}", &forged[..start], &forged[end..]);
    fx.refused(
        "trusted KeyInfo, rogue signature",
        &forged,
        "a signature does not verify",
    )
    .await;
}

#[tokio::test]
async fn dtds_entities_size_and_depth_are_refused_before_parsing() {
    let fx = Fx::start("saml-limits", "");
    let a = fx.assertion("alice@example.test");
    let signed = fx.signed(&a);
    assert_eq!(fx.post(&signed).await.0, 200);
    let xxe = format!(
        "<?xml version=\"1.0\"?><!DOCTYPE a [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>{}",
        signed.replace("alice@example.test", "&x;")
    );
    let lol = format!(
        "<!DOCTYPE a [<!ENTITY l \"lol\"><!ENTITY l2 \"&l;&l;&l;&l;&l;&l;&l;&l;&l;&l;\"><!ENTITY l3 \"&l2;&l2;&l2;&l2;&l2;&l2;&l2;&l2;&l2;&l2;\">]>{}",
        signed.replace("alice@example.test", "&l3;")
    );
    let huge = signed.replace("alice@example.test", &"a".repeat(300 * 1024));
    let deep = signed.replace(
        "<saml:AttributeValue>dev</saml:AttributeValue>",
        &format!(
            "<saml:AttributeValue>{}dev{}</saml:AttributeValue>",
            "<x>".repeat(40),
            "</x>".repeat(40)
        ),
    );
    let pi = signed.replace("<saml:Subject>", "<?evil x?><saml:Subject>");
    for (name, xml, reason) in [
        ("XXE", xxe, "the SAML document has a DTD"),
        ("billion laughs", lol, "the SAML document has a DTD"),
        ("huge", huge, "the SAML document is too large"),
        ("deep", deep, "the SAML document is nested too deeply"),
        (
            "processing instruction",
            pi,
            "the SAML document has a processing instruction",
        ),
    ] {
        fx.refused(name, &xml, reason).await;
    }
    // Not base64 at all, and base64 of something that is not XML.
    assert_eq!(fx.post_token("<saml:Assertion/>").await.0, 400);
    assert_eq!(fx.post_token("bm90IHhtbA").await.0, 400);
}

#[tokio::test]
async fn times_audiences_and_recipients_are_checked_with_leeway() {
    let fx = Fx::start("saml-times", "");
    let t = now();
    let base = fx.assertion("alice@example.test");
    assert_eq!(fx.post(&fx.signed(&base)).await.0, 200);
    // An IdP clock up to the 60 s leeway ahead: accepted.
    let mut early = base.clone();
    early.not_before = t + 30;
    let (status, body) = fx.post(&fx.signed(&early)).await;
    assert_eq!(status, 200, "{body}");
    type Change = Box<dyn Fn(&mut Assertion)>;
    let variants: Vec<(&str, Change, &str)> = vec![
        (
            "expired",
            Box::new(move |a| a.not_on_or_after = t - 120),
            "the assertion has expired",
        ),
        (
            "confirmation expired",
            Box::new(move |a| a.confirm_until = t - 120),
            "the assertion has expired",
        ),
        (
            "not yet valid",
            Box::new(move |a| a.not_before = t + 300),
            "the assertion is not yet valid",
        ),
        (
            "wrong audience",
            Box::new(|a| a.audience = "https://other-sp.example.test".into()),
            "the assertion is not addressed",
        ),
        (
            "wrong recipient",
            Box::new(|a| a.recipient = Some("https://evil.example.test/acs".into())),
            "the assertion's recipient is not",
        ),
        (
            "wrong issuer",
            Box::new(|a| a.issuer = "https://other-idp.example.test".into()),
            "issuer not configured",
        ),
    ];
    for (name, change, reason) in variants {
        let mut a = base.clone();
        change(&mut a);
        fx.refused(name, &fx.signed(&a), reason).await;
    }
    // No Recipient at all is accepted (it is optional in the bearer profile's data).
    let mut open = base.clone();
    open.recipient = None;
    assert_eq!(fx.post(&fx.signed(&open)).await.0, 200);
}

#[tokio::test]
async fn a_one_time_assertion_is_spent_and_others_may_be_resent() {
    let fx = Fx::start("saml-replay", "");
    let a = fx.assertion("alice@example.test");
    let signed = fx.signed(&a);
    // Without OneTimeUse (and single_use off), Google's clients re-send the same file.
    assert_eq!(fx.post(&signed).await.0, 200);
    assert_eq!(fx.post(&signed).await.0, 200);
    let mut once = fx.assertion("alice@example.test");
    once.one_time_use = true;
    let signed_once = fx.signed(&once);
    assert_eq!(fx.post(&signed_once).await.0, 200);
    fx.refused(
        "replayed one-time assertion",
        &signed_once,
        "assertion replayed",
    )
    .await;

    // single_use: true spends every assertion.
    let strict = Fx::start("saml-single", "    single_use: true\n");
    let b = strict.assertion("alice@example.test");
    let signed = strict.signed(&b);
    assert_eq!(strict.post(&signed).await.0, 200);
    strict
        .refused("replayed with single_use", &signed, "assertion replayed")
        .await;
}

/// xmlsec1 (Debian's libxmlsec1 command line) signs with RSA-SHA1: refused by default,
/// accepted by a provider with `allow_sha1: true`.
#[tokio::test]
async fn sha1_is_accepted_only_with_the_named_opt_in() {
    if !xmlsec1_present() {
        return;
    }
    let strict = Fx::start("saml-sha1-off", "");
    let mut a = strict.assertion("alice@example.test");
    // No Recipient, so that the same document suits both Ferrys.
    a.recipient = None;
    // A template: our signature's shape with SHA-1 named and the values left for xmlsec1.
    let template = {
        let s = strict.signed(&a);
        let blank = |s: &str, tag: &str| {
            let open = format!("<ds:{tag}>");
            let close = format!("</ds:{tag}>");
            let (i, j) = (s.find(&open).unwrap() + open.len(), s.find(&close).unwrap());
            format!("{}{}", &s[..i], &s[j..])
        };
        blank(&blank(&s, "DigestValue"), "SignatureValue")
            .replace(
                "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
                "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
            )
            .replace(
                "http://www.w3.org/2001/04/xmlenc#sha256",
                "http://www.w3.org/2000/09/xmldsig#sha1",
            )
    };
    let dir = strict.setup.path();
    std::fs::write(dir.join("tmpl.xml"), &template).unwrap();
    std::fs::write(dir.join("key.pem"), &strict.idp.key_pem).unwrap();
    std::fs::write(dir.join("cert.pem"), &strict.idp.certificate_pem).unwrap();
    let out = std::process::Command::new("xmlsec1")
        .args(["--sign", "--privkey-pem"])
        .arg(format!(
            "{},{}",
            dir.join("key.pem").display(),
            dir.join("cert.pem").display()
        ))
        .args([
            "--id-attr:ID",
            "urn:oasis:names:tc:SAML:2.0:assertion:Assertion",
            "--output",
        ])
        .arg(dir.join("signed.xml"))
        .arg(dir.join("tmpl.xml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sha1 = std::fs::read_to_string(dir.join("signed.xml")).unwrap();
    assert!(sha1.contains("xmldsig#rsa-sha1"));
    strict
        .refused("SHA-1", &sha1, "a signature uses SHA-1")
        .await;

    // The same document, the same IdP, at a provider that opted in.
    let lax = Fx::start_for(strict.idp, "saml-sha1-on", "    allow_sha1: true\n");
    assert_eq!(lax.subject(&sha1).await.unwrap(), "alice@example.test");
}

/// `ferry explain --token` verifies a SAML assertion as `/token` would and explains the
/// decision over its claims; `ferry test` takes an assertion as a case's subject.
#[tokio::test]
async fn explain_and_test_take_saml_assertions() {
    let fx = Fx::start("saml-cli", "");
    let a = fx.assertion("alice@example.test");
    let signed = fx.signed(&a);
    let dir = fx.setup.path();
    let explain = |file: &str| {
        let out = crate::harness::ferry_cmd()
            .args(["explain", "--config"])
            .arg(dir.join("ferry.yaml"))
            .arg("--token")
            .arg(dir.join(file))
            .args(["--audience", AUDIENCE, "--scope", "deploy"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    std::fs::write(dir.join("good.b64"), token(&signed)).unwrap();
    let out = explain("good.b64");
    assert!(out.contains("provider: corp (saml)"), "{out}");
    assert!(out.contains("verify: every signature ok"), "{out}");
    assert!(out.contains("decision: ALLOW"), "{out}");
    std::fs::write(dir.join("forged.xml"), signed.replace("alice@", "admin@")).unwrap();
    let out = explain("forged.xml");
    assert!(
        out.contains("verify: FAILED: a signed element was modified"),
        "{out}"
    );
    assert!(out.contains("decision: DENY"), "{out}");

    // `ferry test`: the assertion (read, not verified) as the subject of two cases.
    let evil = fx.assertion("user@evil.com");
    let cases = format!(
        "cases:\n  - name: alice may deploy\n    assertion: {}\n    audience: {AUDIENCE}\n    scope: deploy\n    expect: allow\n\
         \x20 - name: the denied user may not\n    assertion: {}\n    audience: {AUDIENCE}\n    expect: deny\n    step: policy\n\
         \x20 - name: claims in the SAML shape\n    claims: {{ issuer: {ENTITY}, subject: bob, attributes: {{ \"{GROUP}\": [dev] }} }}\n    audience: {AUDIENCE}\n    expect: allow\n",
        token(&signed),
        token(&evil.xml()),
    );
    std::fs::write(dir.join("cases.yaml"), cases).unwrap();
    let out = crate::harness::ferry_cmd()
        .args(["test", "--config"])
        .arg(dir.join("ferry.yaml"))
        .arg(dir.join("cases.yaml"))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("3 passed, 0 failed"), "{text}");
}

/// Whether Debian's `xmlsec1` can be run. Without it a test says it was skipped; in CI
/// (`CI` set), where scripts/install-test-deps.sh installs it, its absence fails.
fn xmlsec1_present() -> bool {
    let present = std::process::Command::new("xmlsec1")
        .arg("--version")
        .output()
        .is_ok();
    assert!(
        present || std::env::var_os("CI").is_none(),
        "xmlsec1 is missing in CI"
    );
    if !present {
        eprintln!("SKIPPED: xmlsec1 is not installed (scripts/install-test-deps.sh installs it)");
    }
    present
}

/// Serves `body` (status and text) to every HTTP request on 127.0.0.1; returns the URL.
async fn metadata_server(body: std::sync::Arc<std::sync::Mutex<(u16, String)>>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let (status, text) = body.lock().unwrap().clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = tcp.read(&mut buf).await;
                let resp = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/samlmetadata+xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
                let _ = tcp.write_all(resp.as_bytes()).await;
            });
        }
    });
    format!("http://127.0.0.1:{port}")
}

/// Metadata by URL: fetched and cached like a JWKS; an IdP's new key is fetched once
/// when an assertion is signed by a certificate the cache lacks (the old key stops
/// working when the metadata drops it); an IdP unreachable with nothing cached is an
/// outage (503), not a bad assertion.
#[tokio::test]
async fn metadata_by_url_follows_key_rotation_and_an_outage_is_a_503() {
    let old = SamlIdp::new(ENTITY, SamlKey::Rsa).unwrap();
    let new = SamlIdp::new(ENTITY, SamlKey::EcdsaP256).unwrap();
    let served = std::sync::Arc::new(std::sync::Mutex::new((200, old.metadata())));
    let origin = metadata_server(served.clone()).await;
    let setup = Setup::new("saml-url");
    setup.write("idp-metadata.xml", "unused");
    let extra = "";
    let cfg = config(&setup, extra)
        .replace(
            "metadata: { file: idp-metadata.xml }",
            &format!("metadata: {{ url: \"{origin}/saml/metadata\" }}"),
        )
        .replace(
            "providers:\n",
            &format!("outbound: {{ allow_insecure_origins: [\"{origin}\"] }}\nproviders:\n"),
        );
    let fx = Fx {
        ferry: std::sync::Mutex::new(setup.start(&cfg)),
        setup,
        idp: old,
        http: reqwest::Client::new(),
    };
    let a = fx.assertion("alice@example.test");
    assert_eq!(
        fx.subject(&fx.signed(&a)).await.unwrap(),
        "alice@example.test"
    );

    // The IdP rotates: its metadata now names only the new certificate.
    served.lock().unwrap().1 = new.metadata();
    let rotated = new.sign(&a.xml(), &a.id).unwrap();
    assert_eq!(fx.subject(&rotated).await.unwrap(), "alice@example.test");
    fx.refused(
        "the retired key",
        &fx.signed(&a),
        "the signing certificate is not one of",
    )
    .await;

    // An IdP that has never answered: nothing cached, so 503 temporarily_unavailable.
    let down = std::sync::Arc::new(std::sync::Mutex::new((500, "boom".to_owned())));
    let down_origin = metadata_server(down).await;
    let setup = Setup::new("saml-url-down");
    let cfg = config(&setup, "")
        .replace(
            "metadata: { file: idp-metadata.xml }",
            &format!("metadata: {{ url: \"{down_origin}/saml/metadata\" }}"),
        )
        .replace(
            "providers:\n",
            &format!("outbound: {{ allow_insecure_origins: [\"{down_origin}\"] }}\nproviders:\n"),
        );
    let _ferry = setup.start(&cfg);
    let r = reqwest::Client::new()
        .post(format!("{}/token", setup.url()))
        .form(&[
            ("grant_type", TE),
            ("subject_token_type", SAML2),
            ("subject_token", &token(&fx.signed(&a))),
            ("audience", AUDIENCE),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
}

/// The SAML grant runs the shared steps like every other: a DPoP proof binds the issued
/// token (its twin without a proof is a bearer token), and an actor token is verified,
/// meets the rules' `actor.*` and is named in `act`.
#[tokio::test]
async fn a_saml_subject_meets_dpop_and_delegation_like_any_other() {
    use ferry_testkit::mint::{dpop_proof, payload};
    let setup = Setup::new("saml-pipeline");
    let idp = SamlIdp::new(ENTITY, SamlKey::Rsa).unwrap();
    setup.write("idp-metadata.xml", idp.metadata());
    let jwt_idp = setup.idp();
    let cfg = format!(
        "issuer: {url}\nproviders:\n  - id: corp\n    kind: saml\n    entity_id: {ENTITY}\n    metadata: {{ file: idp-metadata.xml }}\n    audiences: [{SP}]\n\
         {jwt}audiences:\n  - audience: {AUDIENCE}\n    rules:\n      - allow: provider == 'corp' && (actor.subject == '' || actor.subject == 'ci-bot')\n        scopes: [deploy]\n",
        url = setup.url(),
        jwt = crate::harness::idp_providers(&setup.url()).replace("providers:\n", ""),
    );
    let ferry = setup.start(&cfg);
    let a = idp.assertion(
        "alice@example.test",
        SP,
        &format!("{}/token", setup.url()),
        now(),
    );
    let subject_token = token(&idp.sign(&a.xml(), &a.id).unwrap());
    let http = reqwest::Client::new();
    let post = |form: Vec<(&'static str, String)>, dpop: Option<String>| {
        let mut req = http.post(format!("{}/token", ferry.url)).form(&form);
        if let Some(p) = dpop {
            req = req.header("DPoP", p);
        }
        async move {
            let r = req.send().await.unwrap();
            let s = r.status().as_u16();
            (s, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let base = || {
        vec![
            ("grant_type", TE.to_owned()),
            ("subject_token_type", SAML2.to_owned()),
            ("subject_token", subject_token.clone()),
            ("audience", AUDIENCE.to_owned()),
        ]
    };
    // Bearer, then bound by a proof.
    let (s, body) = post(base(), None).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert!(
        payload(body["access_token"].as_str().unwrap())
            .get("cnf")
            .is_none()
    );
    let key = ferry_testkit::TestKey::ec("holder");
    let proof = dpop_proof(
        &key,
        "POST",
        &format!("{}/token", setup.url()),
        now(),
        "p1",
        None,
        None,
    );
    let (s, body) = post(base(), Some(proof)).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    assert!(payload(body["access_token"].as_str().unwrap())["cnf"]["jkt"].is_string());

    // Delegation: the rules admit ci-bot as actor, not mallory.
    let actor =
        |sub: &str| jwt_idp.token(&jwt_idp.claims(&setup.url(), sub, now(), serde_json::json!({})));
    let with_actor = |sub: &str| {
        let mut f = base();
        f.push(("actor_token", actor(sub)));
        f.push((
            "actor_token_type",
            "urn:ietf:params:oauth:token-type:jwt".to_owned(),
        ));
        f
    };
    let (s, body) = post(with_actor("ci-bot"), None).await;
    assert_eq!(s, 200, "{body}");
    let c = payload(body["access_token"].as_str().unwrap());
    assert_eq!(c["sub"], "alice@example.test");
    assert_eq!(c["act"]["sub"], "ci-bot");
    let (s, body) = post(with_actor("mallory"), None).await;
    assert_eq!(s, 400, "{body}");
}

/// The canonicalization Ferry signs with (its development IdP and the test kit) is the
/// one libxmlsec1 computes: `xmlsec1 --verify` accepts Ferry-signed assertions and
/// responses, RSA and ECDSA, and refuses the same document altered.
#[test]
fn xmlsec1_verifies_what_ferrys_signer_writes() {
    if !xmlsec1_present() {
        return;
    }
    let dir = crate::harness::TempDir::new("saml-xmlsec1");
    for key in [SamlKey::Rsa, SamlKey::EcdsaP256] {
        let idp = SamlIdp::new(ENTITY, key).unwrap();
        std::fs::write(dir.path().join("cert.pem"), &idp.certificate_pem).unwrap();
        let mut a = idp.assertion(
            "alice@example.test",
            SP,
            "https://ferry.example.test/token",
            now(),
        );
        a.attributes = vec![(GROUP.into(), vec!["dev & ops".into(), "<b>".into()])];
        let assertion = idp.sign(&a.xml(), &a.id).unwrap();
        let response = idp.sign(&a.response(&assertion, "_r1"), "_r1").unwrap();
        let verify = |xml: &str, node: &str| {
            std::fs::write(dir.path().join("doc.xml"), xml).unwrap();
            std::process::Command::new("xmlsec1")
                .args(["--verify", "--pubkey-cert-pem"])
                .arg(dir.path().join("cert.pem"))
                .args(["--id-attr:ID", node, "--node-xpath"])
                .arg(if node.ends_with("Response") {
                    "/*/*[local-name()='Signature']"
                } else {
                    "//*[local-name()='Assertion']/*[local-name()='Signature']"
                })
                .arg(dir.path().join("doc.xml"))
                .output()
                .unwrap()
        };
        let assertion_ns = "urn:oasis:names:tc:SAML:2.0:assertion:Assertion";
        let response_ns = "urn:oasis:names:tc:SAML:2.0:protocol:Response";
        for (xml, node) in [
            (&assertion, assertion_ns),
            (&response, response_ns),
            (&response, assertion_ns),
        ] {
            let out = verify(xml, node);
            assert!(
                out.status.success(),
                "{key:?} {node}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let altered = assertion.replace("alice@", "mallory@");
        assert!(
            !verify(&altered, assertion_ns).status.success(),
            "{key:?}: an altered document verified"
        );
    }
}

/// What an outside review found, each beside its twin: a namespace bomb (inclusive c14n
/// writes every binding in scope at every element) is refused before any
/// canonicalization; Unicode spaces around the NameID are part of it (not trimmed into
/// another user's name); a `Recipient` in another namespace never stands for the real
/// one; an assertion valid for longer than the provider allows is refused (a one-time
/// ID would be held that long); a response without a `Status` is refused.
#[tokio::test]
async fn what_the_outside_review_found_is_refused_beside_its_twin() {
    let fx = Fx::start("saml-review", "");
    let t = now();
    let good = fx.assertion("alice@example.test");
    assert_eq!(fx.post(&fx.signed(&good)).await.0, 200);

    // 1. A namespace bomb: 40 bindings on every element of an otherwise good assertion.
    let decls: String = (0..40)
        .map(|i| format!(" xmlns:n{i}=\"urn:n{i}\""))
        .collect();
    let bomb = good.xml().replace(
        "<saml:AttributeValue>",
        &format!("<saml:AttributeValue{decls}>"),
    );
    // (Refused when parsed, before any signature is looked at: unsigned here, since the
    // test kit's signer refuses to parse it too.)
    fx.refused(
        "namespace bomb",
        &bomb,
        "the SAML document declares too many namespaces",
    )
    .await;
    let few: String = (0..5)
        .map(|i| format!(" xmlns:n{i}=\"urn:n{i}\""))
        .collect();
    let twin = good.xml().replace(
        "<saml:AttributeValue>",
        &format!("<saml:AttributeValue{few}>"),
    );
    assert_eq!(fx.post(&fx.idp.sign(&twin, &good.id).unwrap()).await.0, 200);

    // 2. A no-break space after the NameID is part of it.
    let nbsp = fx.assertion("alice@example.test\u{a0}");
    assert_eq!(
        fx.subject(&fx.signed(&nbsp)).await.unwrap(),
        "alice@example.test\u{a0}"
    );
    let spaced = fx.assertion("alice@example.test");
    let spaced_xml = spaced
        .xml()
        .replace(">alice@example.test<", ">\n  alice@example.test\n<");
    assert_eq!(
        fx.subject(&fx.idp.sign(&spaced_xml, &spaced.id).unwrap())
            .await
            .unwrap(),
        "alice@example.test"
    );

    // 3. o:Recipient names Ferry, Recipient another service: the latter is read.
    let mut other = fx.assertion("alice@example.test");
    other.recipient = Some("https://other.example.test/acs".into());
    let namespaced = other.xml().replace(
        " Recipient=\"https://other.example.test/acs\"",
        &format!(
            " xmlns:o=\"urn:o\" o:Recipient=\"{}\" Recipient=\"https://other.example.test/acs\"",
            fx.recipient()
        ),
    );
    fx.refused(
        "namespaced Recipient",
        &fx.idp.sign(&namespaced, &other.id).unwrap(),
        "the assertion's recipient is not",
    )
    .await;

    // 4. Valid for two days: longer than max_token_lifetime (24 h).
    let mut long = fx.assertion("alice@example.test");
    long.not_on_or_after = t + 2 * 86_400;
    fx.refused(
        "two-day assertion",
        &fx.signed(&long),
        "the assertion is valid for longer",
    )
    .await;

    // 5. A response without a Status.
    let signed = fx.signed(&good);
    let no_status = good
        .response(&signed, "_rs")
        .replace("<samlp:Status><samlp:StatusCode Value=\"urn:oasis:names:tc:SAML:2.0:status:Success\"/></samlp:Status>", "");
    fx.refused(
        "no Status",
        &no_status,
        "the SAML response does not report success",
    )
    .await;
}
