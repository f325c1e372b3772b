package e2e

import (
	"context"
	"encoding/hex"
	"net"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
)

// collector is an OTLP/gRPC trace collector that keeps every span.
type collector struct {
	coltracepb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []exportedSpan
	added chan struct{} // closed and replaced on every export
}

type exportedSpan struct {
	service string
	span    *tracepb.Span
}

func (c *collector) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		var service string
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				service = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				c.spans = append(c.spans, exportedSpan{service, s})
			}
		}
	}
	close(c.added)
	c.added = make(chan struct{})
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// waitFor waits until cond holds over the spans received, or the deadline.
func (c *collector) waitFor(t *testing.T, d time.Duration, cond func([]exportedSpan) bool) []exportedSpan {
	t.Helper()
	timeout := time.After(d)
	for {
		c.mu.Lock()
		spans, added := append([]exportedSpan(nil), c.spans...), c.added
		c.mu.Unlock()
		if cond(spans) {
			return spans
		}
		select {
		case <-added:
		case <-timeout:
			return spans
		}
	}
}

func startCollector(t *testing.T) (*collector, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{added: make(chan struct{})}
	s := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(s, c)
	go s.Serve(l) //nolint:errcheck // ends with Stop
	t.Cleanup(s.Stop)
	return c, l.Addr().String()
}

// TestTracingExportsRequestSpans: with etcd's tracing flags, a Put's
// server span (named as etcd names it) reaches an OTLP collector under the
// configured service name, on etcd v3.7.3 and on strata alike; strata's
// span has the write path's stages as children: the proposer's queue, raft
// (append, fsync, replication, commit) and the apply.
func TestTracingExportsRequestSpans(t *testing.T) {
	b := needSubject(t)
	run := func(t *testing.T, binary string) []exportedSpan {
		col, addr := startCollector(t)
		ms := StartCluster(t, "tr", 1, MemberConfig{
			Binary: binary,
			ExtraArgs: []string{
				"--enable-distributed-tracing", "--distributed-tracing-address=" + addr,
				"--distributed-tracing-service-name=tracetest", "--distributed-tracing-sampling-rate=1000000",
			},
			// Export batches every 100 ms rather than 5 s.
			Env: []string{"OTEL_BSP_SCHEDULE_DELAY=100"},
		})
		c := newEndpointClient(t, ms[0])
		if _, err := c.Put(t.Context(), "traced", "v"); err != nil {
			t.Fatal(err)
		}
		return col.waitFor(t, 20*time.Second, func(spans []exportedSpan) bool {
			for _, s := range spans {
				if s.span.GetName() == "etcdserverpb.KV/Put" {
					return true
				}
			}
			return false
		})
	}
	check := func(t *testing.T, spans []exportedSpan, stages []string) {
		var put *tracepb.Span
		for _, s := range spans {
			if s.span.GetName() == "etcdserverpb.KV/Put" {
				put = s.span
				if s.service != "tracetest" {
					t.Errorf("service.name %q, want tracetest", s.service)
				}
			}
		}
		if put == nil {
			t.Fatalf("no etcdserverpb.KV/Put span among %d exported", len(spans))
		}
		children := map[string]*tracepb.Span{}
		for _, s := range spans {
			if hex.EncodeToString(s.span.GetParentSpanId()) == hex.EncodeToString(put.GetSpanId()) {
				children[s.span.GetName()] = s.span
			}
		}
		var prevEnd uint64
		for _, name := range stages {
			s := children[name]
			if s == nil {
				t.Errorf("no %s span under the Put span; children: %v", name, keys(children))
				continue
			}
			if s.GetStartTimeUnixNano() < put.GetStartTimeUnixNano() || s.GetEndTimeUnixNano() > put.GetEndTimeUnixNano() ||
				s.GetStartTimeUnixNano() < prevEnd || s.GetEndTimeUnixNano() < s.GetStartTimeUnixNano() {
				t.Errorf("%s span [%d, %d] out of order within the Put's [%d, %d] after %d", name,
					s.GetStartTimeUnixNano(), s.GetEndTimeUnixNano(), put.GetStartTimeUnixNano(), put.GetEndTimeUnixNano(), prevEnd)
			}
			prevEnd = s.GetEndTimeUnixNano()
		}
	}
	t.Run("etcd", func(t *testing.T) { check(t, run(t, b.Etcd), nil) })
	t.Run(b.SubjectName, func(t *testing.T) {
		stages := []string{"proposer.queue", "raft.replicate", "applier.apply"}
		if b.SubjectName != "strata" {
			stages = nil
		}
		check(t, run(t, b.Subject), stages)
	})
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
