package applier

import (
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/stratakv/strata/internal/auth"
	"github.com/stratakv/strata/internal/clock"
)

// TestAuthenticateTwiceInOneEntry: two Authenticate requests of one entry
// share its index; with one prefix (which no member proposes) the second
// is refused, and a prefix no simple-token member makes is refused too:
// nothing in an entry stops the member.
func TestAuthenticateTwiceInOneEntry(t *testing.T) {
	tokens := auth.NewSimpleTokens(auth.TokenConfig{Clock: clock.NewManual(time.Unix(0, 0))})
	store := auth.NewStore(auth.DefaultBcryptCost, tokens)
	e := newTestEnv(t, Config{Auth: store, Tokens: tokens})
	hash, err := auth.HashPassword("pw", 4)
	if err != nil {
		t.Fatal(err)
	}
	e.apply(e.entry(
		&pb.InternalRaftRequest{AuthUserAdd: &pb.AuthUserAddRequest{Name: "root", HashedPassword: hash}},
		&pb.InternalRaftRequest{AuthUserGrantRole: &pb.AuthUserGrantRoleRequest{User: "root", Role: "root"}},
		&pb.InternalRaftRequest{AuthEnable: &pb.AuthEnableRequest{}},
	))
	for id := uint64(1); id <= 3; id++ {
		if err := e.res[id].Err; err != nil {
			t.Fatalf("setup request %d: %v", id, err)
		}
	}
	authn := func(prefix string) *pb.InternalRaftRequest {
		return &pb.InternalRaftRequest{Authenticate: &pb.InternalAuthenticateRequest{Name: "root", SimpleToken: prefix}}
	}
	e.apply(e.entry(authn("abcdefghijklmnop"), authn("abcdefghijklmnop"), authn(""), authn("abcdefghijklmnoq")))
	first, ok := e.res[4].Resp.(*pb.AuthenticateResponse)
	if !ok || e.res[4].Err != nil {
		t.Fatalf("first Authenticate: %+v", e.res[4])
	}
	if info, ok := tokens.Info(first.Token, store.Revision()); !ok || info.Username != "root" {
		t.Fatalf("token %q does not verify: %+v, %v", first.Token, info, ok)
	}
	for id := uint64(5); id <= 6; id++ {
		if err := e.res[id].Err; err != rpctypes.ErrGRPCAuthFailed {
			t.Errorf("request %d: %v, want %v", id, err, rpctypes.ErrGRPCAuthFailed)
		}
	}
	if r, ok := e.res[7].Resp.(*pb.AuthenticateResponse); !ok || r.Token == first.Token {
		t.Errorf("a second prefix in the same entry: %+v", e.res[7])
	}
}
