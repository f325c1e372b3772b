package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"
)

// ctlStep is one command of a scripted etcdctl session.
type ctlStep struct {
	args  []string
	stdin string
	// cols are the comma-separated columns of simple output to normalise
	// (see compare.go for why each is implementation-defined).
	cols []int
	// proto decodes -w protobuf stdout into this message type; headers are
	// then normalised and the message compared as text.
	proto func() proto.Message
	// http, instead of running etcdctl, GETs this path on the client URL
	// and compares status code and body.
	http string
}

func ctl(args ...string) ctlStep { return ctlStep{args: args} }

func ctlIn(stdin string, args ...string) ctlStep { return ctlStep{args: args, stdin: stdin} }

func ctlCols(cols []int, args ...string) ctlStep { return ctlStep{args: args, cols: cols} }

// Session limits: both servers run with these, so the limit errors are
// reachable with small requests.
const (
	sessionMaxTxnOps      = 4
	sessionMaxRequestSize = 4096
)

// Simple-output columns holding implementation-defined values.
var (
	// endpoint status: endpoint, ID, version, storage version, db size,
	// in use, % not in use, quota, is leader, is learner, raft term,
	// raft index, raft applied index, errors, downgrade target, enabled.
	statusCols = []int{1, 4, 5, 6, 10, 11, 12}
	// member list: ID, status, name, peer URLs, client URLs, is learner.
	memberCols = []int{0}
	// endpoint hashkv: endpoint, hash, hash revision.
	hashCols = []int{1}
)

// sessionScript is the etcdctl session. Revisions are noted where later
// steps depend on them; both servers start at revision 1.
func sessionScript() []ctlStep {
	big := strings.Repeat("x", sessionMaxRequestSize+1)
	return []ctlStep{
		// Empty store.
		ctl("get", "0"),
		ctl("get", "--prefix", "", "-w", "json"),
		// put
		ctl("put", "foo", "bar"),                                 // rev 2
		ctl("put", "foo", "baz", "--prev-kv"),                    // rev 3
		ctl("put", "foo", "--ignore-value"),                      // rev 4
		ctl("put", "missing", "--ignore-value"),                  // key not found
		ctl("put", "foo", "qux", "--ignore-lease", "-w", "json"), // rev 5
		ctl("put", "missing", "v", "--ignore-lease"),             // key not found
		ctl("put", "", "x"),                                      // key is not provided
		ctl("put", "k", "v", "--lease=1234"),                     // lease not found
		ctl("put", "foo", "val", "--ignore-value"),               // client-side usage error
		ctl("put", "a1", "5"),                                    // rev 6
		ctl("put", "a2", "3"),                                    // rev 7
		ctl("put", "a3", "9"),                                    // rev 8
		ctl("put", "a4", "1"),                                    // rev 9
		ctl("put", "a5", "3"),                                    // rev 10
		ctl("put", "b1", "x"),                                    // rev 11
		ctl("put", "b2", "y", "-w", "fields"),                    // rev 12
		ctl("put", "c", "z", "--prev-kv", "-w", "json"),          // rev 13
		ctl("put", "a3", "10", "--prev-kv", "-w", "json"),        // rev 14
		{args: []string{"put", "p", "pb", "-w", "protobuf"}, proto: func() proto.Message { return &pb.PutResponse{} }}, // rev 15
		// get
		ctl("get", "foo"),
		ctl("get", "foo", "-w", "json"),
		ctl("get", "foo", "-w", "fields"),
		ctl("--hex", "get", "foo", "-w", "fields"),
		ctl("--hex", "get", "foo"),
		{args: []string{"get", "a", "--prefix", "-w", "protobuf"}, proto: func() proto.Message { return &pb.RangeResponse{} }},
		ctl("get", "a", "--prefix"),
		ctl("get", "a", "--prefix", "--limit=2"),
		ctl("get", "a", "--prefix", "--limit=2", "-w", "json"),
		ctl("get", "a", "--prefix", "--limit=2", "-w", "fields"),
		ctl("get", "--from-key", "b"),
		ctl("get", "--from-key", "b", "--keys-only"),
		ctl("get", "--from-key", ""),
		ctl("get", "a1", "a4"),
		ctl("get", ""),
		ctl("get"),
		ctl("get", "nokey", "-w", "json"),
		ctl("get", "a", "--prefix", "--sort-by=VALUE", "--order=DESCEND"),
		ctl("get", "a", "--prefix", "--sort-by=VALUE", "--order=ASCEND", "--limit=3"),
		ctl("get", "a", "--prefix", "--sort-by=VALUE"),
		ctl("get", "a", "--prefix", "--sort-by=CREATE", "--order=DESCEND"),
		ctl("get", "a", "--prefix", "--sort-by=MODIFY", "--order=DESCEND", "--limit=2", "-w", "json"),
		ctl("get", "a", "--prefix", "--sort-by=VERSION", "--order=DESCEND"),
		ctl("get", "a", "--prefix", "--order=DESCEND"),
		ctl("get", "a", "--prefix", "--sort-by=BOGUS"),
		ctl("get", "a", "--prefix", "--keys-only"),
		ctl("get", "a", "--prefix", "--keys-only", "-w", "json"),
		ctl("get", "a", "--prefix", "--count-only"),
		ctl("get", "a", "--prefix", "--count-only", "-w", "json"),
		ctl("get", "a", "--prefix", "--count-only", "-w", "fields"),
		ctl("get", "a", "--prefix", "--print-value-only"),
		ctl("get", "a", "--prefix", "--min-mod-rev=8", "--max-mod-rev=10"),
		ctl("get", "a", "--prefix", "--min-create-rev=7", "--max-create-rev=8", "-w", "json"),
		ctl("get", "foo", "--rev=3"),
		ctl("get", "foo", "--rev=3", "-w", "json"),
		ctl("get", "a", "--prefix", "--rev=8"),
		ctl("get", "foo", "--rev=1"),
		ctl("get", "foo", "--rev=100"),
		ctl("get", "foo", "--consistency=s", "-w", "json"),
		ctl("get", "a", "--prefix", "--consistency=s", "--limit=1"),
		// del
		ctl("del", "a1"),                                         // rev 16
		ctl("del", "nokey"),                                      // no revision
		ctl("del", "nokey", "-w", "json"),                        // no revision
		ctl("del", "a", "--prefix", "--prev-kv"),                 // rev 17
		ctl("del", "--prev-kv", "b1", "b2", "-w", "json"),        // rev 18
		ctl("put", "x1", "1"),                                    // rev 19
		ctl("put", "x2", "2"),                                    // rev 20
		ctl("del", "--from-key", "x", "--prev-kv", "-w", "json"), // rev 21
		ctl("del", "--from-key", "zz"),
		ctl("del", ""),
		ctl("get", "--from-key", "", "-w", "json"),
		// txn (stdin form). Compares, blank line, success ops, blank line,
		// failure ops, blank line.
		ctlIn("value(\"foo\") = \"qux\"\nversion(\"foo\") = \"4\"\n\nput t1 v1\nget foo\n\nput t2 v2\n\n", "txn"),                                      // rev 22
		ctlIn("value(\"foo\") = \"nope\"\n\nput t1 v1\n\nput t2 v2\nget t --prefix\n\n", "txn", "-w", "json"),                                          // rev 23
		ctlIn("create(\"nokey\") = \"0\"\nversion(\"nokey\") < \"1\"\nmod(\"nokey\") = \"0\"\n\nput n1 1\n\nput n2 2\n\n", "txn"),                      // rev 24
		ctlIn("value(\"nokey\") = \"\"\n\nput n3 3\n\nput n4 4\n\n", "txn", "-w", "json"),                                                              // rev 25 (value compare on a missing key is false)
		ctlIn("value(\"nokey\") != \"x\"\n\nput n5 5\n\nput n6 6\n\n", "txn"),                                                                          // rev 26
		ctlIn("mod(\"foo\") > \"0\"\ncreate(\"foo\") < \"3\"\n\ndel n --prefix\nget n --prefix\n\n\n", "txn", "-w", "json"),                            // rev 27
		ctlIn("version(\"t1\") = \"2\"\n\n\nget t --prefix --keys-only\nget foo\n\n", "txn"),                                                           // read-only
		ctlIn("mod(\"foo\") > \"0\"\n\nput d1 1\nput d1 2\n\n\n", "txn"),                                                                               // duplicate key
		ctlIn("\nput d1 1\ndel d --prefix\n\n\n", "txn"),                                                                                               // put inside deleted range
		ctlIn("\ndel d --prefix\ndel d1\n\n\n", "txn"),                                                                                                 // rev 28: overlapping deletes are allowed
		ctlIn("\nput o1 1\nput o2 2\nput o3 3\nput o4 4\nput o5 5\n\n\n", "txn"),                                                                       // too many ops
		ctlIn("c1(\"a\") = \"1\"\nc2(\"b\") = \"1\"\nc3(\"c\") = \"1\"\nc4(\"d\") = \"1\"\nc5(\"e\") = \"1\"\n\n\n\n", "txn"),                          // malformed compare (client side)
		ctlIn("version(\"a\") = \"0\"\nversion(\"b\") = \"0\"\nversion(\"c\") = \"0\"\nversion(\"d\") = \"0\"\nversion(\"e\") = \"0\"\n\n\n\n", "txn"), // too many compares
		ctlIn("\nput \"\" v\n\n\n", "txn"),                                                                                                             // empty key
		ctlIn("value(\"foo\") = \"qux\"\n\nput i1 1\n\nput i2 2\n\n", "txn", "-i"),                                                                     // rev 29
		ctlIn("value(\"foo\") = \"qux\"\n\nput i3 1\n", "txn"),                                                                                         // EOF inside the script
		ctl("get", "--from-key", "", "-w", "json"),
		// Request size.
		ctl("put", "big", big),
		ctl("get", "big"),
		// Compaction.
		ctl("compaction", "5"),
		ctl("compaction", "5"),
		ctl("compaction", "3"),
		ctl("compaction", "1000"),
		ctl("get", "foo", "--rev=4"),
		ctl("get", "foo", "--rev=5", "-w", "json"),
		ctl("get", "--from-key", "", "--rev=6", "-w", "json"),
		ctl("compaction", "--physical", "8"),
		ctl("get", "foo", "--rev=7"),
		ctl("get", "--from-key", "", "--rev=8", "--keys-only"),
		ctl("put", "after", "compaction", "-w", "json"), // rev 30
		ctl("compaction", "30"),
		ctl("get", "--from-key", "", "-w", "json"),
		// Cluster and maintenance views.
		ctlCols(statusCols, "endpoint", "status"),
		ctl("endpoint", "status", "-w", "json"),
		ctl("endpoint", "status", "-w", "table"),
		ctl("endpoint", "status", "-w", "fields"),
		ctl("endpoint", "health"),
		ctl("endpoint", "health", "-w", "json"),
		ctl("endpoint", "health", "-w", "table"),
		ctl("endpoint", "health", "-w", "fields"),
		ctlCols(hashCols, "endpoint", "hashkv"),
		ctl("endpoint", "hashkv", "-w", "json"),
		ctl("endpoint", "hashkv", "--rev=29", "-w", "json"),
		ctlCols(memberCols, "member", "list"),
		ctl("member", "list", "-w", "json"),
		ctl("member", "list", "-w", "table"),
		ctl("alarm", "list"),
		ctl("alarm", "list", "-w", "json"),
		ctl("version"),
		{http: "/version"},
		{http: "/health"},
		{http: "/health?serializable=true"},
		{http: "/livez"},
		{http: "/livez?verbose"},
		{http: "/livez/serializable_read"},
		{http: "/readyz"},
		// (Not /readyz?verbose: etcd 3.7.3 lists its four checks in map
		// order, differently from one call to the next.)
		{http: "/readyz?exclude=linearizable_read"},
		{http: "/readyz/data_corruption"},
		{http: "/readyz/nope"},
	}
}

// TestEtcdctlSessionMatchesEtcd runs sessionScript with etcdctl against a
// fresh etcd and a fresh subject started with the same flags, and requires
// the same stdout, stderr and exit code for every step after normalisation
// (compare.go lists exactly what is normalised).
func TestEtcdctlSessionMatchesEtcd(t *testing.T) {
	b := needSubject(t)
	etcd, sub := pair(t,
		"--max-txn-ops="+strconv.Itoa(sessionMaxTxnOps),
		"--max-request-bytes="+strconv.Itoa(sessionMaxRequestSize))
	runCtlSession(t, b, etcd, sub, sessionScript())
}

// runCtlSession runs steps against etcd and sub and requires equal
// normalised results for every step.
func runCtlSession(t *testing.T, b *Binaries, etcd, sub *Member, steps []ctlStep) {
	t.Helper()
	const maxMismatches = 15
	mismatches := 0
	transcript := newTranscript(t)
	for i, st := range steps {
		var we, ws string
		var err error
		if st.http != "" {
			we, err = httpGet(etcd, st.http)
			if err != nil {
				t.Fatalf("step %d: etcd: GET %s: %v", i, st.http, err)
			}
			ws, err = httpGet(sub, st.http)
			if err != nil {
				ws = "error: " + err.Error()
			}
		} else {
			var wg sync.WaitGroup
			var re, rs Result
			var errE, errS error
			wg.Add(2)
			go func() { defer wg.Done(); re, errE = runCtlStep(b, etcd, st) }()
			go func() { defer wg.Done(); rs, errS = runCtlStep(b, sub, st) }()
			wg.Wait()
			if errE != nil {
				t.Fatalf("step %d: etcd: %v", i, errE)
			}
			if errS != nil {
				t.Fatalf("step %d: %s: %v", i, b.SubjectName, errS)
			}
			we = renderCtl(etcd, st, re)
			ws = renderCtl(sub, st, rs)
		}
		transcript.add(st.describe(), we)
		if d := Diff("etcd", we, b.SubjectName, ws); d != "" {
			mismatches++
			t.Errorf("step %d: %s\n%s", i, st.describe(), d)
			if mismatches >= maxMismatches {
				t.Fatalf("stopping after %d mismatching steps (of %d)", mismatches, len(steps))
			}
		}
	}
	t.Logf("%d steps, %d mismatching", len(steps), mismatches)
}

func (st ctlStep) describe() string {
	if st.http != "" {
		return "GET " + st.http
	}
	var b strings.Builder
	b.WriteString("etcdctl")
	for _, a := range st.args {
		if len(a) > 40 {
			a = a[:20] + fmt.Sprintf("…(%d bytes)", len(a))
		}
		if a == "" || strings.ContainsAny(a, " \"'") {
			a = strconv.Quote(a)
		}
		b.WriteString(" " + a)
	}
	if st.stdin != "" {
		fmt.Fprintf(&b, " <<< %q", st.stdin)
	}
	return b.String()
}

func runCtlStep(b *Binaries, m *Member, st ctlStep) (Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return Etcdctl(ctx, b.Etcdctl, []string{m.Endpoint()}, st.stdin, st.args...)
}

// renderCtl turns a step's normalised result into the text that is compared.
func renderCtl(m *Member, st ctlStep, r Result) string {
	n := NewNormaliser(m).WithSimpleCols(st.cols...)
	stdout := n.Stdout(string(r.Stdout))
	if st.proto != nil && r.ExitCode == 0 {
		msg := st.proto()
		if err := proto.Unmarshal(r.Stdout, msg); err != nil {
			stdout = fmt.Sprintf("(not a %T: %v) %q\n", msg, err, r.Stdout)
		} else {
			NormaliseHeaders(msg)
			stdout = "(decoded protobuf)\n" + ProtoText(msg)
		}
	}
	return fmt.Sprintf("exit code %d\n--- stdout\n%s\n--- stderr\n%s\n", r.ExitCode, stdout, n.Text(string(r.Stderr)))
}

func httpGet(m *Member, path string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.ClientURL()+path, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("status %d\ncontent-type %s\n%s\n", resp.StatusCode, resp.Header.Get("Content-Type"), body), nil
}
