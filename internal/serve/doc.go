// Package serve is the plumbing of a member's client URLs: opening their
// listeners, serving gRPC and HTTP/1.1 on one port, and the HTTP health and
// version endpoints with etcd's shapes.
//
// One port, two protocols, as etcd does with cmux: each accepted connection
// is sniffed. If its first bytes are the HTTP/2 client connection preface it
// goes to the grpc.Server, otherwise to an http.Server. Sniffing runs on the
// connection's own goroutine under a read deadline, so a client that connects
// and sends nothing delays no one and is dropped when the deadline passes.
// Over TLS (the caller wraps the listener with tls.NewListener) the same
// holds after the handshake; HTTP/2 negotiated by ALPN is treated as gRPC.
//
// Lifecycle. Server.Serve returns when its listener is closed; before
// returning it closes the connections still being sniffed, stops the HTTP
// server (gracefully, then by force after ShutdownTimeout) and waits for
// every goroutine it started. gRPC connections already handed over belong to
// the grpc.Server, whose owner stops it (Stop or GracefulStop); stopping it
// first is fine too: later HTTP/2 connections are then closed at once while
// HTTP keeps being served.
//
// The health handlers take their checks as functions and know nothing of the
// server behind them; they only give etcd's answers their shapes:
//
//	/health                    {"health":"true","reason":""}, or 503 with "false" and a reason
//	/livez, /readyz            "ok"; ?verbose lists "[+]name ok"; 503 lists "[-]name failed: reason"
//	/livez/<check>, ...        one check
//	/version                   {"etcdserver":"3.7.3","etcdcluster":"3.7.0","storage":"3.7.0"}
//
// Every one answers a method other than GET with 405 and "Allow: GET".
// AccessControl adds what etcd puts in front of all of them: CORS headers
// (--cors), the Host check for plain HTTP (--host-whitelist), and /v3beta/
// as an alias of /v3/.
//
// Not here: TLS (the caller wraps listeners), /metrics, the /v3 gateway and
// pprof (the caller's handler), and logging of failed probes (the checks can
// log; the handlers do not).
package serve
