//! Where logs and spans go: stderr, as text or JSON lines (`--log-format`),
//! filtered by `COMMERCE_GRAPH_LOG`; and, in a build with the `otel` cargo
//! feature and `--otlp-endpoint` set, spans exported over OTLP/HTTP
//! (protobuf) to an OpenTelemetry collector, continuing the caller's W3C
//! trace.

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogFormat;

/// What must be flushed before the process exits.
#[derive(Default)]
pub struct Telemetry {
    #[cfg(feature = "otel")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

/// Installs the process's subscriber. A second call (the tests start many
/// servers in one process) keeps the first.
pub fn init(format: LogFormat, otlp_endpoint: Option<&str>) -> anyhow::Result<Telemetry> {
    let filter =
        EnvFilter::try_from_env("COMMERCE_GRAPH_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let logs = match format {
        LogFormat::Json => logs.json().boxed(),
        LogFormat::Text => logs.boxed(),
    };
    let registry = tracing_subscriber::registry().with(filter).with(logs);
    #[cfg(feature = "otel")]
    {
        let (layer, provider) = match otlp_endpoint {
            Some(endpoint) => {
                let (layer, provider) = otel::layer(endpoint)?;
                (Some(layer), Some(provider))
            }
            None => (None, None),
        };
        let _ = registry.with(layer).try_init();
        Ok(Telemetry { provider })
    }
    #[cfg(not(feature = "otel"))]
    {
        if otlp_endpoint.is_some() {
            anyhow::bail!(
                "otlp_endpoint: this build cannot export spans; build it with \
                 `cargo build --features otel`"
            );
        }
        let _ = registry.try_init();
        Ok(Telemetry::default())
    }
}

impl Telemetry {
    /// Sends the spans still buffered.
    pub fn shutdown(self) {
        #[cfg(feature = "otel")]
        if let Some(provider) = self.provider {
            if let Err(error) = provider.shutdown() {
                eprintln!("commerce-graph: flushing spans to the collector: {error}");
            }
        }
    }
}

/// Makes the caller's span (from its `traceparent`) the parent of `span` in
/// the exported trace. Without the `otel` feature there is nothing to do.
#[allow(unused_variables)]
pub fn continue_trace(span: &tracing::Span, trace: &crate::http::trace_context::TraceContext) {
    #[cfg(feature = "otel")]
    otel::continue_trace(span, trace);
}

#[cfg(feature = "otel")]
mod otel {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
        TracerProvider as _,
    };
    use opentelemetry_otlp::WithExportConfig as _;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;

    use crate::http::trace_context::TraceContext;

    pub(super) fn layer<S>(
        endpoint: &str,
    ) -> anyhow::Result<(
        tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::SdkTracer>,
        SdkTracerProvider,
    )>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(endpoint)
            .build()
            .map_err(|e| anyhow::anyhow!("otlp_endpoint {endpoint:?}: {e}"))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name("commerce-graph")
                    .build(),
            )
            .build();
        let tracer = provider.tracer("commerce-graph");
        Ok((tracing_opentelemetry::layer().with_tracer(tracer), provider))
    }

    pub(super) fn continue_trace(span: &tracing::Span, trace: &TraceContext) {
        let Some(parent) = trace.parent_id else {
            return;
        };
        let state = trace
            .tracestate
            .as_deref()
            .and_then(|s| s.parse::<TraceState>().ok())
            .unwrap_or_default();
        let remote = SpanContext::new(
            TraceId::from_bytes(trace.trace_id.to_be_bytes()),
            SpanId::from_bytes(parent.to_be_bytes()),
            TraceFlags::new(trace.flags),
            true,
            state,
        );
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
}
