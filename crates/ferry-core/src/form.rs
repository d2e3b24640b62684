//! `application/x-www-form-urlencoded` bodies (RFC 6749 §3.2 requests), decoded the way
//! the WHATWG URL standard's parser does, without copying what needs no decoding.

use std::borrow::Cow;

/// The `application/x-www-form-urlencoded` pairs of `body`, exactly as
/// `form_urlencoded::parse` yields them (the WHATWG URL standard's parser: `&`-separated,
/// empty sequences skipped, split at the first `=`, `+` is a space, `%XX` decoded, a `%`
/// not followed by two hex digits kept, invalid UTF-8 replaced), but without touching a
/// value that has neither `+` nor `%` beyond one UTF-8 check: the subject token, most of
/// the body, is borrowed rather than scanned three times and copied (BENCHMARKS.md).
pub fn pairs(body: &[u8]) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    let mut rest = body;
    std::iter::from_fn(move || {
        let (sequence, after) = split_once_at(rest, b'&');
        let last = sequence.len() == rest.len();
        rest = after;
        (!(last && sequence.is_empty())).then_some(sequence)
    })
    .filter(|sequence| !sequence.is_empty())
    .map(|sequence| {
        let (name, value) = split_once_at(sequence, b'=');
        (decode(name), decode(value))
    })
}

/// `bytes` before and after the first `separator` (which neither part includes); all of
/// `bytes` and nothing when there is none.
fn split_once_at(bytes: &[u8], separator: u8) -> (&[u8], &[u8]) {
    memchr::memchr(separator, bytes)
        .and_then(|i| bytes.split_at_checked(i))
        .map_or((bytes, &[][..]), |(before, at)| {
            (before, at.get(1..).unwrap_or_default())
        })
}

/// One form-encoded name or value: `+` is a space, `%XX` a byte, invalid UTF-8 replaced.
/// Used alone for the parts of an HTTP Basic credential (RFC 6749 §2.3.1).
pub fn decode(input: &[u8]) -> Cow<'_, str> {
    decode_with(input, true)
}

/// Percent-decoding alone: `+` stays a `+` (an `options` value Google's clients encode
/// with `encodeURIComponent` on top of the form encoding).
pub fn percent_decode(input: &[u8]) -> Cow<'_, str> {
    decode_with(input, false)
}

fn decode_with(input: &[u8], plus_is_space: bool) -> Cow<'_, str> {
    let special = if plus_is_space {
        memchr::memchr2(b'+', b'%', input)
    } else {
        memchr::memchr(b'%', input)
    };
    if special.is_none() {
        // `from_utf8` is the vectorised check; `from_utf8_lossy` walks byte by byte.
        return match std::str::from_utf8(input) {
            Ok(s) => Cow::Borrowed(s),
            Err(_) => String::from_utf8_lossy(input),
        };
    }
    let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16));
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        i += 1;
        match b {
            b'+' if plus_is_space => out.push(b' '),
            b'%' => match (hex(input.get(i)), hex(input.get(i + 1))) {
                (Some(hi), Some(lo)) => {
                    // Two hex digits: at most 0xff.
                    out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'%'));
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn single_values() {
        for (input, form, percent) in [
            ("a+b%2Bc", "a b+c", "a+b+c"),
            ("x%26y=z&w", "x&y=z&w", "x&y=z&w"),
            ("%zz%4", "%zz%4", "%zz%4"),
            ("%C3%A9%FF", "é\u{fffd}", "é\u{fffd}"),
            ("plain", "plain", "plain"),
        ] {
            assert_eq!(super::decode(input.as_bytes()), form, "{input}");
            assert_eq!(super::percent_decode(input.as_bytes()), percent, "{input}");
        }
    }

    /// `pairs` yields exactly what `form_urlencoded::parse` does, on bodies built
    /// from the bytes that matter (separators, `+`, `%`, hex digits, bytes that are not
    /// UTF-8) and on the fuzzing corpus of the form target.
    #[test]
    fn pairs_match_the_url_standard_parser() {
        let reference = |b: &[u8]| -> Vec<(String, String)> {
            form_urlencoded::parse(b)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        };
        let ours = |b: &[u8]| -> Vec<(String, String)> {
            super::pairs(b)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        };
        let alphabet: &[u8] = b"&=+%%aF09zG. \xff\xc3\xa9\x00";
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut distinct = std::collections::HashSet::new();
        for len in 0..40 {
            for _ in 0..500 {
                let body: Vec<u8> = (0..len)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        alphabet[(seed % alphabet.len() as u64) as usize]
                    })
                    .collect();
                let want = reference(&body);
                assert_eq!(ours(&body), want, "{body:?}");
                distinct.insert(want);
            }
        }
        assert!(distinct.len() > 10_000, "the generator covers little");
        let corpus =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/form");
        let mut files = 0;
        for entry in std::fs::read_dir(corpus).unwrap() {
            let body = std::fs::read(entry.unwrap().path()).unwrap();
            assert_eq!(ours(&body), reference(&body), "{body:?}");
            files += 1;
        }
        assert!(files > 100);
    }
}
