package e2e

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	epb "go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb"
	lpb "go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/stratakv/strata/internal/tlsconf/certtest"
)

// The principals of the auth matrix, in the order each case runs them:
// the one allowed everything last, so that a case's state change (a
// compaction, a revoke, a user added) happens once, after the refusals.
var principals = []string{"anonymous", "wrong", "right", "root"}

// authFixture is one cluster set up for the matrix: users root, alice
// (the right permissions: read-write on /a/, read on /b/) and bob (the
// wrong ones: read on /c/), keys under /a/, /b/ and /c/, leases attached to
// keys of /a/ (la, la3) and of /c/ (lc).
type authFixture struct {
	conn          *grpc.ClientConn
	tokens        map[string]string // principal → token
	la, la3, lc   int64
	memberID, rev int64
}

func authCtx(ctx context.Context, token string) context.Context {
	if token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, rpctypes.TokenFieldNameGRPC, token)
}

func setupAuthFixture(t *testing.T, m *Member) *authFixture {
	t.Helper()
	ctx := t.Context()
	conn, err := grpc.NewClient(m.Endpoint(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	kv, ls, au := pb.NewKVClient(conn), pb.NewLeaseClient(conn), pb.NewAuthClient(conn)
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{"/a/k", "/b/k", "/c/k"} {
		must(kv.Put(ctx, &pb.PutRequest{Key: []byte(k), Value: []byte("v")}))
	}
	f := &authFixture{conn: conn, tokens: map[string]string{}}
	for _, l := range []struct {
		id  *int64
		key string
	}{{&f.la, "/a/lk"}, {&f.la3, "/a/lk3"}, {&f.lc, "/c/lk"}} {
		g, err := ls.LeaseGrant(ctx, &pb.LeaseGrantRequest{TTL: 600})
		if err != nil {
			t.Fatal(err)
		}
		*l.id = g.ID
		must(kv.Put(ctx, &pb.PutRequest{Key: []byte(l.key), Value: []byte("v"), Lease: g.ID}))
	}
	perm := func(role, key string, typ authpb.Permission_Type) {
		must(au.RoleGrantPermission(ctx, &pb.AuthRoleGrantPermissionRequest{Name: role,
			Perm: &authpb.Permission{PermType: typ, Key: []byte(key), RangeEnd: []byte(prefixEnd(key))}}))
	}
	for _, u := range []string{"root", "alice", "bob"} {
		must(au.UserAdd(ctx, &pb.AuthUserAddRequest{Name: u, Password: u + "-pw"}))
	}
	for _, r := range []string{"root", "rw-a", "r-c"} {
		must(au.RoleAdd(ctx, &pb.AuthRoleAddRequest{Name: r}))
	}
	perm("rw-a", "/a/", authpb.READWRITE)
	perm("rw-a", "/b/", authpb.READ)
	perm("r-c", "/c/", authpb.READ)
	must(au.UserGrantRole(ctx, &pb.AuthUserGrantRoleRequest{User: "root", Role: "root"}))
	must(au.UserGrantRole(ctx, &pb.AuthUserGrantRoleRequest{User: "alice", Role: "rw-a"}))
	must(au.UserGrantRole(ctx, &pb.AuthUserGrantRoleRequest{User: "bob", Role: "r-c"}))
	must(au.AuthEnable(ctx, &pb.AuthEnableRequest{}))
	for p, u := range map[string]string{"root": "root", "right": "alice", "wrong": "bob"} {
		r, err := au.Authenticate(ctx, &pb.AuthenticateRequest{Name: u, Password: u + "-pw"})
		if err != nil {
			t.Fatal(err)
		}
		f.tokens[p] = r.Token
	}
	st, err := pb.NewMaintenanceClient(conn).Status(authCtx(ctx, f.tokens["root"]), &pb.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	f.memberID = int64(st.Header.MemberId)
	return f
}

func prefixEnd(p string) string {
	b := []byte(p)
	b[len(b)-1]++
	return string(b)
}

// authCase is one RPC of the matrix: it returns a summary of the answer
// that must be equal on etcd and strata (never IDs or revisions that
// depend on the implementation), or the error.
type authCase struct {
	name string
	call func(ctx context.Context, f *authFixture) (string, error)
}

func authCases() []authCase {
	kv := func(f *authFixture) pb.KVClient { return pb.NewKVClient(f.conn) }
	ls := func(f *authFixture) pb.LeaseClient { return pb.NewLeaseClient(f.conn) }
	cl := func(f *authFixture) pb.ClusterClient { return pb.NewClusterClient(f.conn) }
	mt := func(f *authFixture) pb.MaintenanceClient { return pb.NewMaintenanceClient(f.conn) }
	au := func(f *authFixture) pb.AuthClient { return pb.NewAuthClient(f.conn) }
	ok := func(_ any, err error) (string, error) { return "ok", err }
	keys := func(r *pb.RangeResponse, err error) (string, error) {
		if err != nil {
			return "", err
		}
		var ks []string
		for _, kv := range r.Kvs {
			ks = append(ks, string(kv.Key))
		}
		return fmt.Sprintf("count=%d keys=%v", r.Count, ks), nil
	}
	put := func(k string) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(k), Value: []byte("t")}}}
	}
	watch := func(ctx context.Context, f *authFixture, r *pb.WatchCreateRequest) (string, error) {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		w, err := pb.NewWatchClient(f.conn).Watch(ctx)
		if err != nil {
			return "", err
		}
		if err := w.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: r}}); err != nil {
			return "", err
		}
		resp, err := w.Recv()
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("created=%v canceled=%v reason=%q", resp.Created, resp.Canceled, resp.CancelReason), nil
	}
	return []authCase{
		{"KV.Range", func(ctx context.Context, f *authFixture) (string, error) {
			return keys(kv(f).Range(ctx, &pb.RangeRequest{Key: []byte("/a/k")}))
		}},
		{"KV.Range/prefix-b", func(ctx context.Context, f *authFixture) (string, error) {
			return keys(kv(f).Range(ctx, &pb.RangeRequest{Key: []byte("/b/"), RangeEnd: []byte("/b0"), Serializable: true}))
		}},
		{"KV.Range/from-key", func(ctx context.Context, f *authFixture) (string, error) {
			return keys(kv(f).Range(ctx, &pb.RangeRequest{Key: []byte("/a/"), RangeEnd: []byte{0}, CountOnly: true}))
		}},
		{"KV.Put", func(ctx context.Context, f *authFixture) (string, error) {
			return ok(kv(f).Put(ctx, &pb.PutRequest{Key: []byte("/a/p"), Value: []byte("v")}))
		}},
		{"KV.Put/read-only-prefix", func(ctx context.Context, f *authFixture) (string, error) {
			return ok(kv(f).Put(ctx, &pb.PutRequest{Key: []byte("/b/p"), Value: []byte("v")}))
		}},
		{"KV.Put/prev_kv", func(ctx context.Context, f *authFixture) (string, error) {
			r, err := kv(f).Put(ctx, &pb.PutRequest{Key: []byte("/a/k"), Value: []byte("v2"), PrevKv: true})
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("prev=%s", r.PrevKv.GetValue()), nil
		}},
		{"KV.Put/lease-of-other-keys", func(ctx context.Context, f *authFixture) (string, error) {
			return ok(kv(f).Put(ctx, &pb.PutRequest{Key: []byte("/a/l"), Value: []byte("v"), Lease: f.lc}))
		}},
		{"KV.DeleteRange", func(ctx context.Context, f *authFixture) (string, error) {
			r, err := kv(f).DeleteRange(ctx, &pb.DeleteRangeRequest{Key: []byte("/a/p")})
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("deleted=%d", r.Deleted), nil
		}},
		{"KV.Txn/read-only", func(ctx context.Context, f *authFixture) (string, error) {
			r, err := kv(f).Txn(ctx, &pb.TxnRequest{
				Compare: []*pb.Compare{{Key: []byte("/a/k"), Target: pb.Compare_VERSION, Result: pb.Compare_GREATER, TargetUnion: &pb.Compare_Version{Version: 0}}},
				Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("/b/k")}}}},
			})
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("succeeded=%v", r.Succeeded), nil
		}},
		{"KV.Txn/write", func(ctx context.Context, f *authFixture) (string, error) {
			r, err := kv(f).Txn(ctx, &pb.TxnRequest{Success: []*pb.RequestOp{put("/a/t")}})
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("succeeded=%v", r.Succeeded), nil
		}},
		{"KV.Txn/nested-write-elsewhere", func(ctx context.Context, f *authFixture) (string, error) {
			return ok(kv(f).Txn(ctx, &pb.TxnRequest{Success: []*pb.RequestOp{put("/a/n"),
				{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{Success: []*pb.RequestOp{put("/c/n")}}}}}}))
		}},
		{"KV.Txn/failure-branch-checked", func(ctx context.Context, f *authFixture) (string, error) {
			return ok(kv(f).Txn(ctx, &pb.TxnRequest{Success: []*pb.RequestOp{put("/a/s")}, Failure: []*pb.RequestOp{put("/c/f")}}))
		}},
		{"KV.Txn/delete-prev_kv", func(ctx context.Context, f *authFixture) (string, error) {
			return ok(kv(f).Txn(ctx, &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestDeleteRange{
				RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte("/b/k"), PrevKv: true}}}}}))
		}},
		{"KV.Compact", func(ctx context.Context, f *authFixture) (string, error) {
			return ok(kv(f).Compact(ctx, &pb.CompactionRequest{Revision: 2}))
		}},
		{"Watch/prefix", func(ctx context.Context, f *authFixture) (string, error) {
			return watch(ctx, f, &pb.WatchCreateRequest{Key: []byte("/a/"), RangeEnd: []byte("/a0")})
		}},
		{"Watch/from-key", func(ctx context.Context, f *authFixture) (string, error) {
			return watch(ctx, f, &pb.WatchCreateRequest{Key: []byte("/a/"), RangeEnd: []byte{0}})
		}},
		{"Watch/other-prefix", func(ctx context.Context, f *authFixture) (string, error) {
			return watch(ctx, f, &pb.WatchCreateRequest{Key: []byte("/c/k")})
		}},
		{"Lease.LeaseGrant", func(ctx context.Context, f *authFixture) (string, error) {
			return ok(ls(f).LeaseGrant(ctx, &pb.LeaseGrantRequest{TTL: 60}))
		}},
		{"Lease.LeaseTimeToLive", func(ctx context.Context, f *authFixture) (string, error) {
			r, err := ls(f).LeaseTimeToLive(ctx, &pb.LeaseTimeToLiveRequest{ID: f.la})
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("granted=%d", r.GrantedTTL), nil
		}},
		{"Lease.LeaseTimeToLive/keys-of-other-prefix", func(ctx context.Context, f *authFixture) (string, error) {
			r, err := ls(f).LeaseTimeToLive(ctx, &pb.LeaseTimeToLiveRequest{ID: f.lc, Keys: true})
			if err != nil {
				return "", err
			}
			// etcd lists a lease's keys in no particular order.
			ks := make([]string, len(r.Keys))
			for i, k := range r.Keys {
				ks[i] = string(k)
			}
			slices.Sort(ks)
			return fmt.Sprintf("keys=%q", ks), nil
		}},
		{"Lease.LeaseLeases", func(ctx context.Context, f *authFixture) (string, error) {
			return ok(ls(f).LeaseLeases(ctx, &pb.LeaseLeasesRequest{}))
		}},
		{"Lease.LeaseKeepAlive", func(ctx context.Context, f *authFixture) (string, error) {
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			s, err := ls(f).LeaseKeepAlive(ctx)
			if err != nil {
				return "", err
			}
			if err := s.Send(&pb.LeaseKeepAliveRequest{ID: f.la}); err != nil {
				return "", err
			}
			r, err := s.Recv()
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("renewed=%v", r.TTL > 0), nil
		}},
		{"Lease.LeaseRevoke", func(ctx context.Context, f *authFixture) (string, error) {
			return ok(ls(f).LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: f.la3}))
		}},
		{"Cluster.MemberList", func(ctx context.Context, f *authFixture) (string, error) {
			r, err := cl(f).MemberList(ctx, &pb.MemberListRequest{Linearizable: true})
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("members=%d", len(r.Members)), nil
		}},
		{"Cluster.MemberAdd/bad-url", func(ctx context.Context, f *authFixture) (string, error) {
			return ok(cl(f).MemberAdd(ctx, &pb.MemberAddRequest{PeerURLs: []string{"::bad"}, IsLearner: true}))
		}},
		{"Cluster.MemberRemove/unknown", func(ctx context.Context, f *authFixture) (string, error) {
			return ok(cl(f).MemberRemove(ctx, &pb.MemberRemoveRequest{ID: 0x1234}))
		}},
		{"Cluster.MemberUpdate/unknown", func(ctx context.Context, f *authFixture) (string, error) {
			return ok(cl(f).MemberUpdate(ctx, &pb.MemberUpdateRequest{ID: 0x1234, PeerURLs: []string{"http://127.0.0.1:1"}}))
		}},
		{"Cluster.MemberPromote/unknown", func(ctx context.Context, f *authFixture) (string, error) {
			return ok(cl(f).MemberPromote(ctx, &pb.MemberPromoteRequest{ID: 0x1234}))
		}},
		{"Maintenance.Alarm/get", func(ctx context.Context, f *authFixture) (string, error) {
			r, err := mt(f).Alarm(ctx, &pb.AlarmRequest{Action: pb.AlarmRequest_GET})
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("alarms=%d", len(r.Alarms)), nil
		}},
		{"Maintenance.Alarm/deactivate", func(ctx context.Context, f *authFixture) (string, error) {
			return ok(mt(f).Alarm(ctx, &pb.AlarmRequest{Action: pb.AlarmRequest_DEACTIVATE, MemberID: 0x1234, Alarm: pb.AlarmType_NOSPACE}))
		}},
		{"Maintenance.Status", func(ctx context.Context, f *authFixture) (string, error) {
			return ok(mt(f).Status(ctx, &pb.StatusRequest{}))
		}},
		{"Maintenance.Defragment", func(ctx context.Context, f *authFixture) (string, error) {
			return ok(mt(f).Defragment(ctx, &pb.DefragmentRequest{}))
		}},
		{"Maintenance.Hash", func(ctx context.Context, f *authFixture) (string, error) {
			return ok(mt(f).Hash(ctx, &pb.HashRequest{}))
		}},
		{"Maintenance.HashKV", func(ctx context.Context, f *authFixture) (string, error) {
			return ok(mt(f).HashKV(ctx, &pb.HashKVRequest{}))
		}},
		{"Maintenance.Snapshot", func(ctx context.Context, f *authFixture) (string, error) {
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			s, err := mt(f).Snapshot(ctx, &pb.SnapshotRequest{})
			if err != nil {
				return "", err
			}
			if _, err := s.Recv(); err != nil && err != io.EOF {
				return "", err
			}
			return "ok", nil
		}},
		{"Maintenance.MoveLeader/unknown", func(ctx context.Context, f *authFixture) (string, error) {
			return ok(mt(f).MoveLeader(ctx, &pb.MoveLeaderRequest{TargetID: 0x1234}))
		}},
		// (3.6, which etcd accepts and strata refuses, is compared in
		// TestDowngradeMatchesEtcd; here the target is one both refuse.)
		{"Maintenance.Downgrade/validate", func(ctx context.Context, f *authFixture) (string, error) {
			return ok(mt(f).Downgrade(ctx, &pb.DowngradeRequest{Action: pb.DowngradeRequest_VALIDATE, Version: "3.8"}))
		}},
		{"Auth.AuthStatus", func(ctx context.Context, f *authFixture) (string, error) {
			r, err := au(f).AuthStatus(ctx, &pb.AuthStatusRequest{})
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("enabled=%v", r.Enabled), nil
		}},
		{"Auth.Authenticate", func(ctx context.Context, f *authFixture) (string, error) {
			return ok(au(f).Authenticate(ctx, &pb.AuthenticateRequest{Name: "alice", Password: "alice-pw"}))
		}},
		{"Auth.Authenticate/wrong-password", func(ctx context.Context, f *authFixture) (string, error) {
			return ok(au(f).Authenticate(ctx, &pb.AuthenticateRequest{Name: "alice", Password: "nope"}))
		}},
		{"Auth.UserGet/self", func(ctx context.Context, f *authFixture) (string, error) {
			r, err := au(f).UserGet(ctx, &pb.AuthUserGetRequest{Name: "alice"})
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("roles=%v", r.Roles), nil
		}},
		{"Auth.UserList", func(ctx context.Context, f *authFixture) (string, error) {
			r, err := au(f).UserList(ctx, &pb.AuthUserListRequest{})
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("users=%v", r.Users), nil
		}},
		{"Auth.UserAdd", func(ctx context.Context, f *authFixture) (string, error) {
			return ok(au(f).UserAdd(ctx, &pb.AuthUserAddRequest{Name: "carol", Password: "carol-pw"}))
		}},
		{"Auth.UserChangePassword", func(ctx context.Context, f *authFixture) (string, error) {
			return ok(au(f).UserChangePassword(ctx, &pb.AuthUserChangePasswordRequest{Name: "carol", Password: "carol-pw2"}))
		}},
		{"Auth.RoleAdd", func(ctx context.Context, f *authFixture) (string, error) {
			return ok(au(f).RoleAdd(ctx, &pb.AuthRoleAddRequest{Name: "r-new"}))
		}},
		{"Auth.RoleGrantPermission", func(ctx context.Context, f *authFixture) (string, error) {
			return ok(au(f).RoleGrantPermission(ctx, &pb.AuthRoleGrantPermissionRequest{Name: "r-new",
				Perm: &authpb.Permission{PermType: authpb.READ, Key: []byte("/x")}}))
		}},
		{"Auth.RoleGet/held", func(ctx context.Context, f *authFixture) (string, error) {
			r, err := au(f).RoleGet(ctx, &pb.AuthRoleGetRequest{Role: "rw-a"})
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("perms=%d", len(r.Perm)), nil
		}},
		{"Auth.RoleList", func(ctx context.Context, f *authFixture) (string, error) {
			r, err := au(f).RoleList(ctx, &pb.AuthRoleListRequest{})
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("roles=%v", r.Roles), nil
		}},
		{"Auth.UserGrantRole", func(ctx context.Context, f *authFixture) (string, error) {
			return ok(au(f).UserGrantRole(ctx, &pb.AuthUserGrantRoleRequest{User: "carol", Role: "r-new"}))
		}},
		{"Auth.UserRevokeRole", func(ctx context.Context, f *authFixture) (string, error) {
			return ok(au(f).UserRevokeRole(ctx, &pb.AuthUserRevokeRoleRequest{Name: "carol", Role: "r-new"}))
		}},
		{"Auth.RoleRevokePermission", func(ctx context.Context, f *authFixture) (string, error) {
			return ok(au(f).RoleRevokePermission(ctx, &pb.AuthRoleRevokePermissionRequest{Role: "r-new", Key: []byte("/x")}))
		}},
		{"Auth.RoleDelete", func(ctx context.Context, f *authFixture) (string, error) {
			return ok(au(f).RoleDelete(ctx, &pb.AuthRoleDeleteRequest{Role: "r-new"}))
		}},
		{"Auth.UserDelete", func(ctx context.Context, f *authFixture) (string, error) {
			return ok(au(f).UserDelete(ctx, &pb.AuthUserDeleteRequest{Name: "carol"}))
		}},
		{"Auth.AuthEnable/again", func(ctx context.Context, f *authFixture) (string, error) {
			return ok(au(f).AuthEnable(ctx, &pb.AuthEnableRequest{}))
		}},
		{"Lock.Lock+Unlock", func(ctx context.Context, f *authFixture) (string, error) {
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			lc := lpb.NewLockClient(f.conn)
			r, err := lc.Lock(ctx, &lpb.LockRequest{Name: []byte("/a/lock")})
			if err != nil {
				return "", err
			}
			if _, err := lc.Unlock(ctx, &lpb.UnlockRequest{Key: r.Key}); err != nil {
				return "", err
			}
			return "ok", nil
		}},
		{"Election.Leader", func(ctx context.Context, f *authFixture) (string, error) {
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			return ok(epb.NewElectionClient(f.conn).Leader(ctx, &epb.LeaderRequest{Name: []byte("/a/election")}))
		}},
		{"Auth.AuthDisable", func(ctx context.Context, f *authFixture) (string, error) {
			return ok(au(f).AuthDisable(ctx, &pb.AuthDisableRequest{}))
		}},
	}
}

// authOutcome is what the matrix compares: the summary of a success, or the
// gRPC code and message of a failure.
func authOutcome(summary string, err error) string {
	if err == nil {
		return "OK " + summary
	}
	s, _ := status.FromError(err)
	return fmt.Sprintf("%s: %s", s.Code(), s.Message())
}

// TestAuthMatrixMatchesEtcd runs every RPC of etcd's API as root, as a user
// with the right permissions, as one with the wrong ones and without
// credentials, on etcd v3.7.3 and on strata set up alike, and asks for the
// same outcome, error code and text included, in every cell. The cases
// include the places etcd's recent advisories fixed: nested txns, prev_kv
// and lease attachment in a txn, a watch from a key, LeaseTimeToLive's
// key names, MemberList and Alarm without credentials.
func TestAuthMatrixMatchesEtcd(t *testing.T) {
	etcdM, subM := pair(t)
	b := needSubject(t)
	run := func(t *testing.T, m *Member) map[string]string {
		f := setupAuthFixture(t, m)
		out := map[string]string{}
		for _, c := range authCases() {
			for _, p := range principals {
				ctx, cancel := context.WithTimeout(authCtx(t.Context(), f.tokens[p]), 15*time.Second)
				out[c.name+" as "+p] = authOutcome(c.call(ctx, f))
				cancel()
			}
		}
		return out
	}
	var want, got map[string]string
	t.Run("etcd", func(t *testing.T) { want = run(t, etcdM) })
	t.Run(b.SubjectName, func(t *testing.T) { got = run(t, subM) })
	if t.Failed() {
		return
	}
	var refused, allowed int
	for _, c := range authCases() {
		for _, p := range principals {
			k := c.name + " as " + p
			if got[k] != want[k] {
				t.Errorf("%s:\n  %s: %s\n  etcd:   %s", k, b.SubjectName, got[k], want[k])
			}
			if strings.HasPrefix(want[k], "OK") {
				allowed++
			} else {
				refused++
			}
		}
	}
	t.Logf("%d cells: %d allowed, %d refused on etcd", allowed+refused, allowed, refused)
	if allowed == 0 || refused == 0 {
		t.Errorf("a matrix that allows %d and refuses %d cells checks nothing", allowed, refused)
	}
}

// TestAuthOnReaderWithCommonNames: with client mTLS, a certificate's common
// name authenticates its holder as that user (etcd's rule when a request
// carries no token). A reader that joins after auth was enabled receives
// the auth state with its snapshot and enforces the same permissions on
// what it serves: reads, watches, and writes it forwards; a simple token
// issued by a writer is accepted there. Auth survives a writer's restart.
func TestAuthOnReaderWithCommonNames(t *testing.T) {
	b := needSubject(t)
	if b.SubjectName != "strata" {
		t.Skip("runs strata's reader")
	}
	ca := certtest.NewCA(t, "ca")
	member := ca.Issue(t, "member", "member", "127.0.0.1", "localhost")
	certs := map[string]certtest.Cert{}
	for _, cn := range []string{"root", "alice", "nobody"} {
		certs[cn] = ca.Issue(t, cn, cn, "127.0.0.1")
	}
	flags := append(mutualTLSFlags(ca, member), "--snapshot-count=20")
	ms := StartCluster(t, "authr", 3, MemberConfig{Binary: b.Subject, HTTPS: true, ExtraArgs: append(slices.Clone(fastRaft), flags...)})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tlsFor := func(cn string) *tls.Config {
		kp, err := tls.LoadX509KeyPair(certs[cn].CertFile, certs[cn].KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		return &tls.Config{RootCAs: pool(t, ca.CAFile), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{kp}}
	}
	as := func(m *Member, cn string) *clientv3.Client { return newTLSEndpointClient(t, m, tlsFor(cn)) }
	root := as(ms[0], "root")
	for i := range 40 { // past --snapshot-count: the reader gets a snapshot
		if _, err := root.Put(ctx, fmt.Sprintf("/a/%02d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{"/a/k", "/c/k"} {
		if _, err := root.Put(ctx, k, "v"); err != nil {
			t.Fatal(err)
		}
	}
	for _, step := range []func() error{
		func() error { _, err := root.UserAdd(ctx, "alice", "alice-pw"); return err },
		func() error { _, err := root.RoleAdd(ctx, "rw-a"); return err },
		func() error {
			_, err := root.RoleGrantPermission(ctx, "rw-a", "/a/", "/a0", clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := root.UserGrantRole(ctx, "alice", "rw-a"); return err },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	enableAuth(ctx, t, root)
	// MemberAddAsLearner needs root: the client's certificate says so.
	r, _ := joinLearner(ctx, t, b, ms, root, "reader0", append(slices.Clone(fastRaft), append(flags, "--role=reader")...)...)

	check := func(where string, m *Member) {
		t.Helper()
		alice, nobody := as(m, "alice"), as(m, "nobody")
		if got, err := alice.Get(ctx, "/a/k"); err != nil || len(got.Kvs) != 1 {
			t.Errorf("%s: alice reads /a/k: %v, %v", where, got, err)
		}
		for name, err := range map[string]error{
			"alice reads /c/k":      second(alice.Get(ctx, "/c/k")),
			"alice writes /c/x":     second(alice.Put(ctx, "/c/x", "v")),
			"nobody reads /a/k":     second(nobody.Get(ctx, "/a/k")),
			"alice lists the users": second(alice.UserList(ctx)),
		} {
			if !errors.Is(err, rpctypes.ErrPermissionDenied) {
				t.Errorf("%s: %s: %v, want %v", where, name, err, rpctypes.ErrPermissionDenied)
			}
		}
		if _, err := alice.Put(ctx, "/a/"+where, "v"); err != nil {
			t.Errorf("%s: alice writes /a/%s: %v", where, where, err)
		}
		// Lock acts through the member's own client, as the caller.
		lctx, lcancel := context.WithTimeout(ctx, 10*time.Second)
		defer lcancel()
		if l, err := lpb.NewLockClient(alice.ActiveConnection()).Lock(lctx, &lpb.LockRequest{Name: []byte("/a/lock-" + where)}); err != nil {
			t.Errorf("%s: alice locks /a/lock: %v", where, err)
		} else if _, err := lpb.NewLockClient(alice.ActiveConnection()).Unlock(lctx, &lpb.UnlockRequest{Key: l.Key}); err != nil {
			t.Errorf("%s: alice unlocks: %v", where, err)
		}
		if _, err := lpb.NewLockClient(nobody.ActiveConnection()).Lock(lctx, &lpb.LockRequest{Name: []byte("/a/lock-" + where)}); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("%s: nobody locks /a/lock: %v, want permission denied", where, err)
		}
		// The name the member's own client carries for such a caller is
		// not believed from the network: the caller stays "nobody", who
		// is no user.
		forged := metadata.AppendToOutgoingContext(lctx, "strata-delegated-user", "root")
		if _, err := pb.NewAuthClient(nobody.ActiveConnection()).UserList(forged, &pb.AuthUserListRequest{}); status.Convert(err).Message() != rpctypes.ErrorDesc(rpctypes.ErrGRPCUserNotFound) {
			t.Errorf("%s: nobody claiming to be root over the network: %v", where, err)
		}
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		wr := <-alice.Watch(wctx, "/c/", clientv3.WithPrefix())
		// client/v3 reports the refusal as a canceled response whose
		// error is the server's reason.
		if !wr.Canceled || wr.Err() == nil || !strings.Contains(wr.Err().Error(), "permission denied") {
			t.Errorf("%s: alice watches /c/: canceled %v, reason %q, err %v", where, wr.Canceled, wr.CancelReason, wr.Err())
		}
	}
	check("reader", r)
	check("writer", ms[1])

	// A simple token issued on a writer is honoured by the reader.
	w := pb.NewAuthClient(as(ms[0], "nobody").ActiveConnection())
	tok, err := w.Authenticate(ctx, &pb.AuthenticateRequest{Name: "alice", Password: "alice-pw"})
	if err != nil {
		t.Fatal(err)
	}
	rkv := pb.NewKVClient(as(r, "nobody").ActiveConnection())
	if got, err := rkv.Range(authCtx(ctx, tok.Token), &pb.RangeRequest{Key: []byte("/a/k")}); err != nil || got.Count != 1 {
		t.Errorf("the reader with alice's token from a writer: %v, %v", got, err)
	}
	if _, err := rkv.Range(authCtx(ctx, "bogus.1"), &pb.RangeRequest{Key: []byte("/a/k")}); status.Convert(err).Message() != rpctypes.ErrorDesc(rpctypes.ErrGRPCInvalidAuthToken) {
		t.Errorf("the reader with a bogus token: %v, want %v", err, rpctypes.ErrGRPCInvalidAuthToken)
	}

	// The peer URL serves members only what they ask each other: the
	// member list, open as etcd's GET /members, and forwarded promotions,
	// checked again (the caller's token travels with them).
	mkp, err := tls.LoadX509KeyPair(member.CertFile, member.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	peerConn, err := grpc.NewClient("127.0.0.1:"+strconv.Itoa(ms[0].PeerPort), grpc.WithTransportCredentials(credentials.NewTLS(
		&tls.Config{RootCAs: pool(t, ca.CAFile), ServerName: "127.0.0.1", Certificates: []tls.Certificate{mkp}, MinVersion: tls.VersionTLS12})))
	if err != nil {
		t.Fatal(err)
	}
	defer peerConn.Close()
	pc := pb.NewClusterClient(peerConn)
	if l, err := pc.MemberList(ctx, &pb.MemberListRequest{}); err != nil || len(l.Members) != 4 {
		t.Errorf("peer MemberList: %v, %v", l, err)
	}
	if _, err := pc.MemberRemove(ctx, &pb.MemberRemoveRequest{ID: 1}); status.Code(err) != codes.Unimplemented {
		t.Errorf("peer MemberRemove: %v, want Unimplemented", err)
	}
	if _, err := pc.MemberPromote(ctx, &pb.MemberPromoteRequest{ID: 1}); status.Convert(err).Message() != rpctypes.ErrorDesc(rpctypes.ErrGRPCUserEmpty) {
		t.Errorf("peer MemberPromote without credentials: %v, want %v", err, rpctypes.ErrGRPCUserEmpty)
	}

	// Auth state is durable: a restarted writer still enforces it.
	if err := ms[1].Stop(); err != nil {
		t.Fatal(err)
	}
	if err := ms[1].Restart(); err != nil {
		t.Fatal(err)
	}
	check("restarted", ms[1])
	rootOn := func(m *Member) *clientv3.Client { return as(m, "root") }
	put, err := root.Put(ctx, "/a/last", "v")
	if err != nil {
		t.Fatal(err)
	}
	requireEqualHashKV(ctx, t, []*clientv3.Client{rootOn(ms[0]), rootOn(ms[1]), rootOn(ms[2]), rootOn(r)}, put.Header.Revision)
}

func second[T any](_ T, err error) error { return err }

// enableAuth adds user root (password root-pw) with the root role through
// c and enables auth.
func enableAuth(ctx context.Context, t *testing.T, c *clientv3.Client) {
	t.Helper()
	if _, err := c.UserAdd(ctx, "root", "root-pw"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.UserGrantRole(ctx, "root", "root"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AuthEnable(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestAuthJWTMatchesEtcd: with etcd's --auth-token=jwt flags and the same
// RSA key pair, strata issues JWTs with etcd's claims (username, revision,
// exp) and algorithm, accepts them, and refuses a tampered one as etcd
// does; both refuse each other's tokens only if the keys differ, so a token
// issued by etcd verifies on strata with the same key.
func TestAuthJWTMatchesEtcd(t *testing.T) {
	dir := t.TempDir()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	privFile, pubFile := filepath.Join(dir, "jwt.key"), filepath.Join(dir, "jwt.pub")
	if err := os.WriteFile(privFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600); err != nil {
		t.Fatal(err)
	}
	etcdM, subM := pair(t, "--auth-token=jwt,pub-key="+pubFile+",priv-key="+privFile+",sign-method=RS256,ttl=10m")
	type result struct {
		header, claims map[string]any
		token          string
		outcomes       []string
	}
	run := func(t *testing.T, m *Member) result {
		f := setupAuthFixture(t, m)
		tok := f.tokens["right"]
		parts := strings.Split(tok, ".")
		if len(parts) != 3 {
			t.Fatalf("token %q is not a JWT", tok)
		}
		var res result
		res.token = tok
		for i, dst := range []*map[string]any{&res.header, &res.claims} {
			raw, err := base64.RawURLEncoding.DecodeString(parts[i])
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(raw, dst); err != nil {
				t.Fatal(err)
			}
		}
		tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"username":"root","revision":99,"exp":9999999999}`)) + "." + parts[2]
		kv := pb.NewKVClient(f.conn)
		for _, tk := range []string{tok, tampered} {
			res.outcomes = append(res.outcomes, authOutcome(keysOf(kv.Range(authCtx(t.Context(), tk), &pb.RangeRequest{Key: []byte("/a/k")}))))
		}
		return res
	}
	var want, got result
	t.Run("etcd", func(t *testing.T) { want = run(t, etcdM) })
	t.Run("subject", func(t *testing.T) { got = run(t, subM) })
	if t.Failed() {
		return
	}
	if !maps.Equal(got.header, want.header) {
		t.Errorf("JWT header %v, etcd %v", got.header, want.header)
	}
	if len(got.claims) != len(want.claims) || got.claims["username"] != "alice" || want.claims["username"] != "alice" {
		t.Errorf("JWT claims %v, etcd %v", got.claims, want.claims)
	}
	for k := range want.claims {
		if _, ok := got.claims[k]; !ok {
			t.Errorf("JWT lacks etcd's claim %q", k)
		}
	}
	if !slices.Equal(got.outcomes, want.outcomes) {
		t.Errorf("token, tampered token: %v, etcd %v", got.outcomes, want.outcomes)
	}
	// Same key: etcd's token verifies on strata (its revision may differ,
	// but not its signature).
	conn, err := grpc.NewClient(subM.Endpoint(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = pb.NewKVClient(conn).Range(authCtx(t.Context(), want.token), &pb.RangeRequest{Key: []byte("/a/k")})
	if s := status.Convert(err).Message(); s == rpctypes.ErrorDesc(rpctypes.ErrGRPCInvalidAuthToken) {
		t.Errorf("etcd's token with the same key is refused by strata: %v", err)
	}
}

func keysOf(r *pb.RangeResponse, err error) (string, error) {
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("count=%d", r.Count), nil
}

// authSessionScript is an etcdctl session over auth: users and roles set up
// before auth is enabled, then the same commands as root, as a user with
// permissions on /app/, with a wrong password and without credentials.
func authSessionScript() []ctlStep {
	root, alice := "--user=root:root-pw", "--user=alice:alice-pw"
	return []ctlStep{
		ctl("user", "add", "root", "--new-user-password=root-pw"),
		ctl("user", "add", "alice", "--new-user-password=alice-pw"),
		ctl("user", "add", "ci", "--no-password"),
		ctl("role", "add", "app"),
		ctl("role", "grant-permission", "app", "readwrite", "/app/", "--prefix"),
		ctl("role", "grant-permission", "app", "read", "/ro/", "--prefix"),
		ctl("role", "grant-permission", "app", "write", "/wo", "/wp"),
		ctl("user", "grant-role", "alice", "app"),
		ctl("user", "list"),
		ctl("user", "get", "alice"),
		ctl("user", "get", "alice", "--detail"),
		ctl("role", "list"),
		ctl("role", "get", "app"),
		ctl("role", "get", "app", "-w", "json"),
		ctl("auth", "enable"),
		ctl("auth", "status"),
		ctl(root, "auth", "status", "-w", "json"),
		ctl("put", "/app/a", "1"),
		ctl(root, "put", "/app/a", "1"),
		ctl(alice, "put", "/app/b", "2"),
		ctl(alice, "get", "/app/", "--prefix"),
		ctl(alice, "get", "/ro/x"),
		ctl(alice, "put", "/ro/x", "1"),
		ctl(alice, "put", "/x", "1"),
		ctl(alice, "get", "/x"),
		ctl(alice, "get", "", "--from-key"),
		ctl(alice, "put", "/wo", "1"),
		ctl(alice, "get", "/wo"),
		ctl(alice, "del", "/app/b", "--prev-kv"),
		ctl(alice, "txn"),
		ctl("--user=alice:wrong", "get", "/app/a"),
		ctl("--user=nobody:x", "get", "/app/a"),
		ctl("--user=ci:x", "get", "/app/a"),
		ctl(alice, "member", "list", "-w", "json"),
		ctl(alice, "alarm", "list"),
		ctl(alice, "user", "list"),
		ctl(alice, "role", "get", "app"),
		ctl(alice, "user", "get", "alice"),
		ctl(alice, "user", "get", "root"),
		ctl(alice, "compaction", "1"),
		ctl(alice, "defrag"),
		ctl(alice, "endpoint", "hashkv", "-w", "json"),
		ctl(root, "role", "revoke-permission", "app", "/ro/", "--prefix"),
		ctl(root, "user", "revoke-role", "alice", "app"),
		ctl(alice, "get", "/app/a"),
		ctl(root, "user", "delete", "root"),
		ctl(root, "user", "revoke-role", "root", "root"),
		ctl(alice, "auth", "disable"),
		ctl(root, "auth", "disable"),
		ctl("get", "/app/a"),
		ctl("user", "delete", "alice"),
		ctl("role", "delete", "app"),
		ctl("user", "list"),
	}
}

// TestEtcdctlAuthSessionMatchesEtcd runs authSessionScript with etcdctl
// against etcd v3.7.3 and strata and requires the same stdout, stderr and
// exit code at every step.
func TestEtcdctlAuthSessionMatchesEtcd(t *testing.T) {
	b := needSubject(t)
	etcd, sub := pair(t)
	runCtlSession(t, b, etcd, sub, authSessionScript())
}

// TestAuthStreamsRecheckLikeEtcd: on a watch stream and a keep-alive stream
// opened with alice's token, each request is checked with the auth state
// of its own arrival, as in etcd: an unrelated change to roles does not
// outdate a simple token, a changed password invalidates it for the next
// request on the open stream. Outcomes equal etcd v3.7.3's.
func TestAuthStreamsRecheckLikeEtcd(t *testing.T) {
	etcdM, subM := pair(t)
	b := needSubject(t)
	run := func(t *testing.T, m *Member) []string {
		f := setupAuthFixture(t, m)
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		actx := authCtx(ctx, f.tokens["right"])
		root := pb.NewAuthClient(f.conn)
		rctx := authCtx(ctx, f.tokens["root"])
		w, err := pb.NewWatchClient(f.conn).Watch(actx)
		if err != nil {
			t.Fatal(err)
		}
		ka, err := pb.NewLeaseClient(f.conn).LeaseKeepAlive(actx)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		step := func(label string) {
			if err := w.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{Key: []byte("/a/"), RangeEnd: []byte("/a0")}}}); err != nil {
				t.Fatal(err)
			}
			resp, err := w.Recv()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprintf("%s: watch created=%v canceled=%v reason=%q", label, resp.Created, resp.Canceled, resp.CancelReason))
			if err := ka.Send(&pb.LeaseKeepAliveRequest{ID: f.la}); err != nil {
				out = append(out, label+": keep-alive send: "+err.Error())
				return
			}
			kr, err := ka.Recv()
			out = append(out, label+": keep-alive "+authOutcome(fmt.Sprintf("renewed=%v", kr.GetTTL() > 0), err))
		}
		step("fresh")
		if _, err := root.RoleAdd(rctx, &pb.AuthRoleAddRequest{Name: "unrelated"}); err != nil {
			t.Fatal(err)
		}
		step("after an unrelated role change")
		if _, err := root.UserChangePassword(rctx, &pb.AuthUserChangePasswordRequest{Name: "alice", Password: "new-pw"}); err != nil {
			t.Fatal(err)
		}
		step("after alice's password changed")
		return out
	}
	var want, got []string
	t.Run("etcd", func(t *testing.T) { want = run(t, etcdM) })
	t.Run(b.SubjectName, func(t *testing.T) { got = run(t, subM) })
	if !slices.Equal(got, want) {
		t.Errorf("%s:\n  %s\netcd:\n  %s", b.SubjectName, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	t.Logf("etcd:\n  %s", strings.Join(want, "\n  "))
}
