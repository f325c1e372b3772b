package applier

import (
	"errors"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"

	"github.com/stratakv/strata/internal/auth"
)

// keyMetaAuth holds the auth state (auth.Store.Marshal): the enabled flag,
// users, roles and the auth revision. Absent: auth never configured.
var keyMetaAuth = []byte("m/auth")

// Auth requests change the auth store (Config.Auth), whose bytes are
// written to keyMetaAuth in the same batch. A request that carries a
// RequestHeader came from a client: with auth enabled it is checked, as it
// applies, against the user and auth revision in its header (etcd's
// authApplierV3); one without a header is the member's own (lease expiry,
// auto compaction, alarms) and is not checked, as etcd runs those as root.

// loadAuth makes the store reflect the auth state recorded in r.
func (a *Applier) loadAuth(r Reader) error {
	if a.cfg.Auth == nil {
		return nil
	}
	v, err := r.Get(keyMetaAuth)
	switch {
	case errors.Is(err, ErrNotFound):
		v = a.emptyAuth
	case err != nil:
		return err
	}
	if err := a.cfg.Auth.Unmarshal(v); err != nil {
		return fmt.Errorf("%w: %s: %v", errCorruptValue, keyMetaAuth, err)
	}
	return nil
}

// isAuthRequest reports whether r is one of the Auth service's requests.
func isAuthRequest(r *pb.InternalRaftRequest) bool {
	return r.AuthEnable != nil || r.AuthDisable != nil || r.AuthStatus != nil || r.Authenticate != nil ||
		r.AuthUserAdd != nil || r.AuthUserDelete != nil || r.AuthUserGet != nil || r.AuthUserList != nil ||
		r.AuthUserChangePassword != nil || r.AuthUserGrantRole != nil || r.AuthUserRevokeRole != nil ||
		r.AuthRoleAdd != nil || r.AuthRoleDelete != nil || r.AuthRoleGet != nil || r.AuthRoleList != nil ||
		r.AuthRoleGrantPermission != nil || r.AuthRoleRevokePermission != nil
}

// needsAdmin reports whether an Auth request needs RootRole when it applies
// (etcd's needAdminPermission).
func needsAdmin(r *pb.InternalRaftRequest) bool {
	return r.AuthEnable != nil || r.AuthDisable != nil || r.AuthUserAdd != nil || r.AuthUserDelete != nil ||
		r.AuthUserChangePassword != nil || r.AuthUserGrantRole != nil || r.AuthUserRevokeRole != nil ||
		r.AuthUserList != nil || r.AuthRoleAdd != nil || r.AuthRoleDelete != nil || r.AuthRoleList != nil ||
		r.AuthRoleGrantPermission != nil || r.AuthRoleRevokePermission != nil
}

// caller is the permission check of a client request's caller, or nil for
// the member's own requests.
func (a *Applier) caller(r *pb.InternalRaftRequest) auth.Checker {
	if a.cfg.Auth == nil || r.Header == nil || !a.cfg.Auth.IsAuthEnabled() {
		return nil // with auth disabled every check passes
	}
	return a.cfg.Auth.Access(&auth.AuthInfo{Username: r.Header.Username, Revision: r.Header.AuthRevision})
}

// checkKV makes the key checks of a client's write as it applies: Put,
// DeleteRange, Txn (every branch, nested txns included) and LeaseRevoke.
func (t *txnCtx) checkKV(c auth.Checker, r *pb.InternalRaftRequest) error {
	leases := func(id int64) ([][]byte, bool) {
		if _, ok, err := getLease(t.r, id, nil); err != nil || !ok {
			return nil, false
		}
		keys, err := leaseKeys(t.r, id)
		if err != nil {
			return nil, false
		}
		return keys, true
	}
	switch {
	case r.Put != nil:
		return auth.CheckPut(c, r.Put, leases)
	case r.DeleteRange != nil:
		return auth.CheckDeleteRange(c, r.DeleteRange)
	case r.Txn != nil:
		return auth.CheckTxn(c, r.Txn, leases)
	case r.LeaseRevoke != nil:
		return auth.CheckLeaseRevoke(c, r.LeaseRevoke.ID, leases)
	}
	return nil
}

// applyAuth applies an Auth request at raft index idx. A refusal is the
// request's result and changes nothing; a change is written to b.
func (a *Applier) applyAuth(b Batch, r *pb.InternalRaftRequest, idx uint64) (proto.Message, error) {
	s := a.cfg.Auth
	if s == nil {
		return nil, ErrUnsupportedRequest
	}
	if c := a.caller(r); c != nil {
		if needsAdmin(r) {
			if err := c.IsAdminPermitted(); err != nil {
				return nil, authRejection{err}
			}
		}
		if r.AuthUserGet != nil {
			if err := auth.CheckUserGet(c, r.AuthUserGet); err != nil {
				return nil, authRejection{err}
			}
		}
		if r.AuthRoleGet != nil {
			if err := auth.CheckRoleGet(c, r.AuthRoleGet); err != nil {
				return nil, authRejection{err}
			}
		}
	}
	var (
		resp    proto.Message
		err     error
		changed = true
	)
	switch {
	case r.AuthEnable != nil:
		resp, err = &pb.AuthEnableResponse{}, s.AuthEnable()
	case r.AuthDisable != nil:
		s.AuthDisable()
		resp = &pb.AuthDisableResponse{}
	case r.AuthStatus != nil:
		resp, changed = s.AuthStatus(), false
	case r.Authenticate != nil:
		changed = false
		var rev uint64
		if rev, err = s.Authenticate(r.Authenticate.Name); err == nil && a.cfg.Tokens != nil {
			var tok string
			tok, err = a.cfg.Tokens.Assign(r.Authenticate.Name, rev, auth.TokenSeed{Prefix: r.Authenticate.SimpleToken, Index: idx})
			resp = &pb.AuthenticateResponse{Token: tok}
		}
	case r.AuthUserAdd != nil:
		resp, err = &pb.AuthUserAddResponse{}, s.UserAdd(r.AuthUserAdd)
	case r.AuthUserDelete != nil:
		resp, err = &pb.AuthUserDeleteResponse{}, s.UserDelete(r.AuthUserDelete)
	case r.AuthUserChangePassword != nil:
		resp, err = &pb.AuthUserChangePasswordResponse{}, s.UserChangePassword(r.AuthUserChangePassword)
	case r.AuthUserGrantRole != nil:
		resp, err = &pb.AuthUserGrantRoleResponse{}, s.UserGrantRole(r.AuthUserGrantRole)
	case r.AuthUserRevokeRole != nil:
		resp, err = &pb.AuthUserRevokeRoleResponse{}, s.UserRevokeRole(r.AuthUserRevokeRole)
	case r.AuthUserGet != nil:
		resp, err = s.UserGet(r.AuthUserGet)
		changed = false
	case r.AuthUserList != nil:
		resp, changed = s.UserList(), false
	case r.AuthRoleAdd != nil:
		resp, err = &pb.AuthRoleAddResponse{}, s.RoleAdd(r.AuthRoleAdd)
	case r.AuthRoleDelete != nil:
		resp, err = &pb.AuthRoleDeleteResponse{}, s.RoleDelete(r.AuthRoleDelete)
	case r.AuthRoleGet != nil:
		resp, err = s.RoleGet(r.AuthRoleGet)
		changed = false
	case r.AuthRoleList != nil:
		resp, changed = s.RoleList(), false
	case r.AuthRoleGrantPermission != nil:
		resp, err = &pb.AuthRoleGrantPermissionResponse{}, s.RoleGrantPermission(r.AuthRoleGrantPermission)
	case r.AuthRoleRevokePermission != nil:
		resp, err = &pb.AuthRoleRevokePermissionResponse{}, s.RoleRevokePermission(r.AuthRoleRevokePermission)
	}
	if err != nil {
		return nil, authRejection{err}
	}
	if changed {
		data, err := s.Marshal()
		if err != nil {
			return nil, err
		}
		if err := b.Set(keyMetaAuth, data); err != nil {
			return nil, err
		}
	}
	return resp, nil
}

// authRejection marks an auth or permission refusal: the request's
// result, not a failure of the state machine.
type authRejection struct{ err error }

func (e authRejection) Error() string { return e.err.Error() }
func (e authRejection) Unwrap() error { return e.err }
