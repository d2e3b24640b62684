//! The offline service-account flow: `ferry sa create` makes a key pair locally (the
//! private key never leaves the machine; the public JWK is registered in Ferry's
//! configuration), and `ferry sa token` signs a short assertion with it and exchanges it
//! at Ferry (RFC 7523 §2.1) for an access token.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ferry_keys::{Signer, SigningAlg, SoftwareSigner, sign_jwt};
use serde_json::{Map, Value, json};

/// `ferry sa create NAME`: writes `NAME.json` (0600) into `dir` and returns the text to
/// print: the public JWK and the configuration to register it.
pub fn create(name: &str, dir: &Path, alg: &str) -> Result<String, String> {
    let alg = SigningAlg::from_name(alg).ok_or("algorithm must be ES256, EdDSA or RS256")?;
    let (signer, der) = SoftwareSigner::generate(alg).map_err(|e| e.to_string())?;
    // The folder is created if missing, readable by its owner only (it holds keys).
    let mut d = std::fs::DirBuilder::new();
    d.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        d.mode(0o700);
    }
    d.create(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let file = dir.join(format!("{name}-{}.json", &signer.kid()[..8]));
    let doc = json!({
        "type": "ferry_service_account",
        "id": name,
        "kid": signer.kid(),
        "alg": alg.name(),
        "private_key_pkcs8": URL_SAFE_NO_PAD.encode(&der),
    });
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o
        .open(&file)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    std::io::Write::write_all(&mut f, doc.to_string().as_bytes()).map_err(|e| e.to_string())?;
    let jwk = signer.public_jwk();
    Ok(format!(
        "private key written to {} (keep it secret; it never needs to leave this machine)\n\npublic JWK:\n{}\n\nregister it in Ferry's configuration:\nservice_accounts:\n  - id: {name}\n    jwks: {{ inline: {{\"keys\": [{}]}} }}\n",
        file.display(),
        serde_json::to_string_pretty(&jwk).unwrap_or_default(),
        jwk
    ))
}

/// Reads a key file written by [`create`].
pub fn load_key(path: &Path) -> Result<(String, SoftwareSigner), String> {
    let v: Value = serde_json::from_slice(
        &std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?,
    )
    .map_err(|_| "not a ferry service-account key file")?;
    let id = v
        .get("id")
        .and_then(Value::as_str)
        .ok_or("key file has no id")?
        .to_owned();
    let alg = v
        .get("alg")
        .and_then(Value::as_str)
        .and_then(SigningAlg::from_name)
        .ok_or("key file has no supported alg")?;
    let der = URL_SAFE_NO_PAD
        .decode(
            v.get("private_key_pkcs8")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        )
        .map_err(|_| "key file has no private key")?;
    Ok((
        id,
        SoftwareSigner::from_pkcs8(alg, &der).map_err(|e| e.to_string())?,
    ))
}

/// A signed RFC 7523 assertion: `iss` and `sub` the account, `aud` Ferry's issuer.
pub fn assertion(
    id: &str,
    signer: &dyn Signer,
    audience: &str,
    now: i64,
    ttl: i64,
) -> Result<String, String> {
    let mut claims = Map::new();
    claims.insert("iss".into(), json!(id));
    claims.insert("sub".into(), json!(id));
    claims.insert("aud".into(), json!(audience));
    claims.insert("iat".into(), json!(now));
    claims.insert("exp".into(), json!(now + ttl));
    claims.insert("jti".into(), json!(crate::ids::random_id(16)));
    sign_jwt(signer, "JWT", &claims).map_err(|e| e.to_string())
}

/// `ferry sa token`: discovers Ferry's issuer at `url`, signs an assertion and exchanges
/// it for an access token for `audience`.
pub async fn token(
    key: &Path,
    url: &str,
    audience: &str,
    scope: Option<&str>,
    now: i64,
) -> Result<String, String> {
    let (id, signer) = load_key(key)?;
    let base = url.trim_end_matches('/');
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    let meta: Value = http
        .get(format!("{base}/.well-known/oauth-authorization-server"))
        .send()
        .await
        .map_err(|e| format!("discovery: {e}"))?
        .json()
        .await
        .map_err(|e| format!("discovery: {e}"))?;
    let issuer = meta
        .get("issuer")
        .and_then(Value::as_str)
        .ok_or("discovery document has no issuer")?;
    let assertion = assertion(&id, &signer, issuer, now, 300)?;
    let mut form = vec![
        (
            "grant_type",
            ferry_core::request::GRANT_JWT_BEARER.to_owned(),
        ),
        ("assertion", assertion),
        ("audience", audience.to_owned()),
    ];
    if let Some(s) = scope {
        form.push(("scope", s.to_owned()));
    }
    let resp = http
        .post(format!("{base}/token"))
        .form(&form)
        .send()
        .await
        .map_err(|e| format!("token request: {e}"))?;
    let status = resp.status();
    let body: Value = resp
        .json()
        .await
        .map_err(|e| format!("token response: {e}"))?;
    if !status.is_success() {
        return Err(format!(
            "refused ({status}): {} {}",
            body.get("error")
                .and_then(Value::as_str)
                .unwrap_or_default(),
            body.get("error_description")
                .and_then(Value::as_str)
                .unwrap_or_default()
        ));
    }
    body.get("access_token")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| "no access_token in the response".to_owned())
}
