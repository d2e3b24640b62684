//! Fingerprints and random ids.

/// Lowercase hex SHA-256 of `data`: how tokens and keys appear in logs and audit events.
pub fn fingerprint(data: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let hex = |nibble: u8| char::from_digit(u32::from(nibble), 16).unwrap_or('0');
    let mut s = String::with_capacity(64);
    for b in d.as_ref() {
        s.push(hex(b >> 4));
        s.push(hex(b & 0xf));
    }
    s
}

/// A random identifier of `bytes` bytes, base64url-encoded.
pub fn random_id(bytes: usize) -> String {
    use base64::Engine;
    let mut buf = vec![0u8; bytes];
    // SystemRandom only fails if the OS cannot provide randomness, in which case no
    // identifier is safe; an all-zero id then still never repeats a signature.
    let _ = aws_lc_rs::rand::fill(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}
