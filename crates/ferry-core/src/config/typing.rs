//! Explicit typing (RFC 8725 §3.11) of a provider's subject tokens: by default `typ` is
//! absent or `JWT`; `accepted_types` adds kinds a provider's issuer really uses for
//! identity assertions, never a kind of JWT that is something else.

use super::errors::ConfigErrors;

/// Kinds of JWT that are never identity assertions, whatever a provider lists: a DPoP
/// proof, a logout token, a security event, a client assertion (RFC 8725 §3.11), and
/// Ferry's own derived tokens and revocation lists.
const NEVER_IDENTITY_TYPES: &[&str] = &[
    "dpop+jwt",
    "logout+jwt",
    "secevent+jwt",
    "client-authentication+jwt",
    "ferry-derived+jwt",
    "ferry-revocations+jwt",
];

/// `accepted_types`: `typ` values a provider's subject tokens may carry besides `JWT`.
pub(super) fn accepted_types(
    errs: &mut ConfigErrors,
    path: &str,
    given: Option<&Vec<String>>,
    service_account: bool,
) -> Vec<String> {
    let Some(list) = given else {
        return Vec::new();
    };
    let at = format!("{path}.accepted_types");
    if service_account {
        errs.push(
            &at,
            "does not apply to a service_account provider (its assertions are typ JWT)",
        );
    }
    for t in list {
        let short = t.to_ascii_lowercase();
        let short = short.strip_prefix("application/").unwrap_or(&short);
        if short.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
            errs.push(&at, "each entry is a media type such as foo+jwt");
        } else if NEVER_IDENTITY_TYPES.contains(&short) {
            errs.push(
                &at,
                format!("'{t}' is never an identity assertion and cannot be accepted"),
            );
        }
    }
    list.clone()
}
