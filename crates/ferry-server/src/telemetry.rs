//! Logs and traces. Logs go to standard error, human-readable or JSON, filtered by
//! `RUST_LOG` (else the configured level). Traces are exported over OTLP/HTTP
//! (protobuf) when the standard OpenTelemetry environment asks for it:
//! `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` set, and neither
//! `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none`. `OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_BSP_*` and the other
//! standard variables apply. Incoming W3C `traceparent` headers continue the caller's
//! trace. Off by default; gRPC export is not built (no second TLS stack).

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Flushes and stops trace export when dropped.
#[derive(Debug)]
pub struct TelemetryGuard(Option<SdkTracerProvider>);

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = p.shutdown();
        }
    }
}

fn env_true(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v.eq_ignore_ascii_case("true"))
}

/// Whether the environment asks for OTLP trace export.
pub fn otlp_requested() -> bool {
    if env_true("OTEL_SDK_DISABLED") {
        return false;
    }
    if std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|v| v.trim().eq_ignore_ascii_case("none")) {
        return false;
    }
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var(v).is_ok_and(|s| !s.trim().is_empty()))
}

/// Installs logging (and trace export when requested).
pub fn init(level: &str, json: bool) -> TelemetryGuard {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // The filter is global (`registry().with(filter)`): a filter inside the vector of
    // layers would only filter itself, and every event would reach the others.
    type Base = tracing_subscriber::layer::Layered<EnvFilter, tracing_subscriber::Registry>;
    type Boxed = Box<dyn tracing_subscriber::Layer<Base> + Send + Sync>;
    let mut layers: Vec<Boxed> = Vec::new();
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    layers.push(if json {
        fmt.json().boxed()
    } else {
        fmt.boxed()
    });

    let mut provider = None;
    if otlp_requested() {
        match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
        {
            Ok(exporter) => {
                // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES are read by the builder;
                // without a service name, "ferry".
                let mut resource = opentelemetry_sdk::Resource::builder();
                if std::env::var("OTEL_SERVICE_NAME").is_err() {
                    resource = resource.with_service_name("ferry");
                }
                let p = SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(resource.build())
                    .build();
                opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
                layers.push(
                    tracing_opentelemetry::layer()
                        .with_tracer(p.tracer("ferry"))
                        .boxed(),
                );
                provider = Some(p);
            }
            Err(e) => eprintln!("ferry: OTLP trace export disabled: {e}"),
        }
    }
    tracing_subscriber::registry()
        .with(filter)
        .with(layers)
        .init();
    if provider.is_some() {
        tracing::info!("exporting traces over OTLP/HTTP");
    }
    TelemetryGuard(provider)
}

/// Reads W3C trace context from request headers.
struct Headers<'a>(&'a axum::http::HeaderMap);

impl opentelemetry::propagation::Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Makes `span` a child of the caller's trace, when the request carries one.
pub fn continue_trace(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(headers)));
    let _ = span.set_parent(cx);
}
