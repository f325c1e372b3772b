package auth

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/authpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	etcdauth "go.etcd.io/etcd/server/v3/auth"
	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// The oracle: etcd v3.7.3's own auth store (go.etcd.io/etcd/server/v3/auth),
// run over an in-memory backend, answers the same questions as this
// package's code, so that tests compare behaviour with etcd's rather than
// with a restatement of it.

// memAuthBackend is an in-memory etcdauth.AuthBackend. Like etcd's bbolt
// schema, it stores users and roles encoded, so that every read returns a
// fresh copy.
type memAuthBackend struct {
	mu       sync.RWMutex
	enabled  bool
	revision uint64
	users    map[string][]byte
	roles    map[string][]byte
}

var _ etcdauth.AuthBackend = (*memAuthBackend)(nil)

func newMemAuthBackend() *memAuthBackend {
	return &memAuthBackend{users: map[string][]byte{}, roles: map[string][]byte{}}
}

func (b *memAuthBackend) CreateAuthBuckets()            {}
func (b *memAuthBackend) ForceCommit()                  {}
func (b *memAuthBackend) ReadTx() etcdauth.AuthReadTx   { return memTx{b} }
func (b *memAuthBackend) BatchTx() etcdauth.AuthBatchTx { return memTx{b} }
func (b *memAuthBackend) GetUser(n string) *authpb.User {
	return locked(b, func(t memTx) *authpb.User { return t.UnsafeGetUser(n) })
}
func (b *memAuthBackend) GetRole(n string) *authpb.Role {
	return locked(b, func(t memTx) *authpb.Role { return t.UnsafeGetRole(n) })
}
func (b *memAuthBackend) GetAllUsers() []*authpb.User { return locked(b, memTx.UnsafeGetAllUsers) }
func (b *memAuthBackend) GetAllRoles() []*authpb.Role { return locked(b, memTx.UnsafeGetAllRoles) }

func locked[T any](b *memAuthBackend, f func(memTx) T) T {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return f(memTx{b})
}

type memTx struct{ b *memAuthBackend }

func (t memTx) Lock()    { t.b.mu.Lock() }
func (t memTx) Unlock()  { t.b.mu.Unlock() }
func (t memTx) RLock()   { t.b.mu.RLock() }
func (t memTx) RUnlock() { t.b.mu.RUnlock() }

func (t memTx) UnsafeReadAuthEnabled() bool         { return t.b.enabled }
func (t memTx) UnsafeReadAuthRevision() uint64      { return t.b.revision }
func (t memTx) UnsafeSaveAuthEnabled(e bool)        { t.b.enabled = e }
func (t memTx) UnsafeSaveAuthRevision(r uint64)     { t.b.revision = r }
func (t memTx) UnsafePutUser(u *authpb.User)        { t.b.users[string(u.Name)] = mustMarshal(u) }
func (t memTx) UnsafePutRole(r *authpb.Role)        { t.b.roles[string(r.Name)] = mustMarshal(r) }
func (t memTx) UnsafeDeleteUser(n string)           { delete(t.b.users, n) }
func (t memTx) UnsafeDeleteRole(n string)           { delete(t.b.roles, n) }
func (t memTx) UnsafeGetUser(n string) *authpb.User { return decodeOrNil[authpb.User](t.b.users[n]) }
func (t memTx) UnsafeGetRole(n string) *authpb.Role { return decodeOrNil[authpb.Role](t.b.roles[n]) }

func (t memTx) UnsafeGetAllUsers() []*authpb.User {
	var us []*authpb.User
	for _, n := range sortedKeys(t.b.users) {
		us = append(us, t.UnsafeGetUser(n))
	}
	return us
}

func (t memTx) UnsafeGetAllRoles() []*authpb.Role {
	var rs []*authpb.Role
	for _, n := range sortedKeys(t.b.roles) {
		rs = append(rs, t.UnsafeGetRole(n))
	}
	return rs
}

func mustMarshal(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

func decodeOrNil[T any, P interface {
	*T
	proto.Message
}](b []byte) P {
	if b == nil {
		return nil
	}
	m := P(new(T))
	if err := proto.Unmarshal(b, m); err != nil {
		panic(err)
	}
	return m
}

// newEtcdStore returns etcd's auth store over an empty in-memory backend,
// with the token provider the --auth-token value tokenOpts selects ("" for
// none).
func newEtcdStore(t testing.TB, tokenOpts string) etcdauth.AuthStore {
	t.Helper()
	tp, err := etcdauth.NewTokenProvider(zap.NewNop(), tokenOpts, func(uint64) <-chan struct{} {
		c := make(chan struct{})
		close(c)
		return c
	}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	as := etcdauth.NewAuthStore(zap.NewNop(), newMemAuthBackend(), tp, bcrypt.MinCost)
	t.Cleanup(func() { as.Close() })
	return as
}

// etcdToGRPC maps etcd's auth errors to what its gRPC layer sends
// (etcd@v3.7.3:server/etcdserver/api/v3rpc/util.go toGRPCErrorMap and
// togRPCError).
var etcdToGRPC = map[error]error{
	etcdauth.ErrRootUserNotExist:     rpctypes.ErrGRPCRootUserNotExist,
	etcdauth.ErrRootRoleNotExist:     rpctypes.ErrGRPCRootRoleNotExist,
	etcdauth.ErrUserAlreadyExist:     rpctypes.ErrGRPCUserAlreadyExist,
	etcdauth.ErrUserEmpty:            rpctypes.ErrGRPCUserEmpty,
	etcdauth.ErrUserNotFound:         rpctypes.ErrGRPCUserNotFound,
	etcdauth.ErrRoleAlreadyExist:     rpctypes.ErrGRPCRoleAlreadyExist,
	etcdauth.ErrRoleNotFound:         rpctypes.ErrGRPCRoleNotFound,
	etcdauth.ErrRoleEmpty:            rpctypes.ErrGRPCRoleEmpty,
	etcdauth.ErrAuthFailed:           rpctypes.ErrGRPCAuthFailed,
	etcdauth.ErrPermissionNotGiven:   rpctypes.ErrGRPCPermissionNotGiven,
	etcdauth.ErrPermissionDenied:     rpctypes.ErrGRPCPermissionDenied,
	etcdauth.ErrRoleNotGranted:       rpctypes.ErrGRPCRoleNotGranted,
	etcdauth.ErrPermissionNotGranted: rpctypes.ErrGRPCPermissionNotGranted,
	etcdauth.ErrAuthNotEnabled:       rpctypes.ErrGRPCAuthNotEnabled,
	etcdauth.ErrInvalidAuthToken:     rpctypes.ErrGRPCInvalidAuthToken,
	etcdauth.ErrInvalidAuthMgmt:      rpctypes.ErrGRPCInvalidAuthMgmt,
	etcdauth.ErrAuthOldRevision:      rpctypes.ErrGRPCAuthOldRevision,
}

func etcdGRPCError(err error) error {
	if err == nil {
		return nil
	}
	if g, ok := etcdToGRPC[err]; ok {
		return g
	}
	return status.Error(codes.Unknown, err.Error())
}

// sameError reports whether two errors are the same gRPC status.
func sameError(a, b error) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	sa, _ := status.FromError(a)
	sb, _ := status.FromError(b)
	return sa.Code() == sb.Code() && sa.Message() == sb.Message()
}

// etcdAuthInfo resolves a token with etcd's store, as a request carrying
// it in its metadata would be.
func etcdAuthInfo(as etcdauth.AuthStore, token string) (*etcdauth.AuthInfo, error) {
	return as.AuthInfoFromCtx(incomingToken(context.Background(), token))
}

func incomingToken(ctx context.Context, token string) context.Context {
	return metadata.NewIncomingContext(ctx, metadata.Pairs(rpctypes.TokenFieldNameGRPC, token))
}
