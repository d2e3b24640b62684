//! `ferry check`: validates a configuration and reports every problem at once, then
//! summarises what it would run.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use ferry_core::config::KeysConfig;
use ferry_core::duration::format_secs;
use ferry_verify::time::SystemMono;

use crate::load::{load_providers, read_config};

/// Runs the check; prints the summary on stdout and problems on stderr.
pub fn check(path: &Path) -> ExitCode {
    let config = match read_config(path) {
        Ok(c) => c,
        Err(errs) => {
            eprintln!("{errs}");
            eprintln!("{} problem(s) found", errs.0.len());
            return ExitCode::FAILURE;
        }
    };
    for w in &config.warnings {
        eprintln!("warning: {w}");
    }
    if let Err(errs) = crate::accounts::load_accounts(&config, Arc::new(SystemMono::default())) {
        eprintln!("{errs}");
        eprintln!("{} problem(s) found", errs.0.len());
        return ExitCode::FAILURE;
    }
    // Replicas sharing replay state must share revocations too.
    if let Some(problem) = crate::revocation::per_node_revocations(&config) {
        eprintln!("revocation: {problem}");
        eprintln!("1 problem(s) found");
        return ExitCode::FAILURE;
    }
    match load_providers(&config, Arc::new(SystemMono::default())) {
        Ok((providers, warnings)) => {
            for w in &warnings {
                eprintln!("warning: {w}");
            }
            println!("configuration OK: issuer {}", config.issuer);
            for p in &providers {
                println!("{}", describe_provider(&p.config));
            }
            for a in &config.audience_names {
                println!("  audience {a}");
            }
            println!("  signing: {}", describe_signing(&config.signing));
            println!("  revocations: {}", describe_revocations(&config));
            let mut failed = false;
            for f in super::check_keys::inspect(&config) {
                match f {
                    super::check_keys::Finding::Error(e) => {
                        failed = true;
                        eprintln!("signing: {e}");
                    }
                    super::check_keys::Finding::Warning(w) => eprintln!("warning: {w}"),
                    super::check_keys::Finding::Note(n) => eprintln!("note: {n}"),
                }
            }
            if failed {
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(errs) => {
            eprintln!("{errs}");
            eprintln!("{} problem(s) found", errs.0.len());
            ExitCode::FAILURE
        }
    }
}

/// The signing settings in one line.
fn describe_signing(s: &ferry_core::config::Signing) -> String {
    format!(
        "{}, rotation every {}, /jwks max-age {}, leeway {}, keys in {} ({})",
        s.algorithm.name(),
        format_secs(s.rotation_period),
        format_secs(s.jwks_max_age),
        format_secs(s.leeway),
        match &s.postgres {
            Some(pg) => format!(
                "PostgreSQL (connection string from {}, read every {} ms)",
                match &pg.url {
                    ferry_core::config::SecretSource::Env(v) => format!("${v}"),
                    ferry_core::config::SecretSource::File(f) => f.display().to_string(),
                },
                pg.poll_interval_ms
            ),
            None => s.keys_dir.display().to_string(),
        },
        match (&s.hsm, s.insecure_plaintext_keys) {
            (Some(h), _) => format!("HSM token {:?}", h.token_label),
            (None, true) => "UNENCRYPTED: development only".to_owned(),
            (None, false) => format!(
                "sealed with {} key-encryption key source(s)",
                s.key_encryption_keys.len()
            ),
        }
    )
}

fn describe_revocations(config: &ferry_core::config::Config) -> String {
    use ferry_core::config::{RevocationStore, SecretSource};
    match &config.revocation {
        RevocationStore::DataDir => format!("data directory {}", config.data_dir.display()),
        RevocationStore::Postgres {
            store,
            from_signing,
        } => format!(
            "PostgreSQL ({}, copy synced every {} ms)",
            match (&store.url, from_signing) {
                (_, true) => "the signing store's database".to_owned(),
                (SecretSource::Env(v), false) => format!("connection string from ${v}"),
                (SecretSource::File(f), false) => format!("connection string from {}", f.display()),
            },
            store.poll_interval_ms
        ),
    }
}

fn describe_provider(p: &ferry_core::config::Provider) -> String {
    if let Some(x) = &p.x509 {
        return format!(
            "  provider {} (x509): {}, SPIFFE trust domain {}, leeway {}",
            p.id,
            describe_keys(&p.keys),
            x.spiffe_trust_domain.as_deref().unwrap_or("any"),
            format_secs(p.leeway.as_secs()),
        );
    }
    if let Some(s) = &p.saml {
        return format!(
            "  provider {} (saml): entity id {}, certificates {}, SP entity ids {}, recipients {}, leeway {}{}{}",
            p.id,
            p.issuer,
            describe_keys(&p.keys),
            p.audiences.join(","),
            s.recipients.join(","),
            format_secs(p.leeway.as_secs()),
            if s.single_use { ", single use" } else { "" },
            if s.allow_sha1 { ", SHA-1 allowed" } else { "" },
        );
    }
    format!(
        "  provider {} ({}): issuer {}, keys {}, algorithms {}, leeway {}, max token lifetime {}{}",
        p.id,
        p.kind.as_str(),
        p.issuer,
        describe_keys(&p.keys),
        p.algorithms
            .iter()
            .map(|a| a.name())
            .collect::<Vec<_>>()
            .join(","),
        format_secs(p.leeway.as_secs()),
        format_secs(p.max_token_lifetime.as_secs()),
        p.max_token_age
            .map(|a| format!(", max token age {}", format_secs(a.as_secs())))
            .unwrap_or_default(),
    )
}

fn describe_keys(k: &KeysConfig) -> String {
    match k {
        KeysConfig::Inline(_) => "inline JWKS".to_owned(),
        KeysConfig::File(f) => format!("file {}", f.display()),
        KeysConfig::Uri(u) => format!("JWKS at {u}"),
        KeysConfig::Discovery(u) => format!("discovery at {u}"),
        KeysConfig::SamlMetadataFile(f) => format!("SAML metadata file {}", f.display()),
        KeysConfig::SamlMetadataUrl(u) => format!("SAML metadata at {u}"),
        KeysConfig::SamlCertificates(_) => "inline PEM certificates".to_owned(),
        KeysConfig::X509 {
            trust_anchors,
            intermediates,
        } => {
            let files = |l: &[std::path::PathBuf]| {
                let names: Vec<String> = l.iter().map(|f| f.display().to_string()).collect();
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(",")
                }
            };
            format!(
                "trust anchors {}, intermediates {}",
                files(trust_anchors),
                files(intermediates)
            )
        }
    }
}
