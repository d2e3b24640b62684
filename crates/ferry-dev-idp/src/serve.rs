//! `serve`: discovery, the JWKS and the SAML metadata on a loopback address, the public
//! files written where Ferry can read them.

use std::path::Path;

use anyhow::bail;
use axum::http::header;
use axum::routing::get;

use crate::{files, jwt, saml};

/// Serves until Ctrl-C.
pub async fn serve(
    data_dir: &Path,
    publish_dir: Option<&Path>,
    listen: &str,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        bail!("the development issuer only listens on loopback addresses");
    }
    let key = jwt::load_or_create_key(data_dir)?;
    let issuer = format!("http://{addr}");
    let jwks = jwt::jwks(&key);
    std::fs::write(data_dir.join(jwt::ISSUER_FILE), &issuer)?;
    files::publish(
        data_dir,
        publish_dir,
        jwt::JWKS_FILE,
        &serde_json::to_vec_pretty(&jwks)?,
    )?;
    let idp = saml::load_or_create(data_dir, &saml::entity_id(&issuer))?;
    saml::publish(&idp, data_dir, publish_dir)?;
    eprintln!(
        "ferry-dev-idp: DEVELOPMENT ISSUER, NOT FOR PRODUCTION: it mints any token it is asked for"
    );
    // The first line stays "listening on <issuer>": scripts and tests read it.
    println!("ferry-dev-idp listening on {issuer}");
    println!("ferry-dev-idp SAML entity id {}", idp.entity_id);
    let metadata = idp.metadata();
    let app = ferry_testkit::idp::router(issuer, jwks).route(
        saml::METADATA_PATH,
        get(move || async move {
            (
                [(header::CONTENT_TYPE, "application/samlmetadata+xml")],
                metadata,
            )
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
