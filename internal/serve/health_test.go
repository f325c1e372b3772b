package serve

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
)

type response struct {
	code        int
	body        string
	contentType string
	allow       string
}

func do(t *testing.T, h http.Handler, method, target string) response {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	res := rec.Result()
	b, _ := io.ReadAll(res.Body)
	return response{res.StatusCode, string(b), res.Header.Get("Content-Type"), res.Header.Get("Allow")}
}

func TestHealth(t *testing.T) {
	// check mimics etcd's: alarms first, then the leader, then a read.
	var (
		alarm    string
		leader   bool
		readErr  error
		lastSeen HealthQuery
	)
	check := func(ctx context.Context, q HealthQuery) HealthStatus {
		lastSeen = q
		switch {
		case alarm != "" && !q.ExcludedAlarms[alarm]:
			return HealthStatus{Reason: "ALARM " + alarm}
		case !leader && !q.Serializable:
			return HealthStatus{Reason: ReasonNoLeader}
		case readErr != nil:
			return HealthStatus{Reason: ReasonRangeErrorPrefix + readErr.Error()}
		}
		return HealthStatus{Healthy: true}
	}
	h := HealthHandler(check)

	tests := []struct {
		name    string
		alarm   string
		leader  bool
		readErr error
		target  string
		want    response
	}{
		{"healthy", "", true, nil, "/health",
			response{200, `{"health":"true","reason":""}`, "text/plain; charset=utf-8", ""}},
		{"no leader", "", false, nil, "/health",
			response{503, `{"health":"false","reason":"RAFT NO LEADER"}` + "\n", "text/plain; charset=utf-8", ""}},
		{"no leader, serializable", "", false, nil, "/health?serializable=true",
			response{200, `{"health":"true","reason":""}`, "text/plain; charset=utf-8", ""}},
		{"alarm", "NOSPACE", true, nil, "/health",
			response{503, `{"health":"false","reason":"ALARM NOSPACE"}` + "\n", "text/plain; charset=utf-8", ""}},
		{"alarm excluded", "NOSPACE", true, nil, "/health?exclude=NOSPACE",
			response{200, `{"health":"true","reason":""}`, "text/plain; charset=utf-8", ""}},
		{"read fails", "", true, errors.New("etcdserver: request timed out"), "/health",
			response{503, `{"health":"false","reason":"RANGE ERROR:etcdserver: request timed out"}` + "\n", "text/plain; charset=utf-8", ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			alarm, leader, readErr = tt.alarm, tt.leader, tt.readErr
			if got := do(t, h, "GET", tt.target); got != tt.want {
				t.Errorf("GET %s = %+v\nwant %+v", tt.target, got, tt.want)
			}
		})
	}

	do(t, h, "GET", "/health?exclude=NOSPACE&exclude=CORRUPT&exclude=&serializable=false")
	want := HealthQuery{ExcludedAlarms: map[string]bool{"NOSPACE": true, "CORRUPT": true}}
	if !reflect.DeepEqual(lastSeen, want) {
		t.Errorf("query = %+v, want %+v", lastSeen, want)
	}

	if got := do(t, h, "POST", "/health"); got.code != 405 || got.allow != "GET" || got.body != "Method Not Allowed\n" {
		t.Errorf("POST /health = %+v", got)
	}
}

func TestProbes(t *testing.T) {
	failing := map[string]error{}
	mk := func(name string) Check {
		return Check{Name: name, Run: func(context.Context) error { return failing[name] }}
	}
	mux := http.NewServeMux()
	RegisterProbes(mux, "/livez", mk(CheckSerializableRead))
	RegisterProbes(mux, "/readyz", mk(CheckDataCorruption), mk(CheckSerializableRead), mk(CheckLinearizableRead), mk(CheckNonLearner))

	const text = "text/plain; charset=utf-8"
	tests := []struct {
		name    string
		failing map[string]error
		target  string
		want    response
	}{
		{"livez", nil, "/livez", response{200, "ok\n", text, ""}},
		{"livez verbose", nil, "/livez?verbose", response{200, "[+]serializable_read ok\nok\n", text, ""}},
		{"livez sub-path", nil, "/livez/serializable_read", response{200, "ok\n", text, ""}},
		{"readyz verbose", nil, "/readyz?verbose",
			response{200, "[+]data_corruption ok\n[+]serializable_read ok\n[+]linearizable_read ok\n[+]non_learner ok\nok\n", text, ""}},
		{"readyz on a learner", map[string]error{CheckNonLearner: errors.New("not supported for learner")}, "/readyz",
			response{503, "[+]data_corruption ok\n[+]serializable_read ok\n[+]linearizable_read ok\n[-]non_learner failed: not supported for learner\n\n", text, ""}},
		{"readyz on a learner, excluded", map[string]error{CheckNonLearner: errors.New("not supported for learner")},
			"/readyz?exclude=non_learner&verbose",
			response{200, "[+]data_corruption ok\n[+]serializable_read ok\n[+]linearizable_read ok\nok\n", text, ""}},
		{"exclude two, and one that does not exist", nil, "/readyz?exclude=data_corruption&exclude=linearizable_read&exclude=nope&verbose",
			response{200, "[+]serializable_read ok\n[+]non_learner ok\nok\n", text, ""}},
		{"sub-path failing", map[string]error{CheckLinearizableRead: errors.New("etcdserver: leader changed")}, "/readyz/linearizable_read",
			response{503, "[-]linearizable_read failed: etcdserver: leader changed\n\n", text, ""}},
		{"other sub-path fine", map[string]error{CheckLinearizableRead: errors.New("x")}, "/readyz/non_learner?verbose",
			response{200, "[+]non_learner ok\nok\n", text, ""}},
		{"data corruption", map[string]error{CheckDataCorruption: errors.New("alarm activated: CORRUPT")}, "/readyz",
			response{503, "[-]data_corruption failed: alarm activated: CORRUPT\n[+]serializable_read ok\n[+]linearizable_read ok\n[+]non_learner ok\n\n", text, ""}},
		{"unknown sub-path", nil, "/readyz/nope", response{404, "404 page not found\n", text, ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			failing = tt.failing
			if got := do(t, mux, "GET", tt.target); got != tt.want {
				t.Errorf("GET %s = %+v\nwant %+v", tt.target, got, tt.want)
			}
		})
	}
	if got := do(t, mux, "HEAD", "/readyz"); got.code != 405 || got.allow != "GET" {
		t.Errorf("HEAD /readyz = %+v", got)
	}
}

func TestVersion(t *testing.T) {
	v := Versions{Server: "3.7.3", Cluster: "not_decided", Storage: "unknown"}
	mux := http.NewServeMux()
	Endpoints{Versions: func() Versions { return v }}.Register(mux)
	want := response{200, `{"etcdserver":"3.7.3","etcdcluster":"not_decided","storage":"unknown"}`, "application/json", ""}
	if got := do(t, mux, "GET", "/version"); got != want {
		t.Errorf("GET /version = %+v\nwant %+v", got, want)
	}
	v = Versions{"3.7.3", "3.7.0", "3.7.0"}
	want.body = `{"etcdserver":"3.7.3","etcdcluster":"3.7.0","storage":"3.7.0"}`
	if got := do(t, mux, "GET", "/version"); got != want {
		t.Errorf("GET /version = %+v\nwant %+v", got, want)
	}
	if got := do(t, mux, "PUT", "/version"); got.code != 405 || got.allow != "GET" {
		t.Errorf("PUT /version = %+v", got)
	}
}

func TestEndpointsRegister(t *testing.T) {
	mux := http.NewServeMux()
	Endpoints{
		Health: func(context.Context, HealthQuery) HealthStatus { return HealthStatus{Healthy: true} },
		Livez:  []Check{{Name: CheckSerializableRead, Run: func(context.Context) error { return nil }}},
		Readyz: []Check{{Name: CheckNonLearner, Run: func(context.Context) error { return nil }}},
	}.Register(mux)
	for _, p := range []string{"/health", "/livez", "/livez/serializable_read", "/readyz", "/readyz/non_learner"} {
		if got := do(t, mux, "GET", p); got.code != 200 {
			t.Errorf("GET %s = %+v", p, got)
		}
	}
	if got := do(t, mux, "GET", "/version"); got.code != 404 {
		t.Errorf("GET /version without Versions = %+v", got)
	}
}

func TestAccessControl(t *testing.T) {
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.URL.Path) })

	h := AccessControl(inner, []string{"*"}, []string{"*"})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/v3beta/kv/range", nil))
	if rec.Code != 200 || rec.Body.String() != "/v3/kv/range" {
		t.Errorf("v3beta: %d %q", rec.Code, rec.Body.String())
	}
	// etcd's headers with the default --cors.
	want := http.Header{
		"Access-Control-Allow-Methods": {"POST, GET, OPTIONS, PUT, DELETE"},
		"Access-Control-Allow-Origin":  {"*"},
		"Access-Control-Allow-Headers": {"accept, content-type, authorization"},
	}
	for k, v := range want {
		if !reflect.DeepEqual(rec.Header()[k], v) {
			t.Errorf("%s = %q, want %q", k, rec.Header()[k], v)
		}
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("OPTIONS", "/health", nil))
	if rec.Code != 200 || rec.Body.Len() != 0 {
		t.Errorf("OPTIONS: %d %q", rec.Code, rec.Body.String())
	}

	h = AccessControl(inner, []string{"http://a.example:80"}, []string{"localhost"})
	for _, tt := range []struct {
		host, origin string
		code         int
		allowOrigin  string
	}{
		{"localhost:2379", "http://a.example:80", 200, "http://a.example:80"},
		{"localhost", "http://b.example:80", 200, ""},
		{"evil.example:2379", "", http.StatusMisdirectedRequest, ""},
	} {
		req := httptest.NewRequest("GET", "/health", nil)
		req.Host = tt.host
		req.Header.Set("Origin", tt.origin)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tt.code || rec.Header().Get("Access-Control-Allow-Origin") != tt.allowOrigin {
			t.Errorf("host %q origin %q: %d, allow-origin %q", tt.host, tt.origin, rec.Code, rec.Header().Get("Access-Control-Allow-Origin"))
		}
	}
}
