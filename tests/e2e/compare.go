package e2e

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Normalisation.
//
// The compatibility tests require etcd and strata to print byte-identical
// stdout and stderr and to exit with the same code, after rewriting ONLY the
// values below. Each is either chosen by the test run itself or legitimately
// implementation-defined; nothing else is touched.
//
// Chosen by the run (differs between any two servers, etcd or not):
//   - the side's own client and peer addresses 127.0.0.1:<port>, which are
//     allocated per run → "<client>" and "<peer>";
//   - in etcdctl's own client-library log lines on stderr (zap JSON, logger
//     "etcd-client"): the "ts" timestamp, the "target" resolver pointer
//     (etcd-endpoints://0x…) and the LocalAddr ephemeral port: all values of
//     the etcdctl process, not of the server;
//   - "took" durations of `endpoint health` (wall-clock time).
//
// Implementation-defined (etcd derives them from things strata need not copy):
//   - response header cluster_id and member_id (etcd hashes them from peer
//     URLs, the cluster token and time) and every other spelling of a member
//     ID: endpoint status "leader" and its ID column, member list "ID";
//   - response header raft_term and status raftTerm (how many elections a
//     fresh member needs is an implementation detail);
//   - endpoint status raftIndex and raftAppliedIndex (how many raft entries
//     bootstrap and each request take: strata batches requests into entries);
//   - endpoint status dbSize, dbSizeInUse and the derived "percentage not in
//     use" (engine-specific: bbolt vs Pebble);
//   - endpoint hashkv "hash" (a digest of etcd's bbolt key layout); its
//     revision fields are still compared.
//
// Table output (-w table) is compared cell by cell: the padding of a cell
// depends on the widths of normalised values, so cells are trimmed and
// border runs collapsed before comparing.

// Replacement marks an implementation-defined or run-defined value.
const normMark = "<N>"

var (
	// JSON printer (-w json): numeric header/status fields.
	reJSONNum = regexp.MustCompile(`"(cluster_id|member_id|raft_term|leader|raftIndex|raftTerm|raftAppliedIndex|dbSize|dbSizeInUse|ID|hash)":\d+`)
	// JSON printer: endpoint health duration.
	reJSONTook = regexp.MustCompile(`"took":"[^"]*"`)
	// Fields printer (-w fields), one field per line.
	reFields = regexp.MustCompile(`(?m)^"(ClusterID|MemberID|RaftTerm|Leader|RaftIndex|RaftAppliedIndex|DBSize|DBSizeInUse|Took|Hash|ID)" : .*$`)
	// Simple printer: endpoint health.
	reHealthTook = regexp.MustCompile(`took = [0-9.]+[a-zµ]+`)
	// etcdctl defrag's "took 4.39ms".
	reDefragTook = regexp.MustCompile(`\. took [0-9.]+[a-zµ]+\.`)
	// etcdctl's client-library zap lines.
	reLogTS        = regexp.MustCompile(`"ts":"[^"]*"`)
	reLogTarget    = regexp.MustCompile(`etcd-endpoints://0x[0-9a-f]+/`)
	reLogLocalAddr = regexp.MustCompile(`LocalAddr: '127\.0\.0\.1:\d+'`)
)

// tableNormCols are the -w table columns holding implementation-defined
// values (see above).
var tableNormCols = map[string]bool{
	"ID": true, "DB SIZE": true, "IN USE": true, "PERCENTAGE NOT IN USE": true,
	"RAFT TERM": true, "RAFT INDEX": true, "RAFT APPLIED INDEX": true,
	"TOOK": true, "HASH": true,
}

// Normaliser rewrites one side's output before comparison.
type Normaliser struct {
	// Addrs maps literal strings (the side's addresses) to placeholders.
	Addrs map[string]string
	// SimpleCols lists 0-based columns of comma-separated simple output
	// (endpoint status, member list, hashkv) to replace.
	SimpleCols []int
}

// NewNormaliser returns the normaliser for one side's member.
func NewNormaliser(m *Member) Normaliser {
	return Normaliser{Addrs: map[string]string{
		m.Endpoint():                            "<client>",
		"127.0.0.1:" + strconv.Itoa(m.PeerPort): "<peer>",
	}}
}

// WithSimpleCols returns a copy that also replaces the given columns of
// comma-separated lines.
func (n Normaliser) WithSimpleCols(cols ...int) Normaliser {
	n.SimpleCols = cols
	return n
}

// Text normalises etcdctl output (stdout or stderr).
func (n Normaliser) Text(s string) string {
	for from, to := range n.Addrs {
		s = strings.ReplaceAll(s, from, to)
	}
	s = reJSONNum.ReplaceAllString(s, `"$1":`+normMark)
	s = reJSONTook.ReplaceAllString(s, `"took":"`+normMark+`"`)
	s = reFields.ReplaceAllString(s, `"$1" : `+normMark)
	s = reHealthTook.ReplaceAllString(s, "took = "+normMark)
	s = reDefragTook.ReplaceAllString(s, ". took "+normMark+".")
	s = reLogTS.ReplaceAllString(s, `"ts":"`+normMark+`"`)
	s = reLogTarget.ReplaceAllString(s, "etcd-endpoints://0x"+normMark+"/")
	s = reLogLocalAddr.ReplaceAllString(s, "LocalAddr: '"+normMark+"'")
	return normTables(s)
}

// Stdout normalises etcdctl stdout: Text plus the SimpleCols columns.
func (n Normaliser) Stdout(s string) string {
	s = n.Text(s)
	if len(n.SimpleCols) > 0 {
		lines := strings.Split(s, "\n")
		for i, l := range lines {
			if !strings.Contains(l, ", ") {
				continue
			}
			cells := strings.Split(l, ", ")
			for _, c := range n.SimpleCols {
				if c < len(cells) {
					cells[c] = normMark
				}
			}
			lines[i] = strings.Join(cells, ", ")
		}
		s = strings.Join(lines, "\n")
	}
	return s
}

// normTables rewrites box-drawn tables: border runs collapse to one rune,
// cells are trimmed, and cells under tableNormCols headers are replaced.
func normTables(s string) string {
	lines := strings.Split(s, "\n")
	var header []string
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, "┌") || strings.HasPrefix(l, "├") || strings.HasPrefix(l, "└") || strings.HasPrefix(l, "+-"):
			lines[i] = collapseRuns(l)
		case strings.HasPrefix(l, "│") || strings.HasPrefix(l, "|"):
			sep := "│"
			if strings.HasPrefix(l, "|") {
				sep = "|"
			}
			cells := strings.Split(l, sep)
			for j := range cells {
				cells[j] = strings.TrimSpace(cells[j])
			}
			// cells[0] and cells[len-1] are the empty text outside the borders.
			if header == nil || (i > 0 && strings.HasPrefix(lines[i-1], "┌")) {
				header = cells
			} else {
				for j := range cells {
					if j < len(header) && tableNormCols[header[j]] && cells[j] != "" {
						cells[j] = normMark
					}
				}
			}
			lines[i] = strings.Join(cells, " "+sep+" ")
		default:
			header = nil
		}
	}
	return strings.Join(lines, "\n")
}

func collapseRuns(l string) string {
	var b strings.Builder
	var last rune
	for _, r := range l {
		if r == last {
			continue
		}
		b.WriteRune(r)
		last = r
	}
	return b.String()
}

// NormaliseHeaders zeroes cluster_id, member_id and raft_term of every
// etcdserverpb.ResponseHeader reachable from m (including the headers of
// responses nested in a txn), in place.
func NormaliseHeaders(m proto.Message) {
	if m == nil {
		return
	}
	normHeaders(m.ProtoReflect())
}

func normHeaders(m protoreflect.Message) {
	if !m.IsValid() {
		return
	}
	if m.Descriptor().FullName() == "etcdserverpb.ResponseHeader" {
		fs := m.Descriptor().Fields()
		for _, name := range []protoreflect.Name{"cluster_id", "member_id", "raft_term"} {
			if f := fs.ByName(name); f != nil {
				m.Clear(f)
			}
		}
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := range l.Len() {
				normHeaders(l.Get(i).Message())
			}
		case fd.IsMap():
		case fd.Message() != nil:
			normHeaders(v.Message())
		}
		return true
	})
}

// ProtoText renders m for diffs (stable within one process).
func ProtoText(m proto.Message) string {
	if m == nil {
		return "<nil>\n"
	}
	return prototext.MarshalOptions{Multiline: true, Indent: "  "}.Format(m) + "\n"
}

// Diff returns a line diff of want (etcd, "-") and got (subject, "+") with
// two lines of context, or "" if they are equal.
func Diff(wantName, want, gotName, got string) string {
	if want == got {
		return ""
	}
	a := strings.Split(want, "\n")
	b := strings.Split(got, "\n")
	var out strings.Builder
	fmt.Fprintf(&out, "--- %s\n+++ %s\n", wantName, gotName)
	if len(a)*len(b) > 4_000_000 {
		fmt.Fprintf(&out, "(too long for a line diff)\n--- %s:\n%s\n+++ %s:\n%s\n", wantName, want, gotName, got)
		return out.String()
	}
	// LCS table.
	lcs := make([][]int, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	type line struct {
		op   byte
		text string
	}
	var ls []line
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			ls = append(ls, line{' ', a[i]})
			i++
			j++
		case i < len(a) && (j == len(b) || lcs[i+1][j] >= lcs[i][j+1]):
			ls = append(ls, line{'-', a[i]})
			i++
		default:
			ls = append(ls, line{'+', b[j]})
			j++
		}
	}
	const ctx = 2
	show := make([]bool, len(ls))
	for k, l := range ls {
		if l.op != ' ' {
			for d := max(0, k-ctx); d <= min(len(ls)-1, k+ctx); d++ {
				show[d] = true
			}
		}
	}
	skipped := false
	for k, l := range ls {
		if !show[k] {
			skipped = true
			continue
		}
		if skipped {
			out.WriteString("  ...\n")
			skipped = false
		}
		fmt.Fprintf(&out, "%c %s\n", l.op, l.text)
	}
	return out.String()
}
