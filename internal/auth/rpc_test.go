package auth

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	etcdauth "go.etcd.io/etcd/server/v3/auth"
	epb "go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb"
	lpb "go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb"
	apply "go.etcd.io/etcd/server/v3/etcdserver/apply"
	"go.etcd.io/etcd/server/v3/lease"
	"google.golang.org/grpc"
)

// recorder is a Checker that records the checks made and refuses those
// listed in deny.
type recorder struct {
	calls []string
	deny  map[string]bool
	admin bool
	user  string
	roles []string
}

func (r *recorder) check(c string) error {
	r.calls = append(r.calls, c)
	if r.deny[c] {
		return rpctypes.ErrGRPCPermissionDenied
	}
	return nil
}

func (r *recorder) RequireAuthInfo() error { return r.check("require") }
func (r *recorder) IsAdminPermitted() error {
	r.calls = append(r.calls, "admin")
	if !r.admin {
		return rpctypes.ErrGRPCPermissionDenied
	}
	return nil
}
func (r *recorder) IsRangePermitted(k, e []byte) error {
	return r.check(fmt.Sprintf("read %s-%s", k, e))
}
func (r *recorder) IsPutPermitted(k []byte) error { return r.check(fmt.Sprintf("put %s", k)) }
func (r *recorder) IsDeleteRangePermitted(k, e []byte) error {
	return r.check(fmt.Sprintf("delete %s-%s", k, e))
}
func (r *recorder) HasRole(role string) bool { return slices.Contains(r.roles, role) }
func (r *recorder) Username() string         { return r.user }

func put(k string, lease int64, prevKV bool) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(k), Lease: lease, PrevKv: prevKV}}}
}

func get(k, e string) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte(k), RangeEnd: []byte(e)}}}
}

func del(k, e string, prevKV bool) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte(k), RangeEnd: []byte(e), PrevKv: prevKV}}}
}

func txn(cmp []string, success, failure []*pb.RequestOp) *pb.TxnRequest {
	r := &pb.TxnRequest{Success: success, Failure: failure}
	for _, k := range cmp {
		r.Compare = append(r.Compare, &pb.Compare{Key: []byte(k)})
	}
	return r
}

func nested(t *pb.TxnRequest) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: t}}
}

func leasesOf(m map[int64][]string) LeaseKeys {
	return func(id int64) ([][]byte, bool) {
		ks, ok := m[id]
		var out [][]byte
		for _, k := range ks {
			out = append(out, []byte(k))
		}
		return out, ok
	}
}

func TestCheckTxnOrder(t *testing.T) {
	leases := leasesOf(map[int64][]string{7: {"l1", "l2"}})
	r := txn([]string{"c1", "c2"},
		[]*pb.RequestOp{
			get("g", "h"),
			put("p", 7, true),
			del("d", "e", true),
			nested(txn([]string{"nc"}, []*pb.RequestOp{put("np", 0, false)}, []*pb.RequestOp{del("nd", "", false)})),
			{}, // an empty operation is skipped
		},
		[]*pb.RequestOp{get("f", "")})
	rec := &recorder{}
	if err := CheckTxn(rec, r, leases); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"read c1-", "read c2-",
		"read g-h",
		"put p", "admin", "put l1", "put l2", "read p-",
		"read d-e", "delete d-e",
		"read nc-", "put np", "delete nd-",
		"read f-",
	}
	if !slices.Equal(rec.calls, want) {
		t.Errorf("checks\n%q\nwant\n%q", rec.calls, want)
	}

	// The first refusal ends the check, whichever branch it is in.
	rec = &recorder{deny: map[string]bool{"delete nd-": true}}
	if err := CheckTxn(rec, r, leases); err != rpctypes.ErrGRPCPermissionDenied {
		t.Errorf("nested failure branch not checked: %v", err)
	}
	if last := rec.calls[len(rec.calls)-1]; last != "delete nd-" {
		t.Errorf("checks went on after the refusal: %q", rec.calls)
	}
}

func TestCheckPut(t *testing.T) {
	leases := leasesOf(map[int64][]string{7: {"l1"}})
	for _, tt := range []struct {
		name  string
		r     *pb.PutRequest
		admin bool
		want  []string
	}{
		{"plain", &pb.PutRequest{Key: []byte("k")}, false, []string{"put k"}},
		{"prev_kv", &pb.PutRequest{Key: []byte("k"), PrevKv: true}, false, []string{"put k", "read k-"}},
		{"lease", &pb.PutRequest{Key: []byte("k"), Lease: 7}, false, []string{"put k", "admin", "put l1"}},
		{"lease, admin", &pb.PutRequest{Key: []byte("k"), Lease: 7}, true, []string{"put k", "admin"}},
		{"unknown lease", &pb.PutRequest{Key: []byte("k"), Lease: 8}, false, []string{"put k"}},
	} {
		rec := &recorder{admin: tt.admin}
		if err := CheckPut(rec, tt.r, leases); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(rec.calls, tt.want) {
			t.Errorf("%s: checks %q, want %q", tt.name, rec.calls, tt.want)
		}
	}
}

func TestCheckDeleteRange(t *testing.T) {
	rec := &recorder{}
	if err := CheckDeleteRange(rec, &pb.DeleteRangeRequest{Key: []byte("a"), RangeEnd: []byte("b"), PrevKv: true}); err != nil {
		t.Fatal(err)
	}
	// Outside a txn etcd checks the write first; inside, the read.
	if want := []string{"delete a-b", "read a-b"}; !slices.Equal(rec.calls, want) {
		t.Errorf("checks %q, want %q", rec.calls, want)
	}
}

func TestCheckLeases(t *testing.T) {
	leases := leasesOf(map[int64][]string{7: {"l1", "l2"}})
	for _, tt := range []struct {
		name  string
		check func(Checker) error
		admin bool
		want  []string
	}{
		{"grant", CheckLeaseGrant, false, []string{"require"}},
		{"revoke", func(c Checker) error { return CheckLeaseRevoke(c, 7, leases) }, false, []string{"admin", "put l1", "put l2"}},
		{"revoke, admin", func(c Checker) error { return CheckLeaseRevoke(c, 7, leases) }, true, []string{"admin"}},
		{"revoke unknown", func(c Checker) error { return CheckLeaseRevoke(c, 8, leases) }, false, nil},
		{"keepalive", func(c Checker) error { return CheckLeaseKeepAlive(c, 7, leases) }, false, []string{"require", "admin", "put l1", "put l2"}},
		{"keepalive, admin", func(c Checker) error { return CheckLeaseKeepAlive(c, 7, leases) }, true, []string{"require", "admin"}},
		{"ttl", func(c Checker) error { return CheckLeaseTimeToLive(c, &pb.LeaseTimeToLiveRequest{ID: 7}, leases) }, false, []string{"require"}},
		{"ttl with keys", func(c Checker) error {
			return CheckLeaseTimeToLive(c, &pb.LeaseTimeToLiveRequest{ID: 7, Keys: true}, leases)
		}, false, []string{"require", "admin", "read l1-", "read l2-"}},
		{"leases", func(c Checker) error { return CheckLeaseLeases(c, [][]byte{[]byte("x"), []byte("y")}) }, false, []string{"require", "admin", "read x-", "read y-"}},
	} {
		rec := &recorder{admin: tt.admin}
		if err := tt.check(rec); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(rec.calls, tt.want) {
			t.Errorf("%s: checks %q, want %q", tt.name, rec.calls, tt.want)
		}
	}
}

func TestCheckUserGetRoleGetAlarm(t *testing.T) {
	rec := &recorder{user: "u", roles: []string{"r"}}
	if err := CheckUserGet(rec, &pb.AuthUserGetRequest{Name: "u"}); err != nil {
		t.Errorf("UserGet of oneself: %v", err)
	}
	if err := CheckUserGet(rec, &pb.AuthUserGetRequest{Name: "v"}); err != rpctypes.ErrGRPCPermissionDenied {
		t.Errorf("UserGet of another: %v", err)
	}
	if err := CheckRoleGet(rec, &pb.AuthRoleGetRequest{Role: "r"}); err != nil {
		t.Errorf("RoleGet of one's role: %v", err)
	}
	if err := CheckRoleGet(rec, &pb.AuthRoleGetRequest{Role: "q"}); err != rpctypes.ErrGRPCPermissionDenied {
		t.Errorf("RoleGet of another role: %v", err)
	}
	rec = &recorder{}
	_ = CheckAlarm(rec, &pb.AlarmRequest{Action: pb.AlarmRequest_GET})
	_ = CheckAlarm(rec, &pb.AlarmRequest{Action: pb.AlarmRequest_DEACTIVATE})
	if want := []string{"require", "admin"}; !slices.Equal(rec.calls, want) {
		t.Errorf("Alarm checks %q, want %q", rec.calls, want)
	}
}

func TestWatchCancelReason(t *testing.T) {
	for err, want := range map[error]string{
		rpctypes.ErrGRPCPermissionDenied: "rpc error: code = PermissionDenied desc = etcdserver: permission denied",
		rpctypes.ErrGRPCInvalidAuthToken: "rpc error: code = Unauthenticated desc = etcdserver: invalid auth token",
		rpctypes.ErrGRPCAuthOldRevision:  "rpc error: code = InvalidArgument desc = etcdserver: revision of auth store is old",
		rpctypes.ErrGRPCUserEmpty:        "rpc error: code = InvalidArgument desc = etcdserver: user name is empty",
		rpctypes.ErrGRPCUserNotFound:     "rpc error: code = PermissionDenied desc = etcdserver: permission denied",
	} {
		if got := WatchCancelReason(err); got != want {
			t.Errorf("WatchCancelReason(%v) = %q, want %q", err, got, want)
		}
	}
}

// advisoryStore has root, and user "u" reading and writing "a" and reading
// "r/" ... "r0", with auth enabled.
func advisoryStore(t *testing.T) (*Store, Access) {
	s := NewStore(testCost, nil)
	h := mustHash(t, "pw")
	runSteps(t, s, []step{
		{"add root", userAdd("root", h), nil},
		{"grant root", grantRole("root", "root"), nil},
		{"add u", userAdd("u", h), nil},
		{"add r", roleAdd("r"), nil},
		{"grant a", func(s *Store) error {
			return s.RoleGrantPermission(&pb.AuthRoleGrantPermissionRequest{Name: "r", Perm: perm(RW, "a", "")})
		}, nil},
		{"grant r/", func(s *Store) error {
			return s.RoleGrantPermission(&pb.AuthRoleGrantPermissionRequest{Name: "r", Perm: perm(R, "r/", "r0")})
		}, nil},
		{"grant w", func(s *Store) error {
			return s.RoleGrantPermission(&pb.AuthRoleGrantPermissionRequest{Name: "r", Perm: perm(W, "w", "")})
		}, nil},
		{"grant u", grantRole("u", "r"), nil},
		{"enable", (*Store).AuthEnable, nil},
	})
	return s, s.Access(&AuthInfo{Username: "u", Revision: s.Revision()})
}

// TestAdvisories are regressions for etcd's published auth bypasses: each
// request must be refused.
func TestAdvisories(t *testing.T) {
	s, u := advisoryStore(t)
	secret := leasesOf(map[int64][]string{7: {"secret"}})
	denied := rpctypes.ErrGRPCPermissionDenied
	for _, tt := range []struct {
		name string
		err  error
		want error
	}{
		{"CVE-2026-33343: put in a nested txn", CheckTxn(u, txn(nil, []*pb.RequestOp{nested(txn(nil, []*pb.RequestOp{put("secret", 0, false)}, nil))}, nil), nil), denied},
		{"CVE-2026-33343: read in a nested else branch", CheckTxn(u, txn([]string{"a"}, nil, []*pb.RequestOp{nested(txn(nil, nil, []*pb.RequestOp{get("secret", "")}))}), nil), denied},
		{"CVE-2026-33343: compare in a nested txn", CheckTxn(u, txn(nil, []*pb.RequestOp{nested(txn([]string{"secret"}, nil, nil))}, nil), nil), denied},
		{"CVE-2026-44283: put with prev_kv on a write-only key", CheckTxn(u, txn(nil, []*pb.RequestOp{put("w", 0, true)}, nil), nil), denied},
		{"CVE-2026-44283: delete with prev_kv on a write-only key", CheckTxn(u, txn(nil, []*pb.RequestOp{del("w", "", true)}, nil), nil), denied},
		{"CVE-2026-44283: attach to a lease holding an unwritable key", CheckTxn(u, txn(nil, []*pb.RequestOp{put("a", 7, false)}, nil), secret), denied},
		{"put with prev_kv on a write-only key", CheckPut(u, &pb.PutRequest{Key: []byte("w"), PrevKv: true}, nil), denied},
		{"delete with prev_kv on a write-only key", CheckDeleteRange(u, &pb.DeleteRangeRequest{Key: []byte("w"), PrevKv: true}), denied},
		{"GHSA-xg4h-6gfc-h4m8: watch from a single permitted key", CheckWatchCreate(u, &pb.WatchCreateRequest{Key: []byte("a"), RangeEnd: []byte{0}}), denied},
		{"watch of every key", CheckWatchCreate(u, &pb.WatchCreateRequest{RangeEnd: []byte{0}}), denied},
		{"watch of a readable prefix", CheckWatchCreate(u, &pb.WatchCreateRequest{Key: []byte("r/"), RangeEnd: []byte("r0")}), nil},
		{"CVE-2023-32082: TimeToLive keys of a lease on an unreadable key", CheckLeaseTimeToLive(u, &pb.LeaseTimeToLiveRequest{ID: 7, Keys: true}, secret), denied},
		{"TimeToLive without keys", CheckLeaseTimeToLive(u, &pb.LeaseTimeToLiveRequest{ID: 7}, secret), nil},
		{"revoke a lease on an unwritable key", CheckLeaseRevoke(u, 7, secret), denied},
		{"keep alive a lease on an unwritable key", CheckLeaseKeepAlive(u, 7, secret), denied},
		{"list leases on unreadable keys", CheckLeaseLeases(u, [][]byte{[]byte("secret")}), denied},
		{"CVE-2026-33413: LeaseGrant without credentials", CheckLeaseGrant(s.Access(nil)), rpctypes.ErrGRPCUserEmpty},
		{"CVE-2026-33413: LeaseLeases without credentials", CheckLeaseLeases(s.Access(nil), nil), rpctypes.ErrGRPCUserEmpty},
		{"CVE-2026-33413: TimeToLive without credentials", CheckLeaseTimeToLive(s.Access(nil), &pb.LeaseTimeToLiveRequest{ID: 7}, secret), rpctypes.ErrGRPCUserEmpty},
		{"CVE-2026-33413: Alarm GET without credentials", CheckAlarm(s.Access(nil), &pb.AlarmRequest{}), rpctypes.ErrGRPCUserEmpty},
		{"Alarm DEACTIVATE by a user", CheckAlarm(u, &pb.AlarmRequest{Action: pb.AlarmRequest_DEACTIVATE}), denied},
		{"Compact by a user", CheckAdmin(u), denied},
		{"UserGet of root by a user", CheckUserGet(u, &pb.AuthUserGetRequest{Name: "root"}), denied},
		{"RoleGet of root by a user", CheckRoleGet(u, &pb.AuthRoleGetRequest{Role: "root"}), denied},
	} {
		if tt.err != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, tt.err, tt.want)
		}
	}
}

// TestRPCRules checks that every RPC of etcd's gRPC services has exactly
// one rule, and that each rule names a check function of this package.
func TestRPCRules(t *testing.T) {
	checks := map[string]any{
		"CheckRange": CheckRange, "CheckPut": CheckPut, "CheckDeleteRange": CheckDeleteRange, "CheckTxn": CheckTxn,
		"CheckWatchCreate": CheckWatchCreate, "CheckLeaseRevoke": CheckLeaseRevoke, "CheckLeaseKeepAlive": CheckLeaseKeepAlive,
		"CheckLeaseTimeToLive": CheckLeaseTimeToLive, "CheckLeaseLeases": CheckLeaseLeases, "CheckAlarm": CheckAlarm,
		"CheckUserGet": CheckUserGet, "CheckRoleGet": CheckRoleGet,
	}
	var methods []string
	for _, sd := range []grpc.ServiceDesc{pb.KV_ServiceDesc, pb.Watch_ServiceDesc, pb.Lease_ServiceDesc, pb.Cluster_ServiceDesc,
		pb.Maintenance_ServiceDesc, pb.Auth_ServiceDesc, lpb.Lock_ServiceDesc, epb.Election_ServiceDesc} {
		for _, m := range sd.Methods {
			methods = append(methods, "/"+sd.ServiceName+"/"+m.MethodName)
		}
		for _, s := range sd.Streams {
			methods = append(methods, "/"+sd.ServiceName+"/"+s.StreamName)
		}
	}
	seen := map[string]bool{}
	for _, r := range RPCRules {
		if seen[r.Method] {
			t.Errorf("%s: two rules", r.Method)
		}
		seen[r.Method] = true
		if !slices.Contains(methods, r.Method) {
			t.Errorf("%s: no such RPC", r.Method)
		}
		if r.Check != "" && checks[r.Check] == nil {
			t.Errorf("%s: unknown check %q", r.Method, r.Check)
		}
		needsCheck := func(k RuleKind) bool {
			return k == RuleKeys || k == RuleAdminOrKeys || k == RuleAdminOrSelf || k == RuleAdminOrMember || k == RuleByAction
		}
		if (needsCheck(r.API) || needsCheck(r.Apply)) != (r.Check != "") {
			t.Errorf("%s: rule kinds %d/%d with check %q", r.Method, r.API, r.Apply, r.Check)
		}
		if r.Source == "" {
			t.Errorf("%s: no source", r.Method)
		}
	}
	for _, m := range methods {
		if !seen[m] {
			t.Errorf("%s: no rule", m)
		}
	}
	if r, ok := RuleFor(pb.KV_Compact_FullMethodName); !ok || r.API != RuleAdmin {
		t.Errorf("RuleFor(Compact) = %+v, %v", r, ok)
	}
	if _, ok := RuleFor("/etcdserverpb.KV/Nope"); ok {
		t.Error("RuleFor found a rule for an unknown method")
	}
}

// fakeLessor is the one method of etcd's Lessor its auth checks call.
type fakeLessor struct {
	lease.Lessor
	leases map[lease.LeaseID]*lease.Lease
}

func (f fakeLessor) Lookup(id lease.LeaseID) *lease.Lease { return f.leases[id] }

func randTxn(rng *rand.Rand, depth int) *pb.TxnRequest {
	r := &pb.TxnRequest{}
	for range rng.IntN(3) {
		r.Compare = append(r.Compare, &pb.Compare{Key: randKey(rng), RangeEnd: randEnd(rng)})
	}
	ops := func() []*pb.RequestOp {
		var ops []*pb.RequestOp
		for range rng.IntN(3) {
			switch rng.IntN(5) {
			case 0:
				ops = append(ops, &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: randKey(rng), RangeEnd: randEnd(rng)}}})
			case 1:
				ops = append(ops, &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: randKey(rng), Lease: rng.Int64N(3), PrevKv: rng.IntN(2) == 0}}})
			case 2:
				ops = append(ops, &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: randKey(rng), RangeEnd: randEnd(rng), PrevKv: rng.IntN(2) == 0}}})
			case 3:
				if depth < 3 {
					ops = append(ops, &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: randTxn(rng, depth+1)}})
				}
			case 4:
				ops = append(ops, &pb.RequestOp{})
			}
		}
		return ops
	}
	r.Success, r.Failure = ops(), ops()
	return r
}

// TestCheckTxnMatchesEtcd compares CheckTxn with etcd's apply-layer check
// (etcd@v3.7.3:server/etcdserver/apply/auth.go CheckTxnAuth) on random
// nested txns, permissions and leases.
func TestCheckTxnMatchesEtcd(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var allowed, denied int
	for i := range 300 {
		perms := randPerms(rng, 1+rng.IntN(6))
		as, s := etcdWithPerms(t, perms)
		lessor := fakeLessor{leases: map[lease.LeaseID]*lease.Lease{}}
		keys := map[int64][]string{}
		for id := range int64(2) {
			l := lease.NewLease(lease.LeaseID(id+1), 60)
			for range rng.IntN(3) {
				k := string(randKey(rng))
				l.SetLeaseItem(lease.LeaseItem{Key: k})
				keys[id+1] = append(keys[id+1], k)
			}
			lessor.leases[l.ID] = l
		}
		leases := leasesOf(keys)
		for range 20 {
			r := randTxn(rng, 0)
			user := []string{"u", "u", "u", "root", "nobody"}[rng.IntN(5)]
			rev := s.Revision() - uint64(rng.IntN(2))
			got := CheckTxn(s.Access(&AuthInfo{Username: user, Revision: rev}), r, leases)
			want := etcdGRPCError(apply.CheckTxnAuth(as, &etcdauth.AuthInfo{Username: user, Revision: rev}, lessor, r))
			if !sameError(got, want) {
				t.Fatalf("case %d: perms %v, leases %v, user %s@%d, txn %v: CheckTxn = %v, etcd %v", i, perms, keys, user, rev, r, got, want)
			}
			if got == nil {
				allowed++
			} else {
				denied++
			}
		}
	}
	if allowed < 100 || denied < 100 {
		t.Fatalf("%d allowed, %d denied: generator is lopsided", allowed, denied)
	}
}
