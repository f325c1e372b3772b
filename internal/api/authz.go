package api

import (
	"context"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/stratakv/strata/internal/auth"
	"github.com/stratakv/strata/internal/serve"
)

// AuthConfig is the member's auth, as the API needs it: the replicated
// store (the state machine applies the Auth requests to it) and the
// member's token provider.
type AuthConfig struct {
	Store  *auth.Store
	Tokens auth.TokenProvider
	// BcryptCost hashes the passwords of UserAdd and UserChangePassword
	// before they are proposed (--bcrypt-cost).
	BcryptCost int
	// WaitApplied returns once the local state machine has applied index
	// (a simple token is known to a member once the Authenticate entry
	// that issued it applied there).
	WaitApplied func(ctx context.Context, index uint64) error
}

// tokenWait bounds how long a request waits for the entry that issued its
// simple token to apply on this member.
const tokenWait = 5 * time.Second

// authz resolves and checks callers. The zero value (no store) lets
// everything through, as a member with auth disabled does.
type authz struct{ cfg AuthConfig }

func (z authz) enabled() bool { return z.cfg.Store != nil && z.cfg.Store.IsAuthEnabled() }

// delegatedUserKey carries, on the member's own in-process client only, the
// common name of the caller it acts for.
const delegatedUserKey = "strata-delegated-user"

// callerKey holds a request's resolved credentials in its context.
type callerKey struct{}

// resolve finds the credentials of a request with auth enabled, as etcd's
// AuthInfoFromCtx does: the token in its metadata (which must verify:
// else ErrGRPCInvalidAuthToken), or failing a token the common name of the
// client certificate its TLS connection verified. nil: none.
func (z authz) resolve(ctx context.Context) (*auth.AuthInfo, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if tok, ok := auth.TokenFromMetadata(md); ok {
		if info, ok := z.cfg.Tokens.Info(tok, z.cfg.Store.Revision()); ok {
			return &info, nil
		}
		// A simple token issued by an entry this member has not applied
		// yet: wait for it, then look again.
		if idx, ok := auth.SimpleTokenIndex(tok); ok && z.cfg.WaitApplied != nil {
			wctx, cancel := context.WithTimeout(ctx, tokenWait)
			err := z.cfg.WaitApplied(wctx, idx)
			cancel()
			if err == nil {
				if info, ok := z.cfg.Tokens.Info(tok, z.cfg.Store.Revision()); ok {
					return &info, nil
				}
			}
		}
		return nil, rpctypes.ErrGRPCInvalidAuthToken
	}
	if p, ok := peer.FromContext(ctx); ok {
		if _, ok := p.AuthInfo.(serve.InProcessInfo); ok {
			// The member's own client, acting for a caller known by
			// its certificate's common name (delegate): only an
			// in-process connection is believed.
			if names := md.Get(delegatedUserKey); len(names) == 1 && names[0] != "" {
				return &auth.AuthInfo{Username: names[0], Revision: z.cfg.Store.Revision()}, nil
			}
			return nil, nil
		}
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			for _, chain := range ti.State.VerifiedChains {
				if len(chain) > 0 && chain[0].Subject.CommonName != "" {
					return &auth.AuthInfo{Username: chain[0].Subject.CommonName, Revision: z.cfg.Store.Revision()}, nil
				}
			}
		}
	}
	return nil, nil
}

// withCaller resolves ctx's credentials once per call (the interceptors)
// and keeps them in the context. With auth enabled, a token that does not
// verify fails every RPC but Authenticate, whose credential is the
// password.
func (z authz) withCaller(ctx context.Context, method string) (context.Context, error) {
	if !z.enabled() {
		return ctx, nil
	}
	info, err := z.resolve(ctx)
	if err != nil {
		if method == pb.Auth_Authenticate_FullMethodName {
			return ctx, nil
		}
		return ctx, err
	}
	return context.WithValue(ctx, callerKey{}, info), nil
}

// caller returns the credentials withCaller found, nil for none.
func caller(ctx context.Context) *auth.AuthInfo {
	info, _ := ctx.Value(callerKey{}).(*auth.AuthInfo)
	return info
}

// access is what ctx's caller may do now; with auth disabled, everything.
func (z authz) access(ctx context.Context) auth.Access {
	if z.cfg.Store == nil {
		return auth.Access{}
	}
	return z.cfg.Store.Access(caller(ctx))
}

// accessNow resolves ctx's credentials afresh and returns what the caller
// may do now. Streams use it: as in etcd, each watch create and each
// keep-alive is checked as of its own arrival, with the token (and auth
// revision) valid then, not when the stream opened; a token that no longer
// verifies fails that request only.
func (z authz) accessNow(ctx context.Context) (auth.Access, *auth.AuthInfo, error) {
	if !z.enabled() {
		return auth.Access{}, nil, nil
	}
	info, err := z.resolve(ctx)
	if err != nil {
		return auth.Access{}, nil, err
	}
	return z.cfg.Store.Access(info), info, nil
}

// revision is the auth revision now (0 with auth disabled).
func (z authz) revision() uint64 {
	if !z.enabled() {
		return 0
	}
	return z.cfg.Store.Revision()
}

// header is the RequestHeader a client's proposal carries, so that the
// state machine checks it as it applies: the caller's user and auth
// revision (empty without credentials). Every client proposal carries
// one; the member's own proposals do not.
func (z authz) header(ctx context.Context) *pb.RequestHeader {
	h := &pb.RequestHeader{}
	if info := caller(ctx); info != nil {
		h.Username, h.AuthRevision = info.Username, info.Revision
	}
	return h
}

// recheck fails a read whose caller's token predates a change to users or
// roles made while it was served (etcd's check after a Range).
func (z authz) recheck(ctx context.Context) error { return z.recheckInfo(caller(ctx)) }

func (z authz) recheckInfo(info *auth.AuthInfo) error {
	if !z.enabled() {
		return nil
	}
	if info != nil && info.Revision != 0 && info.Revision != z.cfg.Store.Revision() {
		return rpctypes.ErrGRPCAuthOldRevision
	}
	return nil
}
