//! `audiences[].claims` in the configuration.

use std::path::Path;

use super::parse;

/// `audiences[].claims`: a reserved or malformed name and a bad expression are each
/// refused at their path; the twin with an allowed name loads.
#[test]
fn audience_claims_are_checked_at_their_paths() {
    let base = |claims: &str| {
        format!(
            "issuer: https://ferry.example.com\nproviders:\n  - id: idp\n    issuer: https://idp.example.com\n    audiences: [https://ferry.example.com]\n    jwks: {{ inline: {{\"keys\": []}} }}\naudiences:\n  - audience: https://api.example.com\n    rules: [{{ allow: \"true\" }}]\n    claims: {claims}\n"
        )
    };
    let paths = |claims: &str| -> Vec<String> {
        parse(&base(claims), Path::new("/"))
            .err()
            .map(|e| e.0.into_iter().map(|(p, _)| p).collect())
            .unwrap_or_default()
    };
    assert_eq!(paths("{ repository: subject }"), Vec::<String>::new());
    assert_eq!(
        paths("{ sub: subject, email: subject, Ferry: subject, root_iat: '1' }"),
        vec![
            "audiences[0].claims.Ferry",
            "audiences[0].claims.email",
            "audiences[0].claims.root_iat",
            "audiences[0].claims.sub",
        ]
    );
    assert_eq!(paths("{ 'a b': subject }"), vec!["audiences[0].claims.a b"]);
    assert_eq!(
        paths("{ tenant: 'nosuchvar.x' }"),
        vec!["audiences[0].claims.tenant"]
    );
    // What narrowing changes may not be read (a claim survives it unchanged); the twin
    // reads the request's context.
    assert_eq!(
        paths("{ w: \"'w' in request.scopes\", a: request.audiences, b: actor.subject }"),
        vec![
            "audiences[0].claims.a",
            "audiences[0].claims.b",
            "audiences[0].claims.w"
        ]
    );
    assert_eq!(
        paths("{ bound: request.sender_constrained, ip: request.source_ip, c: client_id }"),
        Vec::<String>::new()
    );
}

/// The count and name bounds, each beside the largest accepted.
#[test]
fn claim_count_and_name_length_are_bounded() {
    let paths = |claims: String| -> Vec<String> {
        let text = format!(
            "issuer: https://ferry.example.com\nproviders:\n  - id: idp\n    issuer: https://idp.example.com\n    audiences: [https://ferry.example.com]\n    jwks: {{ inline: {{\"keys\": []}} }}\naudiences:\n  - audience: https://api.example.com\n    rules: [{{ allow: \"true\" }}]\n    claims: {{ {claims} }}\n"
        );
        parse(&text, Path::new("/"))
            .err()
            .map(|e| e.0.into_iter().map(|(p, _)| p).collect())
            .unwrap_or_default()
    };
    let many = |n: usize| {
        (0..n)
            .map(|i| format!("c{i}: subject"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    assert!(paths(many(32)).is_empty());
    assert_eq!(paths(many(33)), vec!["audiences[0].claims"]);
    let name = |n: usize| format!("{}: subject", "n".repeat(n));
    assert!(paths(name(128)).is_empty());
    assert_eq!(paths(name(129)).len(), 1);
}
