//! Audit events: one JSON line per decision, allowed or denied, naming the step (and
//! rule) that decided. Tokens and keys never appear; presented tokens are identified by
//! their SHA-256 fingerprint.

use std::io::Write;
use std::sync::Mutex;

use serde::Serialize;

/// One decision.
#[derive(Debug, Default, Serialize)]
pub struct AuditEvent {
    /// Always `"ferry.audit"`, so the lines can be told apart from others.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Seconds since the epoch.
    pub time: i64,
    /// The request id.
    pub request_id: String,
    /// The W3C trace id, when the caller sent `traceparent`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The source address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// `allow` or `deny`.
    pub decision: &'static str,
    /// The step that decided.
    pub step: &'static str,
    /// The rule that decided, when one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The error code of a denial.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
    /// Why, in detail (never containing token text).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The grant type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant_type: Option<&'static str>,
    /// The client, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The provider that verified the subject token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The subject token's issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_issuer: Option<String>,
    /// The subject token's subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_subject: Option<String>,
    /// SHA-256 (hex) of the subject token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject_token_sha256: Option<String>,
    /// The mapped subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// SHA-256 (hex) of the actor token of a delegation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_token_sha256: Option<String>,
    /// The verified actor's mapped subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The provider that verified the actor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_provider: Option<String>,
    /// For a narrowed token: its parent's `jti`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_jti: Option<String>,
    /// Requested or granted audiences.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// Granted scopes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// The issued token's `jti`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// The issued token's `exp`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// The thumbprint of the key the issued token is bound to (`cnf.jkt`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cnf_jkt: Option<String>,
    /// The thumbprint of the client certificate the issued token is bound to
    /// (`cnf.x5t#S256`).
    #[serde(rename = "cnf_x5t_s256", skip_serializing_if = "Option::is_none")]
    pub cnf_x5t: Option<String>,
    /// Whether the token was issued as a reference handle.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub reference: bool,
    /// A trusted proxy's client certificate header that was ignored (`too_large`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cert_header: Option<&'static str>,
}

/// Most requested targets an event lists.
pub const MAX_TARGETS: usize = 16;
/// Longest request value an event carries as it is; longer ones appear as
/// `sha256:<hex>` of the value.
pub const MAX_VALUE: usize = 256;

/// A request value as an event may carry it: as it is when short, else its
/// fingerprint. Audit lines stay bounded whatever a caller sends.
pub fn bounded(value: &str) -> String {
    if value.len() <= MAX_VALUE {
        value.to_owned()
    } else {
        format!("sha256:{}", crate::ids::fingerprint(value.as_bytes()))
    }
}

/// Longest `rule` or `reason` an event carries; longer ones are cut (at a character
/// boundary) and end in `…`. They may quote a request value (an unconfigured audience).
pub const MAX_TEXT: usize = 512;

/// A rule or reason as an event may carry it: at most [`MAX_TEXT`] bytes.
pub fn clip(text: &str) -> String {
    if text.len() <= MAX_TEXT {
        return text.to_owned();
    }
    let mut end = MAX_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The requested targets as an event carries them: at most [`MAX_TARGETS`], each
/// [`bounded`].
pub fn targets(targets: &[String]) -> Vec<String> {
    targets
        .iter()
        .take(MAX_TARGETS)
        .map(|t| bounded(t))
        .collect()
}

/// Where audit events are written.
pub struct AuditSink {
    out: Mutex<Box<dyn Write + Send>>,
    failures: crate::repeated::RepeatedWarnings,
}

impl std::fmt::Debug for AuditSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditSink")
    }
}

impl AuditSink {
    /// Events to standard output, one line each.
    pub fn stdout() -> Self {
        Self::new(Box::new(std::io::stdout()))
    }

    /// Events appended to a file (created 0600).
    pub fn file(path: &std::path::Path) -> std::io::Result<Self> {
        let mut o = std::fs::OpenOptions::new();
        o.append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            o.mode(0o600);
        }
        Ok(Self::new(Box::new(o.open(path)?)))
    }

    /// Events to any writer.
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Self {
            out: Mutex::new(out),
            failures: crate::repeated::RepeatedWarnings::default(),
        }
    }

    /// Logs an audit failure: every event fails alike (a full disk), so once per
    /// interval with a count.
    fn failed(&self, message: &'static str) {
        self.failures.error(message);
    }

    /// Logs the counts of audit failures whose interval ended (run by the background
    /// task that flushes the other repeated warnings).
    pub fn flush_failures(&self) {
        crate::repeated::flush(&self.failures);
    }

    /// Writes one event as one line.
    pub fn record(&self, event: &AuditEvent) {
        let Ok(mut line) = serde_json::to_vec(event) else {
            self.failed("audit event could not be serialised");
            return;
        };
        line.push(b'\n');
        match self.out.lock() {
            Ok(mut out) => {
                if out.write_all(&line).and_then(|()| out.flush()).is_err() {
                    self.failed("audit events could not be written");
                }
            }
            Err(_) => self.failed("audit sink lock poisoned"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_values_are_bounded() {
        assert_eq!(bounded("https://svc"), "https://svc");
        let long = "a".repeat(MAX_VALUE + 1);
        assert_eq!(
            bounded(&long),
            format!("sha256:{}", crate::ids::fingerprint(long.as_bytes()))
        );
        let many: Vec<String> = (0..100).map(|i| format!("t{i}")).collect();
        assert_eq!(targets(&many).len(), MAX_TARGETS);
        assert_eq!(clip("short"), "short");
        let text = "é".repeat(MAX_TEXT);
        let c = clip(&text);
        assert!(c.len() <= MAX_TEXT + "…".len() && c.ends_with('…'));
    }
}
