package perf

import (
	"sync"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
	"google.golang.org/grpc/status"
)

// Latencies are recorded in microseconds, from 1 µs to a minute, to 3
// significant digits.
const (
	histMinUs = 1
	histMaxUs = 60_000_000
	histSig   = 3
)

func newHist() *hdr.Histogram { return hdr.New(histMinUs, histMaxUs, histSig) }

// recorder holds measurements. The workers on one connection share one (a
// histogram's counts are about 140 KiB: one per worker would be hundreds of
// MiB at thousands of clients, and cache misses on every record), so its
// methods lock; Run merges the recorders at the end.
type recorder struct {
	mu    sync.Mutex
	start time.Time
	ops   *hdr.Histogram // per operation, from its scheduled start
	kinds map[string]*kindRec
	errs  map[string]int64 // by gRPC code
	// samples holds the first error message of each code.
	samples map[string]string
	perSec  []int64 // operations completed in each second of the run
	extra   map[string]float64
}

type kindRec struct {
	hist *hdr.Histogram
	errs int64
}

func newRecorder(start time.Time) *recorder {
	return &recorder{start: start, ops: newHist(), kinds: map[string]*kindRec{}, errs: map[string]int64{},
		samples: map[string]string{}, extra: map[string]float64{}}
}

func record(h *hdr.Histogram, d time.Duration) {
	us := d.Microseconds()
	if us < histMinUs {
		us = histMinUs
	}
	if us > histMaxUs {
		us = histMaxUs
	}
	_ = h.RecordValue(us) // in range by construction
}

// op records one operation that began (was scheduled) at start and ended
// at end.
func (r *recorder) op(start, end time.Time, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	record(r.ops, end.Sub(start))
	if err != nil {
		code := status.Code(err).String()
		r.errs[code]++
		if _, ok := r.samples[code]; !ok {
			r.samples[code] = status.Convert(err).Message()
		}
	}
	sec := int(end.Sub(r.start) / time.Second)
	if sec < 0 {
		sec = 0
	}
	for len(r.perSec) <= sec {
		r.perSec = append(r.perSec, 0)
	}
	r.perSec[sec]++
}

// rpc records one call of kind that took d.
func (r *recorder) rpc(kind string, d time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := r.kinds[kind]
	if k == nil {
		k = &kindRec{hist: newHist()}
		r.kinds[kind] = k
	}
	record(k.hist, d)
	if err != nil {
		k.errs++
	}
}

// add adds v to the counter name.
func (r *recorder) add(name string, v float64) {
	r.mu.Lock()
	r.extra[name] += v
	r.mu.Unlock()
}

// merge adds o's measurements to r; neither may be in use.
func (r *recorder) merge(o *recorder) {
	r.ops.Merge(o.ops)
	for name, k := range o.kinds {
		if mine := r.kinds[name]; mine != nil {
			mine.hist.Merge(k.hist)
			mine.errs += k.errs
		} else {
			r.kinds[name] = k
		}
	}
	for c, n := range o.errs {
		r.errs[c] += n
	}
	for c, m := range o.samples {
		if _, ok := r.samples[c]; !ok {
			r.samples[c] = m
		}
	}
	for len(r.perSec) < len(o.perSec) {
		r.perSec = append(r.perSec, 0)
	}
	for i, n := range o.perSec {
		r.perSec[i] += n
	}
	for k, v := range o.extra {
		r.extra[k] += v
	}
}
