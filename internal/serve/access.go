package serve

import (
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
)

// AccessControl wraps a client URL's HTTP handler the way etcd wraps its
// own: requests over plain HTTP must name a host in hostWhitelist (a
// defence against DNS rebinding; 421 otherwise), CORS headers are added for
// origins in cors, OPTIONS requests are answered 200 without reaching h,
// and /v3beta/ paths are served as /v3/. "*" in, or an empty, list allows
// everything; the lists are --cors and --host-whitelist.
func AccessControl(h http.Handler, cors, hostWhitelist []string) http.Handler {
	allowAllOrigins := len(cors) == 0 || slices.Contains(cors, "*")
	allowAllHosts := len(hostWhitelist) == 0 || slices.Contains(hostWhitelist, "*")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v3beta/") {
			r.URL.Path = "/v3/" + strings.TrimPrefix(r.URL.Path, "/v3beta/")
		}
		if r.TLS == nil && !allowAllHosts {
			if host := hostname(r); !slices.Contains(hostWhitelist, host) {
				http.Error(w, fmt.Sprintf("strata received the request, but host %q is not in --host-whitelist; add it, or use TLS", host),
					http.StatusMisdirectedRequest)
				return
			}
		}
		switch origin := r.Header.Get("Origin"); {
		case allowAllOrigins:
			addCORSHeaders(w, "*")
		case slices.Contains(cors, origin):
			addCORSHeaders(w, origin)
		}
		if r.Method == http.MethodOptions {
			w.WriteHeader(http.StatusOK)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func addCORSHeaders(w http.ResponseWriter, origin string) {
	w.Header().Add("Access-Control-Allow-Methods", "POST, GET, OPTIONS, PUT, DELETE")
	w.Header().Add("Access-Control-Allow-Origin", origin)
	w.Header().Add("Access-Control-Allow-Headers", "accept, content-type, authorization")
}

// hostname is the request's Host without its port.
func hostname(r *http.Request) string {
	host := r.Host
	if host == "" && r.URL != nil {
		host = r.URL.Host
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		return h
	}
	return host
}
