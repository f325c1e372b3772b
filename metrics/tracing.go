package metrics

import (
	"context"
	"fmt"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
)

// TracingOptions are etcd's distributed tracing flags.
type TracingOptions struct {
	// Address is the OTLP/gRPC collector (--distributed-tracing-address).
	Address string
	// ServiceName and InstanceID become the resource's service.name and
	// service.instance.id (the latter only when set).
	ServiceName, InstanceID string
	// SamplingRatePerMillion is --distributed-tracing-sampling-rate: the
	// share of new traces recorded, in samples per million; a request
	// whose caller sampled its trace is always recorded.
	SamplingRatePerMillion int
}

// Tracing is a member's tracer provider, exporting to an OTLP collector.
// Nothing is registered globally: the member passes Tracer to its stages
// and GRPCServerOption to its client gRPC server.
type Tracing struct {
	tp          *sdktrace.TracerProvider
	propagators propagation.TextMapPropagator
}

// TracerScope names the tracer, as etcd's does.
const TracerScope = "go.etcd.io/etcd"

// NewTracing starts a tracer provider that batches spans to o.Address over
// OTLP/gRPC in plain text, as etcd does. The connection is made lazily: an
// absent collector costs dropped spans, never a failed start.
func NewTracing(ctx context.Context, o TracingOptions) (*Tracing, error) {
	exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithInsecure(), otlptracegrpc.WithEndpoint(o.Address))
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter for %s: %w", o.Address, err)
	}
	attrs := []attribute.KeyValue{attribute.String("service.name", o.ServiceName)}
	if o.InstanceID != "" {
		attrs = append(attrs, attribute.String("service.instance.id", o.InstanceID))
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(resource.NewSchemaless(attrs...)),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(float64(o.SamplingRatePerMillion)/1e6))),
	)
	return &Tracing{
		tp:          tp,
		propagators: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
	}, nil
}

// Tracer is the tracer the member's stages record with.
func (t *Tracing) Tracer() trace.Tracer { return t.tp.Tracer(TracerScope) }

// GRPCServerOption makes a gRPC server start a span per call (named like
// etcdserverpb.KV/Put), continuing the caller's trace when its metadata
// carries one.
func (t *Tracing) GRPCServerOption() grpc.ServerOption {
	return grpc.StatsHandler(otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(t.tp), otelgrpc.WithPropagators(t.propagators),
		// Its RPC metrics would go to the global meter provider; the
		// member's metrics are Prometheus', so none.
		otelgrpc.WithMeterProvider(noop.NewMeterProvider())))
}

// Shutdown flushes the spans still batched and stops the exporter.
func (t *Tracing) Shutdown(ctx context.Context) error { return t.tp.Shutdown(ctx) }
