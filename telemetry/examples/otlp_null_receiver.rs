//! The benchmark peer: an OTLP/gRPC receiver that decodes every export request with the same
//! generated tonic services and drops it. No log, no sinks, no limits: the floor cost of
//! receiving OTLP in Rust, measured beside the collector in `bench/collector.sh`.
//!
//!     cargo run --release -p telemetry --example otlp_null_receiver -- 127.0.0.1:4327

use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tonic::{Request, Response, Status};

/// Items received, so that the decode cannot be optimised away; printed at exit.
static ITEMS: AtomicU64 = AtomicU64::new(0);

struct Null;

#[tonic::async_trait]
impl TraceService for Null {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let spans: usize = request
            .get_ref()
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        ITEMS.fetch_add(spans as u64, Ordering::Relaxed);
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Null {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let records: usize = request
            .get_ref()
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len())
            .sum();
        ITEMS.fetch_add(records as u64, Ordering::Relaxed);
        Ok(Response::new(ExportLogsServiceResponse::default()))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:4327".to_owned())
        .parse()?;
    eprintln!("null OTLP receiver on {address}");
    tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(Null).max_decoding_message_size(8 * 1024 * 1024))
        .add_service(LogsServiceServer::new(Null).max_decoding_message_size(8 * 1024 * 1024))
        .serve_with_shutdown(address, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    eprintln!("received {} items", ITEMS.load(Ordering::Relaxed));
    Ok(())
}
