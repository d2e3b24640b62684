//! DPoP server nonces (RFC 9449 §8), stateless: a timestamp and its HMAC under a key made
//! at start, valid for the proof window.

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Makes and checks server nonces.
#[derive(Debug)]
pub struct Nonces {
    key: hmac::Key,
}

impl Default for Nonces {
    fn default() -> Self {
        let mut k = [0u8; 32];
        let _ = aws_lc_rs::rand::fill(&mut k);
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &k),
        }
    }
}

impl Nonces {
    /// A nonce for `now`.
    pub fn issue(&self, now: i64) -> String {
        let ts = now.to_be_bytes();
        let tag = hmac::sign(&self.key, &ts);
        let mut raw = ts.to_vec();
        // The HMAC truncated to 16 bytes (SHA-256 gives 32).
        raw.extend_from_slice(tag.as_ref().get(..16).unwrap_or_default());
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Whether `nonce` was issued by this server within `window` seconds.
    pub fn valid(&self, nonce: &str, now: i64, window: i64) -> bool {
        let Ok(raw) = URL_SAFE_NO_PAD.decode(nonce) else {
            return false;
        };
        if raw.len() != 24 {
            return false;
        }
        let (ts, tag) = raw.split_at(8);
        let Ok(ts_bytes) = <[u8; 8]>::try_from(ts) else {
            return false;
        };
        let issued = i64::from_be_bytes(ts_bytes);
        let want = hmac::sign(&self.key, ts);
        let want = want.as_ref().get(..16).unwrap_or_default();
        aws_lc_rs::constant_time::verify_slices_are_equal(want, tag).is_ok()
            && now.abs_diff(issued) <= u64::try_from(window).unwrap_or(0)
    }
}
