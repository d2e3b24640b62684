//! The `credential_source` of a credential file, in Google's shapes: `file`, `url` (with
//! `headers`), each with an optional `format`; `executable`; `certificate`. Exactly one
//! source; a flag of another source is refused rather than silently dropped. Paths are
//! written absolute: the clients may run in another directory than this command.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use super::{Args, SourceType, headers};

/// Google's bounds on an executable's timeout (AIP-4117), and gcloud's default.
const TIMEOUT_MILLIS: std::ops::RangeInclusive<u32> = 5_000..=120_000;
const DEFAULT_TIMEOUT_MILLIS: u32 = 30_000;

fn absolute(p: &Path) -> Result<String, String> {
    let abs = std::path::absolute(p).map_err(|e| format!("{}: {e}", p.display()))?;
    abs.to_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("{}: not UTF-8", p.display()))
}

/// The `format` of a file or URL source, if any.
fn format(args: &Args) -> Result<Option<Value>, String> {
    match (
        args.credential_source_type,
        &args.credential_source_field_name,
    ) {
        (None, None) => Ok(None),
        (Some(SourceType::Text), None) => Ok(Some(json!({"type": "text"}))),
        (Some(SourceType::Json), Some(f)) if !f.is_empty() => {
            Ok(Some(json!({"type": "json", "subject_token_field_name": f})))
        }
        (Some(SourceType::Json), _) => {
            Err("--credential-source-type json needs --credential-source-field-name".into())
        }
        (_, Some(_)) => {
            Err("--credential-source-field-name needs --credential-source-type json".into())
        }
    }
}

/// The source object and, for `--credential-cert-path`, the certificate configuration
/// to write (its path and JSON).
pub(super) fn source(args: &Args) -> Result<(Value, Option<(PathBuf, Value)>), String> {
    let certificate = args.credential_cert_path.is_some() || args.use_default_certificate_config;
    let chosen = [
        args.credential_source_file.is_some(),
        args.credential_source_url.is_some(),
        args.executable_command.is_some(),
        certificate,
    ];
    if chosen.iter().filter(|c| **c).count() != 1 {
        return Err("give exactly one source: --credential-source-file, --credential-source-url, --executable-command, or --credential-cert-path (or --use-default-certificate-config)".into());
    }
    let file_or_url = args.credential_source_file.is_some() || args.credential_source_url.is_some();
    if !file_or_url
        && (args.credential_source_type.is_some() || args.credential_source_field_name.is_some())
    {
        return Err("--credential-source-type and --credential-source-field-name apply to a file or URL source".into());
    }
    if args.credential_source_url.is_none() && !args.credential_source_headers.is_empty() {
        return Err("--credential-source-headers applies to a URL source".into());
    }
    if args.executable_command.is_none()
        && (args.executable_timeout_millis.is_some() || args.executable_output_file.is_some())
    {
        return Err("--executable-timeout-millis and --executable-output-file apply to an executable source".into());
    }
    if !certificate && args.credential_cert_trust_chain_path.is_some() {
        return Err("--credential-cert-trust-chain-path applies to a certificate source".into());
    }
    if let Some(f) = &args.credential_source_file {
        let mut s = Map::new();
        s.insert("file".into(), json!(absolute(f)?));
        if let Some(fmt) = format(args)? {
            s.insert("format".into(), fmt);
        }
        return Ok((Value::Object(s), None));
    }
    if let Some(u) = &args.credential_source_url {
        return Ok((url_source(args, u)?, None));
    }
    if let Some(command) = &args.executable_command {
        return Ok((executable_source(args, command)?, None));
    }
    certificate_source(args)
}

fn certificate_source(args: &Args) -> Result<(Value, Option<(PathBuf, Value)>), String> {
    let mut c = Map::new();
    let mut config = None;
    if let (Some(cert), Some(key)) = (
        &args.credential_cert_path,
        &args.credential_cert_private_key_path,
    ) {
        let location = match &args.credential_cert_configuration_output_file {
            Some(p) => p.clone(),
            None => args.output_file.with_file_name("certificate_config.json"),
        };
        if std::path::absolute(&location).ok() == std::path::absolute(&args.output_file).ok() {
            return Err("the certificate configuration and the output file must differ".into());
        }
        let doc = json!({"cert_configs": {"workload": {
            "cert_path": absolute(cert)?,
            "key_path": absolute(key)?,
        }}});
        c.insert(
            "certificate_config_location".into(),
            json!(absolute(&location)?),
        );
        config = Some((location, doc));
    } else {
        c.insert("use_default_certificate_config".into(), json!(true));
    }
    if let Some(t) = &args.credential_cert_trust_chain_path {
        c.insert("trust_chain_path".into(), json!(absolute(t)?));
    }
    Ok((json!({ "certificate": c }), config))
}

/// A `url` source: https, or http to this host or a link-local metadata address.
fn url_source(args: &Args, u: &str) -> Result<Value, String> {
    let parsed =
        reqwest::Url::parse(u).map_err(|_| "--credential-source-url must be an absolute URL")?;
    // The subject token (and any header) travels over it: https, or http only to this
    // host or a link-local metadata address (Azure's IMDS wants `Metadata: true`).
    let host = parsed
        .host_str()
        .unwrap_or_default()
        .trim_matches(['[', ']']);
    let ip = host.parse::<std::net::IpAddr>().ok();
    let near = host == "localhost"
        || ip.is_some_and(|i| match i {
            std::net::IpAddr::V4(v4) => v4.is_loopback() || v4.is_link_local(),
            std::net::IpAddr::V6(v6) => v6.is_loopback() || (v6.segments()[0] & 0xffc0) == 0xfe80,
        });
    match parsed.scheme() {
        "https" => {}
        "http" if near => {}
        _ => {
            return Err(
                "--credential-source-url must be https (http only to this host or a \
                 link-local metadata address)"
                    .into(),
            );
        }
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("--credential-source-url must have no user info".into());
    }
    let mut s = Map::new();
    s.insert("url".into(), json!(u));
    let h = headers(&args.credential_source_headers)?;
    if !h.is_empty() {
        s.insert("headers".into(), Value::Object(h));
    }
    if let Some(fmt) = format(args)? {
        s.insert("format".into(), fmt);
    }
    Ok(Value::Object(s))
}

/// An `executable` source: an absolute command, Google's timeout bounds.
fn executable_source(args: &Args, command: &str) -> Result<Value, String> {
    let timeout = args
        .executable_timeout_millis
        .unwrap_or(DEFAULT_TIMEOUT_MILLIS);
    if !TIMEOUT_MILLIS.contains(&timeout) {
        return Err("--executable-timeout-millis must be 5000–120000".into());
    }
    if command.trim().is_empty() {
        return Err("--executable-command must not be empty".into());
    }
    // The libraries run it from the application's directory, not this one.
    if !command
        .split_whitespace()
        .next()
        .is_some_and(|program| Path::new(program).is_absolute())
    {
        return Err("--executable-command must start with an absolute path".into());
    }
    let mut e = Map::new();
    e.insert("command".into(), json!(command));
    e.insert("timeout_millis".into(), json!(timeout));
    if let Some(o) = &args.executable_output_file {
        e.insert("output_file".into(), json!(absolute(o)?));
    }
    Ok(json!({ "executable": e }))
}
