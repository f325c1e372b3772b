package e2e

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/stratakv/strata/perf"
)

// Watch and lease benchmarks against etcd, side by side in one run. Each
// starts a fresh single-member etcd and strata in turn and reports, besides
// the wall-clock figures, the server's CPU per unit of work (less sensitive
// to a noisy machine than throughput). Sizes come from the environment:
//
//	STRATA_BENCH_WATCHERS   watchers (default 10000)
//	STRATA_BENCH_STREAMS    watch streams they share (default 100)
//	STRATA_BENCH_WATCH_KEYS keys they watch, round robin (default 1000)
//	STRATA_BENCH_PUT_RATE   puts per second (default 1000)
//	STRATA_BENCH_LEASES     leases (default 100000)
//
//	go test -run=NONE -bench='WatchFanoutVsEtcd|IdleWatcherMemoryVsEtcd|LeaseKeepAliveVsEtcd' -benchtime=5000x ./tests/e2e/

func benchEnv(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// benchServers runs fn against a fresh single-member etcd, then strata.
func benchServers(b *testing.B, fn func(b *testing.B, m *Member)) {
	bins := needSubject(b)
	for _, server := range []string{"etcd", "strata"} {
		bin := bins.Etcd
		if server == "strata" {
			bin = bins.Subject
		}
		b.Run("server="+server, func(b *testing.B) {
			ms, err := StartClusterErr(b, server, 1, MemberConfig{Binary: bin, ExtraArgs: []string{"--quota-backend-bytes=8589934592"}})
			if err != nil {
				b.Fatal(err)
			}
			defer ms[0].Stop()
			fn(b, ms[0])
		})
	}
}

func rawConns(b *testing.B, m *Member, n int) []*grpc.ClientConn {
	var conns []*grpc.ClientConn
	for range n {
		c, err := grpc.NewClient(m.Endpoint(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		conns = append(conns, c)
	}
	return conns
}

// openWatchers opens watchers over streams (on a few connections), watching
// key(i) for watcher i, and waits for every created response. Each
// stream's events go to onEvents.
func openWatchers(ctx context.Context, b *testing.B, m *Member, watchers, streams int, key func(i int) string,
	onEvents func(resp *pb.WatchResponse)) {
	conns := rawConns(b, m, max(1, streams/25))
	var created sync.WaitGroup
	created.Add(watchers)
	for s := range streams {
		ws, err := pb.NewWatchClient(conns[s%len(conns)]).Watch(ctx)
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for i := s; i < watchers; i += streams {
			if err := ws.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{
				CreateRequest: &pb.WatchCreateRequest{Key: []byte(key(i))}}}); err != nil {
				b.Fatal(err)
			}
			n++
		}
		go func() {
			for {
				r, err := ws.Recv()
				if err != nil {
					return
				}
				if r.Created {
					if n > 0 {
						n--
						created.Done()
					}
					continue
				}
				if onEvents != nil {
					onEvents(r)
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { created.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		b.Fatal("watchers not all created in 2 minutes")
	}
}

// BenchmarkWatchFanoutVsEtcd: watchers on keys (round robin), puts at a
// fixed rate to random watched keys, each carrying its send time; every
// delivered event's put-to-event latency is recorded. b.N is the number of
// puts. Reports delivered events per second, latency percentiles, and
// server CPU per delivered event.
func BenchmarkWatchFanoutVsEtcd(b *testing.B) {
	watchers := benchEnv("STRATA_BENCH_WATCHERS", 10000)
	streams := benchEnv("STRATA_BENCH_STREAMS", 100)
	keys := benchEnv("STRATA_BENCH_WATCH_KEYS", 1000)
	rate := benchEnv("STRATA_BENCH_PUT_RATE", 1000)
	benchServers(b, func(b *testing.B, m *Member) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		key := func(i int) string { return fmt.Sprintf("watched/%06d", i%keys) }
		var (
			delivered atomic.Int64
			mu        sync.Mutex
			lat       []time.Duration
		)
		openWatchers(ctx, b, m, watchers, streams, key, func(r *pb.WatchResponse) {
			now := time.Now()
			local := make([]time.Duration, 0, len(r.Events))
			for _, ev := range r.Events {
				if len(ev.Kv.Value) >= 8 {
					local = append(local, now.Sub(time.Unix(0, int64(binary.BigEndian.Uint64(ev.Kv.Value)))))
				}
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
			delivered.Add(int64(len(r.Events)))
		})
		perKey := watchers / keys
		kv := pb.NewKVClient(rawConns(b, m, 1)[0])
		cpu0 := processCPU(b, m)
		b.ResetTimer()
		start := time.Now()
		var puts sync.WaitGroup
		tick := time.NewTicker(time.Second / time.Duration(rate))
		for i := range b.N {
			<-tick.C
			val := binary.BigEndian.AppendUint64(nil, uint64(time.Now().UnixNano()))
			val = append(val, strings.Repeat("v", 120)...)
			puts.Go(func() {
				if _, err := kv.Put(ctx, &pb.PutRequest{Key: []byte(key(i * 7919)), Value: val}); err != nil {
					b.Error(err)
				}
			})
		}
		tick.Stop()
		puts.Wait()
		want := int64(b.N * perKey)
		deadline := time.Now().Add(2 * time.Minute)
		for delivered.Load() < want && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond) // polls the delivery count
		}
		elapsed := time.Since(start)
		b.StopTimer()
		cpu := processCPU(b, m) - cpu0
		got := delivered.Load()
		if got < want {
			b.Fatalf("%d of %d events delivered in time", got, want)
		}
		mu.Lock()
		slices.Sort(lat)
		pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
		b.ReportMetric(float64(got)/elapsed.Seconds(), "events/s")
		b.ReportMetric(pct(0.5), "p50-ms")
		b.ReportMetric(pct(0.99), "p99-ms")
		b.ReportMetric(pct(0.999), "p99.9-ms")
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(got), "server-cpu-ns/event")
		mu.Unlock()
	})
}

// BenchmarkIdleWatcherMemoryVsEtcd opens STRATA_BENCH_WATCHERS idle
// watchers (each on its own key) and reports the server's resident memory
// growth per watcher.
func BenchmarkIdleWatcherMemoryVsEtcd(b *testing.B) {
	watchers := benchEnv("STRATA_BENCH_WATCHERS", 10000)
	streams := benchEnv("STRATA_BENCH_STREAMS", 100)
	benchServers(b, func(b *testing.B, m *Member) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		rss0 := processRSS(b, m)
		b.ResetTimer()
		openWatchers(ctx, b, m, watchers, streams, func(i int) string { return fmt.Sprintf("idle/%07d", i) }, nil)
		b.StopTimer()
		rss := processRSS(b, m) - rss0
		b.ReportMetric(float64(rss)/float64(watchers), "rss-bytes/watcher")
	})
}

// BenchmarkLeaseKeepAliveVsEtcd grants STRATA_BENCH_LEASES leases, then
// renews them all, b.N renewals in total, over keep-alive streams, and
// reports renewals per second, server CPU per renewal and resident memory
// per live lease.
func BenchmarkLeaseKeepAliveVsEtcd(b *testing.B) {
	leases := benchEnv("STRATA_BENCH_LEASES", 100000)
	benchServers(b, func(b *testing.B, m *Member) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		conns := rawConns(b, m, 4)
		rss0 := processRSS(b, m)
		concurrently(b, 64, leases, func(i int) error {
			_, err := pb.NewLeaseClient(conns[i%len(conns)]).LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: int64(i + 1), TTL: 600})
			return err
		})
		rss := processRSS(b, m) - rss0
		const streams = 16
		var wg sync.WaitGroup
		cpu0 := processCPU(b, m)
		b.ResetTimer()
		start := time.Now()
		for s := range streams {
			lc := pb.NewLeaseClient(conns[s%len(conns)])
			n := b.N / streams
			if s < b.N%streams {
				n++
			}
			wg.Go(func() {
				ka, err := lc.LeaseKeepAlive(ctx)
				if err != nil {
					b.Error(err)
					return
				}
				// Keep a window of renewals in flight, as a client renewing
				// many leases does.
				errc := make(chan error, 1)
				go func() {
					for i := range n {
						id := int64((s+i*streams)%leases) + 1
						if err := ka.Send(&pb.LeaseKeepAliveRequest{ID: id}); err != nil {
							errc <- err
							return
						}
					}
					errc <- nil
				}()
				for range n {
					r, err := ka.Recv()
					if err != nil {
						b.Error(err)
						return
					}
					if r.TTL <= 0 {
						b.Errorf("lease %d renewed with TTL %d", r.ID, r.TTL)
						return
					}
				}
				if err := <-errc; err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
		elapsed := time.Since(start)
		b.StopTimer()
		cpu := processCPU(b, m) - cpu0
		b.ReportMetric(float64(b.N)/elapsed.Seconds(), "renewals/s")
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "server-cpu-ns/renewal")
		b.ReportMetric(float64(rss)/float64(leases), "rss-bytes/lease")
	})
}

// processRSS returns the member process's resident set size in bytes.
func processRSS(b *testing.B, m *Member) int64 {
	rss, err := perf.ProcRSS(m.current().cmd.Process.Pid)
	if err != nil {
		b.Skipf("no /proc: %v", err)
	}
	return rss
}
