//! Claim names an operator's per-audience claims may not take: every member of Ferry's
//! own token profile, and every name in the IANA "JSON Web Token Claims" registry
//! (RFC 7519 §10.1), whose meaning a relying service may already act on.

/// The members of Ferry's access-token profile ([`crate::AccessClaims`]).
pub const PROFILE_CLAIMS: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "nbf",
    "jti",
    "client_id",
    "scope",
    "access_boundaries",
    "act",
    "may_act",
    "cnf",
    "groups",
    "attributes",
    "ferry",
];

/// Members Ferry writes besides the profile: a verified derived token's effective claims
/// (`root_kid`, `root_iat`, `derivation_depth`), a derived layer's own members, and the
/// RFC 7662 introspection response's. A custom claim so named could pose as one of them
/// (a `root_iat` read for revocation, say).
pub const FERRY_MEMBERS: &[&str] = &[
    "root_kid",
    "root_iat",
    "derivation_depth",
    "parent",
    "depth",
    "access_boundary",
    "active",
    "token_type",
    "username",
];

/// Names that libraries read as a token's scopes or permissions when it has no `scope`
/// (Spring Security falls back to `scp`, Entra ID and Okta write it): an operator's value
/// there would pass for a grant.
pub const CONFUSABLE: &[&str] = &[
    "scp",
    "scopes",
    "permissions",
    "authorities",
    "role",
    "wids",
];

/// Whether `name` is a member Ferry defines: its profile's or [`FERRY_MEMBERS`].
pub fn is_ferry_member(name: &str) -> bool {
    PROFILE_CLAIMS.contains(&name) || FERRY_MEMBERS.contains(&name)
}

/// The IANA JSON Web Token Claims registry (as of 2026), plus the header-like `typ`.
pub const REGISTERED_CLAIMS: &[&str] = &[
    // RFC 7519
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    // OpenID Connect Core
    "name",
    "given_name",
    "family_name",
    "middle_name",
    "nickname",
    "preferred_username",
    "profile",
    "picture",
    "website",
    "email",
    "email_verified",
    "gender",
    "birthdate",
    "zoneinfo",
    "locale",
    "phone_number",
    "phone_number_verified",
    "address",
    "updated_at",
    "azp",
    "nonce",
    "auth_time",
    "at_hash",
    "c_hash",
    "acr",
    "amr",
    "sub_jwk",
    // RFC 7800, SIP, PASSporT, SET
    "cnf",
    "sip_from_tag",
    "sip_date",
    "sip_callid",
    "sip_cseq_num",
    "sip_via_branch",
    "orig",
    "dest",
    "mky",
    "events",
    "toe",
    "txn",
    "rph",
    "sid",
    "vot",
    "vtm",
    "attest",
    "origid",
    "div",
    "opt",
    "rcd",
    "rcdi",
    "crn",
    "msgi",
    "sph",
    // RFC 8693, RFC 9068, RFC 7643 (SCIM), ACE, introspection
    "act",
    "scope",
    "client_id",
    "may_act",
    "jcard",
    "at_use_nbr",
    "vc",
    "vp",
    "ace_profile",
    "cnonce",
    "exi",
    "roles",
    "groups",
    "entitlements",
    "token_introspection",
    // Entity attestation (EAT)
    "eat_nonce",
    "ueid",
    "sueids",
    "oemid",
    "hwmodel",
    "hwversion",
    "oemboot",
    "dbgstat",
    "location",
    "eat_profile",
    "submods",
    "uptime",
    "bootcount",
    "bootseed",
    "dloas",
    "swname",
    "swversion",
    "manifests",
    "measurements",
    "measres",
    "intuse",
    // CDNI
    "cdniv",
    "cdnicrit",
    "cdniip",
    "cdniuc",
    "cdniets",
    "cdnistt",
    "cdnistd",
    // RFC 9396, OpenID identity assurance, DPoP, ACME, OIDC aggregated claims
    "sig_val_claims",
    "authorization_details",
    "verified_claims",
    "place_of_birth",
    "nationalities",
    "birth_family_name",
    "birth_given_name",
    "birth_middle_name",
    "salutation",
    "title",
    "msisdn",
    "also_known_as",
    "htm",
    "htu",
    "ath",
    "atc",
    "sub_id",
    "_claim_names",
    "_claim_sources",
    // RDAP, geohash, SD-JWT, 3GPP
    "rdap_allowed_purposes",
    "rdap_dnt_allowed",
    "geohash",
    "_sd",
    "...",
    "_sd_alg",
    "sd_hash",
    "vct",
    "vct#integrity",
    "consumerPlmnId",
    "consumerSnpnId",
    "producerPlmnId",
    "producerSnpnId",
    "producerSnssaiList",
    "producerNsiList",
    "producerNfSetId",
    "producerNfServiceSetId",
    "sourceNfInstanceId",
    "analyticsIdList",
    "resOwnerId",
    "cmw",
    // OpenID Federation, token status lists
    "jwks",
    "metadata",
    "constraints",
    "crit",
    "ref",
    "delegation",
    "logo_uri",
    "authority_hints",
    "trust_anchor_hints",
    "trust_marks",
    "trust_mark_issuers",
    "trust_mark_owners",
    "metadata_policy",
    "metadata_policy_crit",
    "source_endpoint",
    "keys",
    "trust_mark_type",
    "trust_chain",
    "trust_anchor",
    "status",
    "status_list",
    "ttl",
    "stpl",
    // Not a registered claim, but a header parameter readers confuse with one.
    "typ",
];

/// Whether `name` is a member Ferry defines, a registered claim or a [`CONFUSABLE`] one —
/// or a dotted path into one (`ferry.provider`) — compared without regard to ASCII case
/// (a reader that folds case must not meet one in disguise), or begins with `_` (the
/// registry's structural names: `_sd`, `_claim_names`).
pub fn is_reserved(name: &str) -> bool {
    // `ferry.provider`, `cnf.jkt`: a dotted path into a reserved claim, as readers that
    // address claims by path would take it.
    let head = name.split(['.', '[']).next().unwrap_or(name);
    name.starts_with('_')
        || [name, head].iter().any(|n| {
            PROFILE_CLAIMS
                .iter()
                .chain(FERRY_MEMBERS)
                .chain(REGISTERED_CLAIMS)
                .chain(CONFUSABLE)
                .any(|r| r.eq_ignore_ascii_case(n))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_and_registered_names_are_reserved_in_any_case() {
        for n in [
            "iss",
            "ferry",
            "access_boundaries",
            "email",
            "Email",
            "GROUPS",
            "_x",
            "typ",
            "root_iat",
            "Active",
        ] {
            assert!(is_reserved(n), "{n}");
        }
        for n in [
            "repository",
            "tenant",
            "user_email",
            "https://example.com/tenant",
        ] {
            assert!(!is_reserved(n), "{n}");
        }
    }

    /// Every member of a fully populated access token is reserved: the profile list
    /// cannot fall behind `AccessClaims` (twin: an operator's name is not).
    #[test]
    fn every_member_ferry_writes_is_reserved() {
        use crate::{AccessClaims, Act, Confirmation, MayAct};
        let full = AccessClaims {
            nbf: Some(1),
            scope: crate::Scope(vec!["s".into()]),
            access_boundaries: Some(vec![serde_json::json!({})]),
            act: Some(Act::default()),
            may_act: Some(MayAct::default()),
            cnf: Some(Confirmation::jkt("k")),
            groups: vec!["g".into()],
            attributes: [("a".to_owned(), "b".to_owned())].into(),
            ..AccessClaims::default()
        };
        for k in full.to_map().keys() {
            assert!(is_reserved(k), "{k}");
            assert!(is_ferry_member(k), "{k}");
        }
        assert!(!is_reserved("tenant"));
        // Dotted paths into reserved claims, beside names that only look alike.
        for (name, reserved) in [
            ("cnf", true),
            ("act", true),
            ("cnf.jkt", true),
            ("cnfx", false),
            ("tenant.id", false),
        ] {
            assert_eq!(is_reserved(name), reserved, "{name}");
        }
    }
}
