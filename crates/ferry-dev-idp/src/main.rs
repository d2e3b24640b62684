//! `ferry-dev-idp`: a development identity provider for trying Ferry out.
//!
//! NOT FOR PRODUCTION. It mints any token you ask for, with any claims, to anyone who can
//! run it. It serves OIDC discovery, a JWKS and SAML IdP metadata on loopback, and keeps
//! its RSA key and its SAML signing key and certificate in a data directory so tokens
//! and assertions keep verifying across restarts.

mod files;
mod jwt;
mod saml;
mod serve;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "ferry-dev-idp",
    version,
    about = "A development identity provider for Ferry. NOT FOR PRODUCTION."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve discovery, the JWKS and SAML metadata (`/saml/metadata`, entity id
    /// `<issuer>/saml`); writes `issuer`, `jwks.json`, `saml-metadata.xml` and
    /// `saml-cert.pem` into the data directory (and the public ones into
    /// `--publish-dir`, if given).
    Serve {
        /// Where the signing keys and the published files live.
        #[arg(long, default_value = "dev-idp-data")]
        data_dir: PathBuf,
        /// Another directory that receives only the public files (`jwks.json`,
        /// `saml-metadata.xml`, `saml-cert.pem`): share this one with Ferry, never the
        /// data directory (it holds the private keys).
        #[arg(long)]
        publish_dir: Option<PathBuf>,
        /// Listen address (loopback only).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
    },
    /// Mint a subject token and print it.
    Mint {
        /// The data directory of a `serve` run (its key and issuer are used).
        #[arg(long, default_value = "dev-idp-data")]
        data_dir: PathBuf,
        /// `iss`; defaults to the issuer of the last `serve`.
        #[arg(long)]
        issuer: Option<String>,
        /// `sub`
        #[arg(long)]
        sub: String,
        /// `aud`
        #[arg(long)]
        aud: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 300)]
        ttl: i64,
        /// Extra claims, `name=value`; a value that parses as JSON is used as JSON.
        #[arg(long = "claim")]
        claims: Vec<String>,
    },
    /// Mint a signed SAML 2.0 assertion and print it as a
    /// `urn:ietf:params:oauth:token-type:saml2` subject token (base64url).
    MintSaml {
        /// The data directory of a `serve` run (its SAML key and issuer are used).
        #[arg(long, default_value = "dev-idp-data")]
        data_dir: PathBuf,
        /// `Issuer`; defaults to `<issuer of the last serve>/saml`.
        #[arg(long)]
        entity_id: Option<String>,
        /// `Subject/NameID`.
        #[arg(long)]
        subject: String,
        /// `Conditions/AudienceRestriction/Audience`: Ferry's SP entity id (a provider's
        /// `audiences`).
        #[arg(long)]
        audience: String,
        /// `SubjectConfirmationData@Recipient`: Ferry's token endpoint (`<issuer>/token`).
        #[arg(long)]
        recipient: String,
        /// An attribute, `NAME=VALUE`; repeat a name for several values.
        #[arg(long = "attribute")]
        attributes: Vec<String>,
        /// Seconds until `NotOnOrAfter` (of the conditions and the bearer confirmation).
        #[arg(long, default_value_t = 300)]
        lifetime: i64,
        /// Wrap the signed assertion in a `samlp:Response`, as a browser would post it.
        #[arg(long)]
        response: bool,
    },
    /// Print the public JWKS.
    Jwks {
        /// The data directory.
        #[arg(long, default_value = "dev-idp-data")]
        data_dir: PathBuf,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve {
            data_dir,
            publish_dir,
            listen,
        } => serve::serve(&data_dir, publish_dir.as_deref(), &listen).await,
        Command::Mint {
            data_dir,
            issuer,
            sub,
            aud,
            ttl,
            claims,
        } => {
            let m = jwt::MintJwt {
                issuer,
                sub: &sub,
                aud: &aud,
                ttl,
                claims: &claims,
            };
            println!("{}", jwt::mint(&data_dir, &m)?);
            Ok(())
        }
        Command::MintSaml {
            data_dir,
            entity_id,
            subject,
            audience,
            recipient,
            attributes,
            lifetime,
            response,
        } => {
            let m = saml::MintSaml {
                entity_id,
                subject: &subject,
                audience: &audience,
                recipient: &recipient,
                attributes: &attributes,
                lifetime,
                response,
            };
            println!("{}", saml::mint(&data_dir, &m)?);
            Ok(())
        }
        Command::Jwks { data_dir } => {
            let key = jwt::load_or_create_key(&data_dir)?;
            println!("{}", serde_json::to_string_pretty(&jwt::jwks(&key))?);
            Ok(())
        }
    }
}
