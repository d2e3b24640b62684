//! Rust `google-cloud-auth`, unmodified: external_account credentials with a
//! file-sourced subject token, as a workload configures them, pointed at Ferry's token
//! endpoint. Prints `{"access_token": …}`.

use google_cloud_auth::credentials::external_account::Builder;
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let env = |k: &str| std::env::var(k).map_err(|_| format!("{k} is not set"));
    let config = json!({
        "type": "external_account",
        "audience": env("AUDIENCE")?,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": env("TOKEN_URL")?,
        "credential_source": {"file": env("SUBJECT_TOKEN_FILE")?},
    });
    let credentials = Builder::new(config).build_access_token_credentials()?;
    let token = credentials.access_token().await?;
    println!("{}", json!({"access_token": token.token}));
    Ok(())
}
