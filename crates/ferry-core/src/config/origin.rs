//! Origins (`scheme://host:port`) of the URLs a configuration names: which may be
//! fetched over plain http, and how they print.

pub(super) fn is_loopback_http(url: &str) -> bool {
    ["http://127.0.0.1", "http://localhost", "http://[::1]"]
        .iter()
        .any(|p| {
            url.strip_prefix(p)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '/']))
        })
}

/// `scheme://host:port` of a URL, default port explicit; `None` if not an http(s) URL.
pub fn origin_of(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    if !matches!(u.scheme(), "http" | "https") {
        return None;
    }
    Some(format!(
        "{}://{}:{}",
        u.scheme(),
        u.host_str()?,
        u.port_or_known_default()?
    ))
}

/// The origin as written would print without a path: `http://127.0.0.1:8443`.
pub(super) fn origin_of_display(origin: &str) -> String {
    url::Url::parse(origin)
        .ok()
        .map(|u| {
            let mut s = format!("{}://{}", u.scheme(), u.host_str().unwrap_or_default());
            if let Some(p) = u.port() {
                s.push_str(&format!(":{p}"));
            }
            s
        })
        .unwrap_or_default()
}
