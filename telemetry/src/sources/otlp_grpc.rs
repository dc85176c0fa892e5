//! OTLP/gRPC: the `TraceService`, `MetricsService` and `LogsService` of the OpenTelemetry
//! protocol, gzip accepted. A full log answers `RESOURCE_EXHAUSTED` with a `RetryInfo`
//! detail, so SDKs back off for the time it names; items over the limits are reported in the
//! partial success.

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::ingest::{Ingest, IngestError};

/// Largest message accepted, decompressed.
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;

/// The three OTLP services over one [`Ingest`].
#[derive(Debug, Clone)]
pub struct OtlpGrpc {
    ingest: Ingest,
}

impl OtlpGrpc {
    /// Services that feed `ingest`.
    pub fn new(ingest: Ingest) -> Self {
        Self { ingest }
    }

    /// A tonic router serving the three services.
    pub fn router(self) -> tonic::service::Routes {
        let ingest = self.ingest.clone();
        let routes = tonic::service::Routes::new(
            TraceServiceServer::new(self.clone())
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            MetricsServiceServer::new(self.clone())
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            LogsServiceServer::new(self)
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        );
        tonic::service::Routes::from(routes.into_axum_router().layer(
            axum::middleware::from_fn_with_state(ingest, crate::sources::admission::grpc),
        ))
    }
}

fn refusal(error: IngestError) -> Status {
    match error {
        IngestError::Full { retry_after } => {
            let details = ErrorDetails::with_retry_info(Some(retry_after));
            Status::with_error_details(
                tonic::Code::ResourceExhausted,
                "the collector is at capacity; retry later",
                details,
            )
        }
        IngestError::TooLarge => {
            Status::invalid_argument("the request is larger than one log record may be")
        }
        IngestError::Unavailable => {
            Status::unavailable("the collector could not store the data; retry later")
        }
    }
}

#[tonic::async_trait]
impl TraceService for OtlpGrpc {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let accepted = self
            .ingest
            .traces(request.into_inner())
            .await
            .map_err(refusal)?;
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: (accepted.rejected > 0).then_some(ExportTracePartialSuccess {
                rejected_spans: accepted.rejected,
                error_message: accepted.message,
            }),
        }))
    }
}

#[tonic::async_trait]
impl MetricsService for OtlpGrpc {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let accepted = self
            .ingest
            .metrics(request.into_inner())
            .await
            .map_err(refusal)?;
        Ok(Response::new(ExportMetricsServiceResponse {
            partial_success: (accepted.rejected > 0).then_some(ExportMetricsPartialSuccess {
                rejected_data_points: accepted.rejected,
                error_message: accepted.message,
            }),
        }))
    }
}

#[tonic::async_trait]
impl LogsService for OtlpGrpc {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let accepted = self
            .ingest
            .logs(request.into_inner())
            .await
            .map_err(refusal)?;
        Ok(Response::new(ExportLogsServiceResponse {
            partial_success: (accepted.rejected > 0).then_some(ExportLogsPartialSuccess {
                rejected_log_records: accepted.rejected,
                error_message: accepted.message,
            }),
        }))
    }
}
