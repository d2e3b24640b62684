//! The signature primitives Ferry verifies with (RS256, ES256 in the JWS r‖s form,
//! EdDSA), against Project Wycheproof's vectors: every `valid` case verifies, every
//! `invalid` one does not (edge-case keys, malleated signatures, wrong encodings,
//! r = 0 or s = 0, out-of-range integers…); `acceptable` ones are only counted. Keys go
//! through the same JWK parsing as issuers' keys.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use wycheproof::TestResult;

use crate::alg::Algorithm;
use crate::jwks::parse_single;

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

/// A big-endian unsigned integer without leading zero bytes.
fn unsigned(b: &[u8]) -> &[u8] {
    let i = b.iter().position(|x| *x != 0).unwrap_or(b.len());
    &b[i..]
}

/// Left-padded (or stripped) to exactly `n` bytes.
fn fixed(b: &[u8], n: usize) -> Vec<u8> {
    let u = unsigned(b);
    let mut out = vec![0u8; n.saturating_sub(u.len())];
    out.extend_from_slice(u);
    out
}

#[derive(Default, Debug)]
struct Tally {
    valid: usize,
    invalid: usize,
    acceptable: usize,
}

fn check(
    name: &str,
    jwk: &Value,
    alg: Algorithm,
    tests: impl Iterator<Item = (usize, Vec<u8>, Vec<u8>, TestResult)>,
    tally: &mut Tally,
) {
    let key = parse_single(jwk, alg);
    for (id, msg, sig, result) in tests {
        let ok = key.as_ref().is_ok_and(|k| k.verify(&msg, &sig));
        match result {
            TestResult::Valid => {
                assert!(
                    ok,
                    "{name} #{id}: a valid signature was refused ({:?})",
                    key.as_ref().err()
                );
                tally.valid += 1;
            }
            TestResult::Invalid => {
                assert!(!ok, "{name} #{id}: an invalid signature verified");
                tally.invalid += 1;
            }
            TestResult::Acceptable => tally.acceptable += 1,
        }
    }
}

#[test]
fn rs256_against_wycheproof() {
    use wycheproof::rsa_pkcs1_verify::{TestName, TestSet};
    let mut tally = Tally::default();
    for name in [
        TestName::Rsa2048Sha256,
        TestName::Rsa3072Sha256,
        TestName::Rsa4096Sha256,
    ] {
        let set = TestSet::load(name).unwrap();
        for g in set.test_groups {
            let jwk =
                json!({"kty": "RSA", "n": b64(unsigned(&g.key.n)), "e": b64(unsigned(&g.key.e))});
            check(
                &format!("{name:?}"),
                &jwk,
                Algorithm::RS256,
                g.tests
                    .into_iter()
                    .map(|t| (t.tc_id, t.msg.to_vec(), t.sig.to_vec(), t.result)),
                &mut tally,
            );
        }
    }
    assert!(tally.valid > 20 && tally.invalid > 200, "{tally:?}");
}

#[test]
fn es256_against_wycheproof() {
    use wycheproof::ecdsa::{TestName, TestSet};
    let mut tally = Tally::default();
    let set = TestSet::load(TestName::EcdsaSecp256r1Sha256P1363).unwrap();
    for g in set.test_groups {
        let jwk = json!({"kty": "EC", "crv": "P-256",
            "x": b64(&fixed(&g.key.affine_x, 32)), "y": b64(&fixed(&g.key.affine_y, 32))});
        check(
            "EcdsaSecp256r1Sha256P1363",
            &jwk,
            Algorithm::ES256,
            g.tests
                .into_iter()
                .map(|t| (t.tc_id, t.msg.to_vec(), t.sig.to_vec(), t.result)),
            &mut tally,
        );
    }
    assert!(tally.valid > 100 && tally.invalid > 50, "{tally:?}");
}

#[test]
fn eddsa_against_wycheproof() {
    use wycheproof::eddsa::{TestName, TestSet};
    let mut tally = Tally::default();
    let set = TestSet::load(TestName::Ed25519).unwrap();
    for g in set.test_groups {
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&g.key.pk)});
        check(
            "Ed25519",
            &jwk,
            Algorithm::EdDSA,
            g.tests
                .into_iter()
                .map(|t| (t.tc_id, t.msg.to_vec(), t.sig.to_vec(), t.result)),
            &mut tally,
        );
    }
    assert!(tally.valid > 20 && tally.invalid > 50, "{tally:?}");
}
