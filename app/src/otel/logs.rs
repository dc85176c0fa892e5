//! Log records that name the trace of their span.
//!
//! The OpenTelemetry SDK stamps a log record with the trace of the *current OpenTelemetry
//! context*, which tracing-opentelemetry keeps current only if it attaches a span's context
//! at every entry into the span (`context_activation`): a few thousand instructions for every
//! poll of every request, in a service whose requests mostly log nothing that is exported.
//! With activation off, [`TracedLogs`] attaches the context of an event's span just around
//! the export of that one event instead.

use std::sync::{Arc, OnceLock};

use tracing::dispatcher::WeakDispatch;
use tracing::{Dispatch, Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// Wraps the layer that turns events into log records (the OpenTelemetry appender, which
/// acts on events only), so that each record carries the trace and span of the event's span:
/// its explicit parent, or the span it was emitted in.
pub(crate) struct TracedLogs<L> {
    inner: L,
    dispatch: DispatchSlot,
}

/// The subscriber a [`TracedLogs`] is part of, to look up the OpenTelemetry context of a span.
/// Set when the subscriber is registered, or by [`DispatchSlot::fill`]: a layer inside an
/// `Option` is not told of its registration (tracing-subscriber 0.3).
#[derive(Clone, Default)]
pub(crate) struct DispatchSlot(Arc<OnceLock<WeakDispatch>>);

impl DispatchSlot {
    /// Takes the default dispatcher, once it is the subscriber holding the layer.
    pub(crate) fn fill(&self) {
        tracing::dispatcher::get_default(|dispatch| {
            let _ = self.0.set(dispatch.downgrade());
        });
    }
}

impl<L> TracedLogs<L> {
    pub(crate) fn new(inner: L, dispatch: DispatchSlot) -> Self {
        Self { inner, dispatch }
    }
}

impl<S, L> Layer<S> for TracedLogs<L>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    L: Layer<S>,
{
    fn on_register_dispatch(&self, dispatch: &Dispatch) {
        let _ = self.dispatch.0.set(dispatch.downgrade());
        self.inner.on_register_dispatch(dispatch);
    }

    fn on_layer(&mut self, subscriber: &mut S) {
        self.inner.on_layer(subscriber);
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let span = match event.parent() {
            Some(parent) => Some(parent.clone()),
            None if event.is_contextual() => ctx.current_span().id().cloned(),
            None => None,
        };
        let context = span.and_then(|span| {
            let dispatch = self.dispatch.0.get()?.upgrade()?;
            tracing_opentelemetry::get_otel_context(&span, &dispatch)
        });
        let _attached = context.map(opentelemetry::Context::attach);
        self.inner.on_event(event, ctx);
    }
}
