//! The attack suite, continued: request shapes and confusion — Ferry's own token, a DPoP
//! proof, a client assertion or an issuer's access token presented as a subject token.

use ferry_testkit::mint::dpop_proof;
use ferry_testkit::now;
use serde_json::json;

use crate::attacks::{API, AT, ID, JWT, TE, refused, start};

#[tokio::test]
async fn request_and_confusion_attacks() {
    let env = start();
    let good = env.good();
    // Unknown token types and an actor token without its type.
    for (name, form) in [
        (
            "unknown subject_token_type",
            vec![("subject_token_type", "urn:x:unknown")],
        ),
        (
            "saml2 subject_token_type",
            vec![(
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:saml2",
            )],
        ),
        (
            "unknown requested_token_type",
            vec![("requested_token_type", "urn:x:other")],
        ),
        (
            "actor_token without its type",
            vec![("actor_token", good.as_str())],
        ),
        (
            "actor_token_type without a token",
            vec![("actor_token_type", JWT)],
        ),
    ] {
        let mut f = vec![
            ("grant_type", TE),
            ("subject_token", good.as_str()),
            ("subject_token_type", JWT),
            ("audience", API),
        ];
        for (k, v) in form {
            if let Some(slot) = f.iter_mut().find(|(n, _)| *n == k) {
                slot.1 = v;
            } else {
                f.push((k, v));
            }
        }
        let (s, h, body) = env.send(&f).await;
        refused(name, (s, &h, &body), 400, "invalid_request", &good);
    }
    // Duplicated single-valued parameters.
    let (s, h, body) = env
        .send(&[
            ("grant_type", TE),
            ("subject_token", good.as_str()),
            ("subject_token", good.as_str()),
            ("subject_token_type", JWT),
            ("audience", API),
        ])
        .await;
    refused(
        "duplicate subject_token",
        (s, &h, &body),
        400,
        "invalid_request",
        &good,
    );
    // The twin of all of them.
    let (s, _, body) = env.exchange_as(&good, JWT).await;
    assert_eq!(s, 200, "{body}");
    let ferry_token = body["access_token"].as_str().unwrap().to_owned();

    // Ferry's own token as an identity token: refused; as an access token on the
    // downscoping path: accepted (the twin).
    for ty in [JWT, ID] {
        env.pair_as(
            &format!("Ferry's token as {ty}"),
            (&ferry_token, ty),
            (&ferry_token, AT),
            "invalid_request",
        )
        .await;
    }
    // A DPoP proof and a client assertion of a trusted key are not subject tokens.
    let proof = dpop_proof(
        &env.rsa.key,
        "POST",
        &format!("{}/token", env.issuer_url),
        now(),
        "p",
        None,
        None,
    );
    env.pair("a DPoP proof as subject", &proof, &good, "invalid_request")
        .await;
    let t = now();
    let assertion = env.rsa.token_with_header(
        &env.header(json!({})),
        &json!({"iss": "client", "sub": "client", "aud": format!("{}/token", env.issuer_url),
                "iat": t, "exp": t + 60, "jti": "ca"}),
    );
    env.pair(
        "a client assertion as subject",
        &assertion,
        &good,
        "invalid_request",
    )
    .await;
    // An access token (typ at+jwt) of the trusted issuer: not an identity assertion.
    let at = env.rsa.token_with_header(
        &env.header(json!({"typ": "at+jwt"})),
        &env.claims("https://rsa.test"),
    );
    env.pair(
        "an issuer's access token as subject",
        &at,
        &good,
        "invalid_request",
    )
    .await;
}

/// RFC 8725 §3.11: another kind of JWT signed by a trusted issuer's key — a DPoP proof,
/// a logout token, a security event token, an access token, a client assertion — is
/// refused as a `…:jwt` or `…:id_token` subject token; its twin differs only in `typ`.
/// An identity assertion's `typ` (none, or `JWT` in any case, with or without
/// `application/`, RFC 7515 §4.1.9) is accepted.
#[tokio::test]
async fn a_jwt_of_another_kind_is_not_a_subject_token() {
    let env = start();
    let claims = env.claims("https://rsa.test");
    let with_typ = |typ: Option<&str>| {
        env.rsa
            .token_with_header(&env.header(json!({ "typ": typ })), &claims)
    };
    let twin = with_typ(Some("JWT"));
    for ty in [JWT, ID] {
        for typ in [
            "dpop+jwt",
            "logout+jwt",
            "secevent+jwt",
            "at+jwt",
            "application/secevent+jwt",
            "client-authentication+jwt",
            "foo+jwt",
        ] {
            env.pair_as(
                &format!("typ {typ} as {ty}"),
                (&with_typ(Some(typ)), ty),
                (&twin, ty),
                "invalid_request",
            )
            .await;
        }
        for typ in [
            None,
            Some("JWT"),
            Some("jwt"),
            Some("application/jwt"),
            Some("APPLICATION/JWT"),
        ] {
            let (s, _, body) = env.exchange_as(&with_typ(typ), ty).await;
            assert_eq!(s, 200, "typ {typ:?} as {ty}: {body}");
        }
    }
}
