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
}

/// Where audit events are written.
pub struct AuditSink {
    out: Mutex<Box<dyn Write + Send>>,
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
        }
    }

    /// Writes one event as one line.
    pub fn record(&self, event: &AuditEvent) {
        let Ok(mut line) = serde_json::to_vec(event) else {
            tracing::error!("audit event could not be serialised");
            return;
        };
        line.push(b'\n');
        match self.out.lock() {
            Ok(mut out) => {
                if out.write_all(&line).and_then(|()| out.flush()).is_err() {
                    tracing::error!("audit event could not be written");
                }
            }
            Err(_) => tracing::error!("audit sink lock poisoned"),
        }
    }
}
