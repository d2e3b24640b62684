//! Router tests of HTTP behaviour rather than of exchanges: methods, content types and
//! body limits at `/token`, discovery, `/jwks` and the OpenAPI document.

use super::*;

#[tokio::test]
async fn http_level_errors() {
    let fx = fixture();
    let good = format!(
        "grant_type={TE}&subject_token={}&subject_token_type={JWT}&audience={DEPLOY}",
        fx.subject(json!({}))
    );
    let form = "application/x-www-form-urlencoded";
    assert_eq!(fx.post(&good, form).await.0, StatusCode::OK);

    let (s, h, v) = fx
        .send(Request::get("/token").body(Body::empty()).unwrap())
        .await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(h[header::ALLOW], "POST");
    assert_eq!(v["error"], "invalid_request");

    let (s, _, v) = fx.post(&good, "application/json").await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );

    let big = format!("{good}&pad={}", "a".repeat(70 * 1024));
    let (s, _, v) = fx.post(&big, form).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("invalid_request"))
    );
    // Same size without a Content-Length (chunked): still 413.
    let stream = futures_body(big.clone());
    let req = Request::post("/token")
        .header(header::CONTENT_TYPE, form)
        .body(stream)
        .unwrap();
    assert_eq!(fx.send(req).await.0, StatusCode::PAYLOAD_TOO_LARGE);

    let (s, _, v) = fx
        .post(
            &format!("{good}&audience={DEPLOY}&subject_token_type={JWT}"),
            form,
        )
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );

    let (s, _, v) = fx.post("grant_type=client_credentials", form).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unsupported_grant_type"))
    );

    let (s, _, v) = fx.post("\u{0}\u{ff}%%%&&==", form).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
}

fn futures_body(s: String) -> Body {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = s
        .into_bytes()
        .chunks(4096)
        .map(|c| Ok(c.to_vec()))
        .collect();
    Body::from_stream(futures_util::stream::iter(chunks))
}

#[tokio::test]
async fn discovery_and_jwks() {
    let fx = fixture();
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let (s, _, v) = fx
            .send(Request::get(path).body(Body::empty()).unwrap())
            .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["issuer"], FERRY);
        assert_eq!(v["jwks_uri"], format!("{FERRY}/jwks"));
        assert_eq!(v["token_endpoint"], format!("{FERRY}/token"));
        assert_eq!(v["response_types_supported"], json!([]));
        assert_eq!(
            v["grant_types_supported"],
            json!([TE, "urn:ietf:params:oauth:grant-type:jwt-bearer"])
        );
        assert_eq!(
            v["token_endpoint_auth_methods_supported"],
            json!([
                "none",
                "client_secret_basic",
                "client_secret_post",
                "private_key_jwt"
            ])
        );
    }
    let (s, h, v) = fx
        .send(Request::get("/jwks").body(Body::empty()).unwrap())
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        h[header::CACHE_CONTROL]
            .to_str()
            .unwrap()
            .starts_with("public, max-age=")
    );
    let active = fx.state.keys.active().kid().to_owned();
    assert!(
        v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == active.as_str())
    );
    assert_eq!(
        v["keys"].as_array().unwrap().len(),
        3,
        "active and two standbys"
    );
    // A conditional request with the ETag is answered 304.
    let etag = h[header::ETAG].to_str().unwrap().to_owned();
    let req = Request::get("/jwks")
        .header(header::IF_NONE_MATCH, &etag)
        .body(Body::empty())
        .unwrap();
    let resp = fx.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(h[header::CACHE_CONTROL], "public, max-age=300");
    assert!(v["keys"][0].get("d").is_none());
    let (s, _, v) = fx
        .send(Request::get("/readyz").body(Body::empty()).unwrap())
        .await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("ready")));
}

/// The (path, method) pairs a document describes, sorted. GET /token (and its alias)
/// is documented only for its 405 (and the per-source limit's 429, which counts every
/// request to it), not as a route of its own.
fn documented(file: &str) -> Vec<(String, String)> {
    let path = format!("{}/../../openapi/{file}", env!("CARGO_MANIFEST_DIR"));
    let doc: Value = serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut out: Vec<(String, String)> = Vec::new();
    for (p, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            // A path item also holds `parameters`, `summary`, `servers`…: not operations.
            const METHODS: [&str; 8] = [
                "get", "put", "post", "delete", "options", "head", "patch", "trace",
            ];
            if !METHODS.contains(&method.as_str()) {
                continue;
            }
            let only_405 = op["responses"]
                .as_object()
                .is_some_and(|r| r.keys().all(|k| k == "405" || k == "429"));
            if !only_405 {
                out.push((p.clone(), method.clone()));
            }
        }
    }
    out.sort();
    out
}

fn sorted(routes: Vec<(&str, &str)>) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = routes
        .into_iter()
        .map(|(p, m)| (p.to_owned(), m.to_owned()))
        .collect();
    v.sort();
    v
}

/// A concrete request path for a documented template (`{id}` → `x`).
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|s| if s.starts_with('{') { "x" } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn the_openapi_document_describes_exactly_the_served_routes() {
    // The route table the router is built from, against the document's paths.
    let served = sorted(crate::routes::routes());
    assert_eq!(
        documented("openapi.yaml"),
        served,
        "openapi/openapi.yaml and the public routes (crate::routes::table) differ"
    );
    // And every listed route is really served (not 404).
    let fx = fixture();
    for (p, m) in crate::routes::routes() {
        let req = Request::builder()
            .method(m.to_uppercase().as_str())
            .uri(concrete(p))
            .body(Body::empty())
            .unwrap();
        let resp = fx.app.clone().oneshot(req).await.unwrap();
        // A templated path is served with `x` for its parameter: its own 404 for an
        // unknown id is JSON, the router's (no route) has no content type.
        if p.contains('{') {
            assert_eq!(
                resp.headers()[header::CONTENT_TYPE],
                "application/json",
                "{p}"
            );
        } else {
            assert_ne!(resp.status(), StatusCode::NOT_FOUND, "{m} {p}");
        }
    }
    // Twin: a path outside the table is not served.
    let req = Request::get("/undocumented").body(Body::empty()).unwrap();
    let status = fx.app.clone().oneshot(req).await.unwrap().status();
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_admin_openapi_document_describes_exactly_the_admin_routes() {
    assert_eq!(
        documented("admin.yaml"),
        sorted(crate::admin::routes()),
        "openapi/admin.yaml and the admin routes (crate::admin::table) differ"
    );
    let fx = fixture();
    let admin = ferry_core::config::Admin {
        listen: Some("127.0.0.1:9090".into()),
        tls: None,
        bearer_token_hashes_file: None,
    };
    let auth = crate::admin::AdminAuth::at_bind(&admin, "127.0.0.1:9090".parse().unwrap()).unwrap();
    let app = crate::admin::router(fx.state.clone(), auth);
    for (p, m) in crate::admin::routes()
        .into_iter()
        .chain([("/undocumented", "get")])
    {
        let req = Request::builder()
            .method(m.to_uppercase().as_str())
            .uri(concrete(p))
            .body(Body::empty())
            .unwrap();
        let status = app.clone().oneshot(req).await.unwrap().status();
        // The twin: a path outside the table is 404.
        assert_eq!(
            status == StatusCode::NOT_FOUND,
            p == "/undocumented",
            "{m} {p}"
        );
    }
}
