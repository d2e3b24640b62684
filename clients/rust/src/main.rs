//! Rust `google-cloud-auth`, unmodified: Application Default Credentials from the file
//! GOOGLE_APPLICATION_CREDENTIALS names (one `ferry cred-config` wrote, fed as it is),
//! exchanged at Ferry's token endpoint. Prints `{"access_token": …}`.

use google_cloud_auth::credentials::Builder;
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let credentials = Builder::default().build_access_token_credentials()?;
    let token = credentials.access_token().await?;
    println!("{}", json!({"access_token": token.token}));
    Ok(())
}
