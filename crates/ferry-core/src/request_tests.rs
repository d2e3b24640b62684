use super::*;

const BASE: &str = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange\
    &subject_token=abc.def.ghi\
    &subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt\
    &audience=https%3A%2F%2Fsvc";

fn parse(body: &str) -> Result<ExchangeRequest, OAuthError> {
    match parse_token_request(body.as_bytes())?.0 {
        TokenRequest::TokenExchange(r) => Ok(r),
        TokenRequest::JwtBearer(_) => panic!("not an exchange"),
    }
}

#[test]
fn accepts_a_minimal_request() {
    let r = parse(BASE).unwrap();
    assert_eq!(r.subject_token, "abc.def.ghi");
    assert_eq!(r.subject_token_type, SubjectTokenType::Jwt);
    assert_eq!(r.requested_token_type, IssuedTokenType::AccessToken);
    assert_eq!(r.targets(), vec!["https://svc"]);
    assert!(r.scopes.is_empty());
}

#[test]
fn table_of_parameter_rules() {
    let cases: &[(&str, Option<ErrorCode>)] = &[
        ("", None),
        ("&unknown=1&x-goog-api-client=1", None),
        ("&subject_token=other", Some(ErrorCode::InvalidRequest)),
        ("&scope=a&scope=b", Some(ErrorCode::InvalidRequest)),
        ("&scope=a%20b", None),
        ("&scope=a%22b", Some(ErrorCode::InvalidScope)),
        ("&audience=https%3A%2F%2Fother", None),
        ("&resource=https%3A%2F%2Fr", None),
        ("&resource=not-a-uri", Some(ErrorCode::InvalidTarget)),
        (
            "&resource=https%3A%2F%2Fr%23frag",
            Some(ErrorCode::InvalidTarget),
        ),
        (
            "&requested_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt",
            None,
        ),
        (
            "&requested_token_type=urn%3Aother",
            Some(ErrorCode::InvalidRequest),
        ),
        ("&actor_token=x", Some(ErrorCode::InvalidRequest)),
        ("&client_id=", None),
    ];
    for (extra, want) in cases {
        let got = parse(&format!("{BASE}{extra}")).err().map(|e| e.code);
        assert_eq!(got, *want, "{extra}");
    }
}

#[test]
fn missing_parameters_are_invalid_request() {
    let full: Vec<&str> = BASE.split('&').collect();
    for i in 0..full.len() {
        let body: Vec<&str> = full
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, s)| *s)
            .collect();
        let err = parse(&body.join("&")).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidRequest, "without {}", full[i]);
    }
}

#[test]
fn unknown_grant_is_unsupported() {
    let err = parse_token_request(b"grant_type=password&username=a").unwrap_err();
    assert_eq!(err.code, ErrorCode::UnsupportedGrantType);
}

#[test]
fn trailing_newline_of_token_files_is_tolerated() {
    let body = BASE.replace("abc.def.ghi", "abc.def.ghi%0A");
    assert_eq!(parse(&body).unwrap().subject_token, "abc.def.ghi");
}

#[test]
fn content_types() {
    for ok in [
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded;charset=UTF-8",
        "Application/X-WWW-Form-Urlencoded; charset=utf-8",
    ] {
        assert!(is_form_content_type(ok), "{ok}");
    }
    for bad in ["application/json", "multipart/form-data", "", "text/plain"] {
        assert!(!is_form_content_type(bad), "{bad}");
    }
}

#[test]
fn repeated_audiences_are_kept_in_order_once() {
    let r = parse(&format!(
        "{BASE}&audience=b&audience=https%3A%2F%2Fsvc&resource=urn:x"
    ))
    .unwrap();
    assert_eq!(r.targets(), vec!["https://svc", "b", "urn:x"]);
}
