//! `ferry cred-config`: writes the `external_account` credential file Google's client
//! libraries read (google-auth, google-auth-library, google-cloud-auth; AIP-4117), as
//! `gcloud iam workload-identity-pools create-cred-config` does for Google's STS, with
//! Ferry's token endpoint as `token_url`. The flags are gcloud's.
//!
//! The file can hold a client secret and a URL source's headers: it is created 0600,
//! never over an existing file unless `--force` (which replaces it by a rename, so a
//! symbolic link in its place is replaced, not followed), and nothing the command prints
//! or reports in an error quotes a value it was given. A secret is read from a file,
//! never taken on the command line (where `ps` and shell history would show it).

use std::path::{Path, PathBuf};

use clap::ValueEnum;
use ferry_core::request::{TT_ID_TOKEN, TT_JWT, TT_MTLS, TT_SAML2};
use serde::Serialize;
use serde_json::{Map, Value, json};

/// The subject token types a credential file may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SubjectTokenType {
    /// `urn:ietf:params:oauth:token-type:jwt`
    Jwt,
    /// `urn:ietf:params:oauth:token-type:id_token`
    #[value(name = "id_token")]
    IdToken,
    /// `urn:ietf:params:oauth:token-type:saml2` (base64url of a SAML assertion)
    Saml2,
    /// `urn:ietf:params:oauth:token-type:mtls` (the certificate source's chain)
    Mtls,
}

impl SubjectTokenType {
    fn urn(self) -> &'static str {
        match self {
            Self::Jwt => TT_JWT,
            Self::IdToken => TT_ID_TOKEN,
            Self::Saml2 => TT_SAML2,
            Self::Mtls => TT_MTLS,
        }
    }
}

/// How a file or URL source's content holds the token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SourceType {
    /// The whole content is the token.
    Text,
    /// A JSON object; `--credential-source-field-name` names the token's member.
    Json,
}

/// The arguments of `ferry cred-config`, named as gcloud names them.
#[derive(clap::Args, Debug, Default)]
pub struct Args {
    /// Ferry's public base URL (its issuer); the file names `<URL>/token`. https, or
    /// http to a loopback host only.
    #[arg(long, env = "FERRY_URL")]
    pub url: String,
    /// The audience to request: a relying service Ferry issues tokens for.
    #[arg(long)]
    pub audience: String,
    /// The subject token's type (default: mtls with a certificate source, else jwt).
    #[arg(long, value_enum)]
    pub subject_token_type: Option<SubjectTokenType>,
    /// File source: the path of the subject token (re-read at every refresh).
    #[arg(long)]
    pub credential_source_file: Option<PathBuf>,
    /// URL source: GET this URL for the subject token.
    #[arg(long)]
    pub credential_source_url: Option<String>,
    /// URL source: request headers, `KEY=VALUE[,KEY=VALUE…]` (repeatable).
    #[arg(long)]
    pub credential_source_headers: Vec<String>,
    /// File or URL source: `text` (default) or `json`.
    #[arg(long, value_enum)]
    pub credential_source_type: Option<SourceType>,
    /// File or URL source, `json`: the member holding the token.
    #[arg(long)]
    pub credential_source_field_name: Option<String>,
    /// Executable source: the command that prints the token (Google's executable
    /// response JSON); clients run it only with GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES=1.
    #[arg(long)]
    pub executable_command: Option<String>,
    /// Executable source: how long the command may run, 5000–120000 ms (default 30000).
    #[arg(long)]
    pub executable_timeout_millis: Option<u32>,
    /// Executable source: where the command caches its response.
    #[arg(long)]
    pub executable_output_file: Option<PathBuf>,
    /// Certificate source: the client certificate (PEM), written into a certificate
    /// configuration file with its key.
    #[arg(long, requires = "credential_cert_private_key_path")]
    pub credential_cert_path: Option<PathBuf>,
    /// Certificate source: the certificate's private key (PEM).
    #[arg(long, requires = "credential_cert_path")]
    pub credential_cert_private_key_path: Option<PathBuf>,
    /// Certificate source: PEM certificates sent after the leaf (intermediates).
    #[arg(long)]
    pub credential_cert_trust_chain_path: Option<PathBuf>,
    /// Certificate source: where to write the certificate configuration (default:
    /// `certificate_config.json` beside the output file).
    #[arg(long, requires = "credential_cert_path")]
    pub credential_cert_configuration_output_file: Option<PathBuf>,
    /// Certificate source: use the certificate configuration the libraries find by
    /// themselves (GOOGLE_API_CERTIFICATE_CONFIG, or gcloud's default location).
    #[arg(long, conflicts_with = "credential_cert_path")]
    pub use_default_certificate_config: bool,
    /// A registered client's id (sent with HTTP Basic, with the secret).
    #[arg(long, requires = "client_secret_file")]
    pub client_id: Option<String>,
    /// A file holding the client's secret (never the secret itself on the command line).
    #[arg(long, requires = "client_id")]
    pub client_secret_file: Option<PathBuf>,
    /// The universe domain (`sts.<domain>/v1/token` is where Google's downscoping
    /// clients post: point that host name at Ferry).
    #[arg(long)]
    pub universe_domain: Option<String>,
    /// Where to write the credential file (created 0600).
    #[arg(long)]
    pub output_file: PathBuf,
    /// Replace an existing output file (and certificate configuration).
    #[arg(long)]
    pub force: bool,
}

/// The credential file.
#[derive(Serialize)]
struct CredentialFile {
    #[serde(rename = "type")]
    kind: &'static str,
    audience: String,
    subject_token_type: &'static str,
    token_url: String,
    credential_source: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    universe_domain: Option<String>,
}

/// What [`run`] writes: the credential file and, for a certificate source made from
/// `--credential-cert-path`, the certificate configuration it names.
#[derive(Debug, PartialEq)]
pub struct Plan {
    /// The credential file's JSON.
    pub credentials: Value,
    /// The credential file as written: its members in gcloud's order.
    pub text: String,
    /// The certificate configuration's path and JSON.
    pub certificate_config: Option<(PathBuf, Value)>,
}

/// `ferry cred-config` as a command: prints what [`run`] did, or its error (exit 1).
pub fn command(args: &Args) -> std::process::ExitCode {
    match run(args) {
        Ok(out) => {
            println!("{out}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ferry cred-config: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Writes the files; returns what to print.
pub fn run(args: &Args) -> Result<String, String> {
    let secret = match &args.client_secret_file {
        Some(p) => Some(read_secret(p)?),
        None => None,
    };
    let plan = plan(args, secret)?;
    if let Some((path, config)) = &plan.certificate_config {
        write_private(path, &pretty(config)?, args.force)?;
    }
    write_private(&args.output_file, &plan.text, args.force)?;
    let mut out = format!("wrote {}", args.output_file.display());
    if let Some((path, _)) = &plan.certificate_config {
        out.push_str(&format!(
            "\nwrote the certificate configuration {}",
            path.display()
        ));
    }
    out.push_str(&format!(
        "\nuse it with GOOGLE_APPLICATION_CREDENTIALS={}",
        args.output_file.display()
    ));
    Ok(out)
}

/// The members of Google's credential files in the order gcloud writes them; others
/// (a URL source's header names) follow, in alphabetical order.
const MEMBER_ORDER: &[&str] = &[
    "type",
    "audience",
    "subject_token_type",
    "token_url",
    "credential_source",
    "client_id",
    "client_secret",
    "universe_domain",
    "file",
    "url",
    "headers",
    "executable",
    "command",
    "timeout_millis",
    "output_file",
    "certificate",
    "use_default_certificate_config",
    "certificate_config_location",
    "trust_chain_path",
    "format",
    "subject_token_field_name",
];

/// A JSON value serialized with its objects' members in [`MEMBER_ORDER`] (serde_json's
/// `Map` sorts them alphabetically): the file reads as gcloud's do.
struct InGcloudOrder<'a>(&'a Value);

impl serde::Serialize for InGcloudOrder<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let Value::Object(members) = self.0 else {
            return self.0.serialize(s);
        };
        let rank = |k: &str| {
            MEMBER_ORDER
                .iter()
                .position(|m| *m == k)
                .unwrap_or(usize::MAX)
        };
        let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
        sorted.sort_by_key(|(k, _)| rank(k));
        let mut m = s.serialize_map(Some(sorted.len()))?;
        for (k, v) in sorted {
            m.serialize_entry(k, &InGcloudOrder(v))?;
        }
        m.end()
    }
}

fn pretty(v: &Value) -> Result<String, String> {
    serde_json::to_string_pretty(&InGcloudOrder(v))
        .map(|s| s + "\n")
        .map_err(|e| e.to_string())
}

/// The secret in a file, without its trailing line end.
fn read_secret(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--client-secret-file {}: {e}", path.display()))?;
    let secret = text.trim_end_matches(['\r', '\n']);
    if secret.is_empty() || secret.contains(['\r', '\n']) {
        return Err("--client-secret-file must hold the secret on one line".into());
    }
    Ok(secret.to_owned())
}

/// The files to write, from the arguments (and the secret read from its file).
pub fn plan(args: &Args, client_secret: Option<String>) -> Result<Plan, String> {
    let token_url = token_url(&args.url)?;
    let (source, certificate_config) = source(args)?;
    let certificate = source.get("certificate").is_some();
    let subject_token_type = match (args.subject_token_type, certificate) {
        (None, true) => SubjectTokenType::Mtls,
        (None, false) => SubjectTokenType::Jwt,
        (Some(SubjectTokenType::Mtls), false) => {
            return Err("--subject-token-type mtls needs a certificate source".into());
        }
        (Some(t), true) if t != SubjectTokenType::Mtls => {
            return Err("a certificate source sends an mtls subject token".into());
        }
        (Some(t), _) => t,
    };
    if args.audience.trim().is_empty() {
        return Err("--audience must not be empty".into());
    }
    if let Some(d) = &args.universe_domain {
        universe_domain(d, &args.url)?;
    }
    let file = CredentialFile {
        kind: "external_account",
        audience: args.audience.clone(),
        subject_token_type: subject_token_type.urn(),
        token_url,
        credential_source: source,
        client_id: args.client_id.clone(),
        client_secret,
        universe_domain: args.universe_domain.clone(),
    };
    let credentials = serde_json::to_value(file).map_err(|e| e.to_string())?;
    Ok(Plan {
        text: pretty(&credentials)?,
        credentials,
        certificate_config,
    })
}

/// `--universe-domain`: Google's downscoping clients post the Ferry token to
/// `https://sts.<domain>/v1/token`, so the domain must be the one `--url` names as
/// `sts.<domain>` — a typo would hand full-scope tokens to another host — and neither
/// Google's own universe nor an address.
fn universe_domain(d: &str, url: &str) -> Result<(), String> {
    let d = d.to_ascii_lowercase();
    if d.is_empty() || !d.split('.').all(is_dns_label) || d.split('.').count() < 2 {
        return Err("--universe-domain must be a DNS name".into());
    }
    if d.split('.').all(|l| l.bytes().all(|b| b.is_ascii_digit())) {
        return Err("--universe-domain must be a DNS name, not an address".into());
    }
    if d == "googleapis.com" {
        return Err("--universe-domain googleapis.com is Google's own STS, not Ferry".into());
    }
    let host = reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .unwrap_or_default();
    if host != format!("sts.{d}") {
        return Err(
            "--universe-domain must be the domain --url names as sts.<domain>: Google's \
             downscoping clients send the token to https://sts.<universe-domain>/v1/token"
                .into(),
        );
    }
    Ok(())
}

fn is_dns_label(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 63
        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !l.starts_with('-')
        && !l.ends_with('-')
}

/// `<url>/token`: https, or http only to a loopback host (a subject token sent in clear
/// across a network is anyone's).
fn token_url(base: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(base).map_err(|_| "--url must be an absolute URL")?;
    let host = url.host_str().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => return Err("--url must be https (http only to a loopback host)".into()),
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err("--url must have no query, fragment or user info".into());
    }
    Ok(format!("{}/token", url.as_str().trim_end_matches('/')))
}

#[path = "cred_config_source.rs"]
mod source_args;
use source_args::source;

/// Creates `path` 0600 with `text`; an existing file is replaced only with `force`,
/// through a new file renamed over it (so the result is 0600 and a link is not followed).
fn write_private(path: &Path, text: &str, force: bool) -> Result<(), String> {
    let shown = path.display();
    // `--force` replaces a regular file, or a link to one (or to nothing) — never a
    // device, a pipe or a link to one (`/dev/stdout` would become a file of secrets).
    if force && let Ok(m) = std::fs::symlink_metadata(path) {
        let regular = if m.file_type().is_symlink() {
            match std::fs::metadata(path) {
                Ok(t) => t.is_file(),
                Err(e) => e.kind() == std::io::ErrorKind::NotFound,
            }
        } else {
            m.is_file()
        };
        if !regular {
            return Err(format!(
                "{shown} is not a regular file: --force replaces only one"
            ));
        }
    }
    let target = if force {
        let name = path
            .file_name()
            .ok_or_else(|| format!("{shown}: not a file name"))?;
        let mut tmp = name.to_os_string();
        tmp.push(format!(".tmp-{}", std::process::id()));
        path.with_file_name(tmp)
    } else {
        path.to_owned()
    };
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let written = o.open(&target).and_then(|mut f| {
        std::io::Write::write_all(&mut f, text.as_bytes())?;
        f.sync_all()
    });
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && !force => {
            return Err(format!("{shown} exists (--force replaces it)"));
        }
        Err(e) => {
            if force {
                let _ = std::fs::remove_file(&target);
            }
            return Err(format!("{shown}: {e}"));
        }
    }
    if force {
        std::fs::rename(&target, path).map_err(|e| {
            let _ = std::fs::remove_file(&target);
            format!("{shown}: {e}")
        })?;
    }
    Ok(())
}

/// Headers the HTTP client writes itself: one given here would smuggle a second framing
/// or another host past it.
const HOP_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
];

/// `KEY=VALUE[,KEY=VALUE…]` headers; the errors never quote them (they may be secret).
fn headers(list: &[String]) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    let mut seen = std::collections::HashSet::new();
    for pair in list.iter().flat_map(|l| l.split(',')) {
        let (k, v) = pair
            .split_once('=')
            .ok_or("--credential-source-headers takes KEY=VALUE pairs")?;
        let k = k.trim();
        if k.is_empty() || !k.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            return Err("--credential-source-headers: a header name is not valid".into());
        }
        if v.bytes().any(|b| b.is_ascii_control()) {
            return Err("--credential-source-headers: a header value is not valid".into());
        }
        let lower = k.to_ascii_lowercase();
        if HOP_HEADERS.contains(&lower.as_str()) {
            return Err(
                "--credential-source-headers: Host, Content-Length, Transfer-Encoding and \
                 other connection headers are the HTTP client's own"
                    .into(),
            );
        }
        if !seen.insert(lower) {
            return Err("--credential-source-headers: a header is given twice".into());
        }
        out.insert(k.to_owned(), json!(v));
    }
    Ok(out)
}

#[cfg(test)]
#[path = "cred_config_tests.rs"]
mod tests;
