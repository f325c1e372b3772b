package serve

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// Reasons /health gives, as etcd words them.
const (
	ReasonNoLeader     = "RAFT NO LEADER"
	ReasonAlarmNoSpace = "ALARM NOSPACE"
	ReasonAlarmCorrupt = "ALARM CORRUPT"
	ReasonAlarmUnknown = "ALARM UNKNOWN"
	// ReasonRangeErrorPrefix starts the reason for a failed test read; the
	// read's error text follows with no space.
	ReasonRangeErrorPrefix = "RANGE ERROR:"
)

// Check names of etcd's /livez and /readyz.
const (
	CheckSerializableRead = "serializable_read"
	CheckLinearizableRead = "linearizable_read"
	CheckDataCorruption   = "data_corruption"
	CheckNonLearner       = "non_learner"
)

// HealthQuery is what a /health request asks for.
type HealthQuery struct {
	// Serializable is ?serializable=true: judge this member alone, with a
	// local read; a missing leader does not make it unhealthy.
	Serializable bool
	// ExcludedAlarms holds the ?exclude= values: alarm names ("NOSPACE",
	// "CORRUPT") that must not make the member unhealthy.
	ExcludedAlarms map[string]bool
}

// HealthStatus is the answer of a /health check.
type HealthStatus struct {
	Healthy bool
	// Reason says why the member is unhealthy, with etcd's words (Reason*
	// constants); it is empty when healthy.
	Reason string
}

// healthJSON is /health's body.
type healthJSON struct {
	Health string `json:"health"`
	Reason string `json:"reason"`
}

// HealthHandler serves etcd's /health: 200 and {"health":"true","reason":""}
// when check reports healthy, else 503 and {"health":"false","reason":...}.
func HealthHandler(check func(ctx context.Context, q HealthQuery) HealthStatus) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !allowGET(w, r) {
			return
		}
		q := HealthQuery{
			Serializable:   r.URL.Query().Get("serializable") == "true",
			ExcludedAlarms: querySet(r, "exclude"),
		}
		st := check(r.Context(), q)
		body := healthJSON{Health: "true"}
		if !st.Healthy {
			body = healthJSON{Health: "false", Reason: st.Reason}
		}
		b, err := json.Marshal(body)
		if err != nil {
			panic(fmt.Sprintf("serve: cannot marshal %+v: %v", body, err))
		}
		if !st.Healthy {
			// etcd answers failures through http.Error: text/plain, and
			// a trailing newline.
			http.Error(w, string(b), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(b)
	})
}

// A Check is one named liveness or readiness check. Run returns nil when the
// check passes; its error text is the reason shown when it fails.
type Check struct {
	Name string
	Run  func(ctx context.Context) error
}

// RegisterProbes installs root (e.g. "/livez" or "/readyz") and
// root/<name> for each check on mux, with etcd's behaviour: the root runs
// every check not named by ?exclude=, in the order given; a sub-path runs
// one check. Success is 200 and "ok\n", preceded with ?verbose by a
// "[+]name ok" line per check; failure is 503 and the "[+]name ok" /
// "[-]name failed: reason" lines.
func RegisterProbes(mux *http.ServeMux, root string, checks ...Check) {
	mux.Handle(root, probeHandler(func(r *http.Request) []Check {
		excluded := querySet(r, "exclude")
		var run []Check
		for _, c := range checks {
			if !excluded[c.Name] {
				run = append(run, c)
			}
		}
		return run
	}))
	for _, c := range checks {
		mux.Handle(strings.TrimSuffix(root, "/")+"/"+c.Name, probeHandler(func(*http.Request) []Check {
			return []Check{c}
		}))
	}
}

func probeHandler(pick func(*http.Request) []Check) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !allowGET(w, r) {
			return
		}
		var report strings.Builder
		failed := false
		for _, c := range pick(r) {
			if err := c.Run(r.Context()); err != nil {
				failed = true
				fmt.Fprintf(&report, "[-]%s failed: %v\n", c.Name, err)
			} else {
				fmt.Fprintf(&report, "[+]%s ok\n", c.Name)
			}
		}
		if failed {
			// The reason is always shown on failure.
			http.Error(w, report.String(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if _, verbose := r.URL.Query()["verbose"]; verbose {
			fmt.Fprint(w, report.String())
		}
		fmt.Fprint(w, "ok\n")
	})
}

// Versions is /version's body, etcd's version.Versions.
type Versions struct {
	Server  string `json:"etcdserver"`  // the etcd API version strata implements, e.g. "3.7.3"
	Cluster string `json:"etcdcluster"` // the cluster version, e.g. "3.7.0"; "not_decided" before it is
	Storage string `json:"storage"`     // the storage version, e.g. "3.7.0"; "unknown" before it is known
}

// VersionHandler serves etcd's /version with the versions get returns at
// the time of the request.
func VersionHandler(get func() Versions) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !allowGET(w, r) {
			return
		}
		b, err := json.Marshal(get())
		if err != nil {
			panic(fmt.Sprintf("serve: cannot marshal versions: %v", err))
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	})
}

// Endpoints are the health and version endpoints of a client URL.
type Endpoints struct {
	Health   func(ctx context.Context, q HealthQuery) HealthStatus // /health
	Livez    []Check                                               // /livez; etcd's: serializable_read
	Readyz   []Check                                               // /readyz; etcd's: data_corruption, serializable_read, linearizable_read, non_learner
	Versions func() Versions                                       // /version
}

// Register installs the endpoints on mux; nil or empty ones are left out.
func (e Endpoints) Register(mux *http.ServeMux) {
	if e.Health != nil {
		mux.Handle("/health", HealthHandler(e.Health))
	}
	if len(e.Livez) > 0 {
		RegisterProbes(mux, "/livez", e.Livez...)
	}
	if len(e.Readyz) > 0 {
		RegisterProbes(mux, "/readyz", e.Readyz...)
	}
	if e.Versions != nil {
		mux.Handle("/version", VersionHandler(e.Versions))
	}
}

func allowGET(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet {
		return true
	}
	w.Header().Set("Allow", http.MethodGet)
	http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
	return false
}

// querySet is the non-empty values of a repeated query parameter.
func querySet(r *http.Request, key string) map[string]bool {
	set := make(map[string]bool)
	for _, v := range r.URL.Query()[key] {
		if v != "" {
			set[v] = true
		}
	}
	return set
}
