package auth

import (
	"slices"

	"go.etcd.io/etcd/api/v3/authpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// AuthInfo names the caller of a request: the user its token (or client
// certificate common name) names, and the auth revision the token was
// issued at. A request proposed through raft carries it in its
// RequestHeader (username, auth_revision).
type AuthInfo struct {
	Username string
	Revision uint64
}

// Checker is the permission check etcd makes for one request's caller
// (etcd@v3.7.3:server/auth/store.go isOpPermitted, IsAdminPermitted, and
// server/etcdserver/v3_server.go requireAuthInfo). Every method returns
// nil when auth is disabled. Access implements it; the Check* functions
// take it so that tests can record which checks a request makes.
type Checker interface {
	// RequireAuthInfo fails with ErrGRPCUserEmpty when the request
	// carried no credentials.
	RequireAuthInfo() error
	// IsAdminPermitted fails unless the caller holds RootRole.
	IsAdminPermitted() error
	// IsRangePermitted checks read permission on [key, rangeEnd).
	IsRangePermitted(key, rangeEnd []byte) error
	// IsPutPermitted checks write permission on key.
	IsPutPermitted(key []byte) error
	// IsDeleteRangePermitted checks write permission on [key, rangeEnd).
	IsDeleteRangePermitted(key, rangeEnd []byte) error
	// HasRole reports whether the caller holds role.
	HasRole(role string) bool
	// Username is the caller's user name, "" without credentials.
	Username() string
}

// Access is what one caller may do, as of the moment it was taken from a
// Store. It is immutable: take a fresh one for each request.
type Access struct {
	enabled bool
	current uint64     // the store's auth revision
	info    *AuthInfo  // nil: the request carried no credentials
	user    *userPerms // nil: info names no user
}

var _ Checker = Access{}

// Access returns what the caller named by info may do now. A nil info
// means the request carried no credentials (no token, no client
// certificate); a token that does not verify must be refused before
// (ErrGRPCInvalidAuthToken), as etcd's AuthInfoFromCtx does.
func (s *Store) Access(info *AuthInfo) Access {
	s.mu.RLock()
	defer s.mu.RUnlock()
	a := Access{enabled: s.mu.enabled, current: s.mu.revision}
	if info != nil {
		ai := *info
		a.info = &ai
		a.user = s.mu.perms[ai.Username]
	}
	return a
}

// Username implements Checker.
func (a Access) Username() string {
	if a.info == nil {
		return ""
	}
	return a.info.Username
}

// RequireAuthInfo implements Checker.
func (a Access) RequireAuthInfo() error {
	if a.enabled && a.info == nil {
		return rpctypes.ErrGRPCUserEmpty
	}
	return nil
}

// IsAdminPermitted implements Checker. It does not look at the token's
// revision.
func (a Access) IsAdminPermitted() error {
	switch {
	case !a.enabled:
		return nil
	case a.info == nil || a.info.Username == "":
		return rpctypes.ErrGRPCUserEmpty
	case a.user == nil:
		return rpctypes.ErrGRPCUserNotFound
	case !a.user.root:
		return rpctypes.ErrGRPCPermissionDenied
	}
	return nil
}

// HasRole implements Checker.
func (a Access) HasRole(role string) bool {
	return a.user != nil && slices.Contains(a.user.roles, role)
}

// IsRangePermitted implements Checker.
func (a Access) IsRangePermitted(key, rangeEnd []byte) error {
	return a.isOpPermitted(key, rangeEnd, authpb.Permission_READ)
}

// IsPutPermitted implements Checker.
func (a Access) IsPutPermitted(key []byte) error {
	return a.isOpPermitted(key, nil, authpb.Permission_WRITE)
}

// IsDeleteRangePermitted implements Checker.
func (a Access) IsDeleteRangePermitted(key, rangeEnd []byte) error {
	return a.isOpPermitted(key, rangeEnd, authpb.Permission_WRITE)
}

// isOpPermitted is etcd's key permission check
// (etcd@v3.7.3:server/auth/store.go isOpPermitted). A request without
// credentials is checked as user "" at revision 0, and a token issued
// before the latest change to users or roles is refused even where the
// change would not matter: the client re-authenticates and retries.
func (a Access) isOpPermitted(key, rangeEnd []byte, t authpb.Permission_Type) error {
	if !a.enabled {
		return nil
	}
	var info AuthInfo
	if a.info != nil {
		info = *a.info
	}
	switch {
	case info.Revision == 0:
		return rpctypes.ErrGRPCUserEmpty
	case info.Revision < a.current:
		return rpctypes.ErrGRPCAuthOldRevision
	case a.user == nil:
		return rpctypes.ErrGRPCPermissionDenied
	case a.user.root:
		return nil
	case a.user.perms.Allowed(key, rangeEnd, t):
		return nil
	}
	return rpctypes.ErrGRPCPermissionDenied
}
