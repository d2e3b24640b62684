//! The conformance suite every signer passes: the JWK is public only and its `kid` is
//! its RFC 7638 thumbprint; a signed JWT verifies against the published JWK with an
//! independent verifier; a changed payload does not; signatures over the same input
//! from ECDSA differ (fresh nonces) yet all verify.

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use crate::signer::{Signer, sign_jwt, thumbprint};

fn public_key_bytes(jwk: &Value) -> (Vec<u8>, &'static dyn VerificationAlgorithm) {
    let d = |k: &str| {
        URL_SAFE_NO_PAD
            .decode(jwk[k].as_str().unwrap_or_default())
            .unwrap_or_default()
    };
    match jwk["kty"].as_str() {
        Some("EC") => {
            let mut p = vec![4u8];
            p.extend(d("x"));
            p.extend(d("y"));
            (p, &signature::ECDSA_P256_SHA256_FIXED)
        }
        Some("OKP") => (d("x"), &signature::ED25519),
        _ => {
            // RSAPublicKey DER: SEQUENCE { INTEGER n, INTEGER e }.
            fn int(b: Vec<u8>) -> Vec<u8> {
                let mut v = b;
                if v.first().is_some_and(|x| x & 0x80 != 0) {
                    v.insert(0, 0);
                }
                let mut out = vec![0x02];
                out.extend(len(v.len()));
                out.extend(v);
                out
            }
            fn len(n: usize) -> Vec<u8> {
                if n < 128 {
                    vec![n as u8]
                } else if n < 256 {
                    vec![0x81, n as u8]
                } else {
                    vec![0x82, (n >> 8) as u8, n as u8]
                }
            }
            let body = [int(d("n")), int(d("e"))].concat();
            let mut der = vec![0x30];
            der.extend(len(body.len()));
            der.extend(body);
            (der, &signature::RSA_PKCS1_2048_8192_SHA256)
        }
    }
}

/// Runs the suite against `signer`; panics on the first failure. For tests.
#[allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]
pub fn check_signer(signer: &dyn Signer) {
    let jwk = signer.public_jwk();
    let alg = signer.alg();
    for private in ["d", "p", "q", "dp", "dq", "qi"] {
        assert!(
            jwk.get(private).is_none(),
            "{alg}: JWK carries private member {private}"
        );
    }
    assert_eq!(jwk["kid"], json!(signer.kid()), "{alg}: JWK kid");
    assert_eq!(
        thumbprint(&jwk),
        signer.kid(),
        "{alg}: kid is the RFC 7638 thumbprint"
    );
    assert_eq!(jwk["alg"], json!(alg));
    assert_eq!(jwk["use"], json!("sig"));

    let mut claims = Map::new();
    claims.insert("sub".into(), json!("conformance"));
    let jwt = sign_jwt(signer, "at+jwt", &claims).expect("sign");
    let (input, sig) = jwt.rsplit_once('.').unwrap();
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(input.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], json!(signer.kid()));
    assert_eq!(header["alg"], json!(alg));
    let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    let (key, verify_alg) = public_key_bytes(&jwk);
    let public = UnparsedPublicKey::new(verify_alg, &key);
    public
        .verify(input.as_bytes(), &sig)
        .unwrap_or_else(|_| panic!("{alg}: signature does not verify"));
    assert!(
        public.verify(b"another input", &sig).is_err(),
        "{alg}: signature verifies other input"
    );
    for _ in 0..3 {
        let s = signer.sign(input.as_bytes()).expect("sign");
        public
            .verify(input.as_bytes(), &s)
            .unwrap_or_else(|_| panic!("{alg}: repeated signature fails"));
    }
}
