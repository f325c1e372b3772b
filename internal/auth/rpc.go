package auth

import (
	"errors"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	epb "go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb"
	lpb "go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb"
)

// RuleKind is what etcd asks of a request's caller when auth is enabled.
// With auth disabled every check passes.
type RuleKind uint8

const (
	// RuleNone asks nothing.
	RuleNone RuleKind = iota
	// RuleAuthenticated asks for credentials, of any user
	// (Checker.RequireAuthInfo; else ErrGRPCUserEmpty).
	RuleAuthenticated
	// RuleAdmin asks for RootRole (Checker.IsAdminPermitted).
	RuleAdmin
	// RuleKeys asks for key permissions, as the rule's Check function
	// computes them from the request.
	RuleKeys
	// RuleAdminOrKeys asks for credentials and then RootRole, or failing
	// that key permissions on the keys attached to a lease (Check).
	RuleAdminOrKeys
	// RuleAdminOrSelf asks for RootRole, unless users ask about
	// themselves (UserGet; CheckUserGet).
	RuleAdminOrSelf
	// RuleAdminOrMember asks for RootRole, unless users ask about a role
	// they hold (RoleGet; CheckRoleGet).
	RuleAdminOrMember
	// RuleByAction depends on the request's action (Alarm: CheckAlarm).
	RuleByAction
	// RuleDelegated: the member serves the RPC by making KV, Lease and
	// Watch calls in-process with the caller's credentials, each checked
	// by its own rule (the Lock and Election services, through etcd's
	// v3client).
	RuleDelegated
)

// RPCRule is the permission rule etcd v3.7.3 applies to one RPC. Checks
// happen in up to two places: API, on the member serving the RPC (for
// reads, while serving; for proposals, before proposing), and Apply, when
// the proposal applies, against the user and auth revision in its
// RequestHeader (etcd's authApplierV3).
//
// Apart from these rules, with auth enabled every RPC but Authenticate
// refuses a token that does not verify (ErrGRPCInvalidAuthToken), even
// where the rule is RuleNone: etcd resolves the caller of every request it
// proposes or checks (AuthInfoFromCtx).
type RPCRule struct {
	// Method is the full gRPC method name.
	Method string
	// API and Apply are the checks made in each place.
	API, Apply RuleKind
	// Check names the function of this package that makes the key checks
	// of a RuleKeys or RuleAdminOrKeys rule, or the decision of the other
	// request-dependent kinds.
	Check string
	// Source is where etcd v3.7.3 makes the checks.
	Source string
	// Note records what else the caller must know.
	Note string
}

// RPCRules is the rule of every RPC of etcd v3.7.3's gRPC services (the
// gRPC health service, not listed, asks nothing).
var RPCRules = []RPCRule{
	// KV.
	{Method: pb.KV_Range_FullMethodName, API: RuleKeys, Check: "CheckRange",
		Source: "server/etcdserver/v3_server.go Range, doSerialize",
		Note:   "checked before reading; after reading, a token revision that is non-zero and differs from the store's fails the read with ErrGRPCAuthOldRevision"},
	{Method: pb.KV_RangeStream_FullMethodName, API: RuleKeys, Check: "CheckRange",
		Source: "server/etcdserver/v3_server.go RangeStream, doSerialize",
		Note:   "as Range"},
	{Method: pb.KV_Put_FullMethodName, Apply: RuleKeys, Check: "CheckPut",
		Source: "server/etcdserver/apply/auth.go Put, checkPutAuth, checkLeasePuts"},
	{Method: pb.KV_DeleteRange_FullMethodName, Apply: RuleKeys, Check: "CheckDeleteRange",
		Source: "server/etcdserver/apply/auth.go DeleteRange"},
	{Method: pb.KV_Txn_FullMethodName, API: RuleKeys, Apply: RuleKeys, Check: "CheckTxn",
		Source: "server/etcdserver/v3_server.go Txn; server/etcdserver/apply/auth.go checkTxnPermission",
		Note:   "a read-only txn (txn.IsTxnReadonly) is checked at API as Range is, revision recheck included; any other txn only at Apply"},
	{Method: pb.KV_Compact_FullMethodName, API: RuleAdmin,
		Source: "server/etcdserver/api/v3rpc/key.go kvServer.Compact"},

	// Watch.
	{Method: pb.Watch_Watch_FullMethodName, API: RuleKeys, Check: "CheckWatchCreate",
		Source: "server/etcdserver/api/v3rpc/watch.go recvLoop, isWatchPermitted",
		Note:   "checked per create request, not per stream; a refusal is a response with created and canceled set, watch_id -1 and cancel_reason WatchCancelReason(err), and the stream goes on"},

	// Lease.
	{Method: pb.Lease_LeaseGrant_FullMethodName, API: RuleAuthenticated,
		Source: "server/etcdserver/v3_server.go LeaseGrant, requireAuthInfo"},
	{Method: pb.Lease_LeaseRevoke_FullMethodName, API: RuleAuthenticated, Apply: RuleAdminOrKeys, Check: "CheckLeaseRevoke",
		Source: "server/etcdserver/v3_server.go LeaseRevoke; server/etcdserver/apply/auth.go LeaseRevoke, checkLeasePuts",
		Note:   "write permission on every key attached to the lease when the revoke applies"},
	{Method: pb.Lease_LeaseKeepAlive_FullMethodName, API: RuleAdminOrKeys, Check: "CheckLeaseKeepAlive",
		Source: "server/etcdserver/v3_server.go LeaseRenew, checkLeaseRenew",
		Note:   "checked per keep-alive request, on the leader (again on each forwarding attempt); write permission on every attached key; a change of the auth revision during the check fails it with ErrGRPCAuthOldRevision"},
	{Method: pb.Lease_LeaseTimeToLive_FullMethodName, API: RuleAdminOrKeys, Check: "CheckLeaseTimeToLive",
		Source: "server/etcdserver/v3_server.go LeaseTimeToLive, checkLeaseTimeToLive",
		Note:   "credentials always; with keys=true, RootRole or read permission on every attached key (CVE-2023-32082), and a change of the auth revision while answering fails it with ErrGRPCAuthOldRevision"},
	{Method: pb.Lease_LeaseLeases_FullMethodName, API: RuleAdminOrKeys, Check: "CheckLeaseLeases",
		Source: "server/etcdserver/v3_server.go LeaseLeases, checkLeaseLeases",
		Note:   "read permission on every key attached to any lease; a change of the auth revision during the check fails it with ErrGRPCAuthOldRevision"},

	// Cluster.
	{Method: pb.Cluster_MemberAdd_FullMethodName, API: RuleAdmin,
		Source: "server/etcdserver/server.go AddMember, checkMembershipOperationPermission"},
	{Method: pb.Cluster_MemberRemove_FullMethodName, API: RuleAdmin,
		Source: "server/etcdserver/server.go RemoveMember, checkMembershipOperationPermission"},
	{Method: pb.Cluster_MemberUpdate_FullMethodName, API: RuleAdmin,
		Source: "server/etcdserver/server.go UpdateMember, checkMembershipOperationPermission"},
	{Method: pb.Cluster_MemberList_FullMethodName, API: RuleAuthenticated,
		Source: "server/etcdserver/server.go MemberList, requireAuthInfo",
		Note:   "checked after the linearizable read barrier when linearizable is set (CVE-2026-33413)"},
	{Method: pb.Cluster_MemberPromote_FullMethodName, API: RuleAdmin,
		Source: "server/etcdserver/server.go PromoteMember, checkMembershipOperationPermission",
		Note:   "checked on the member that receives it, then again on the leader when a follower forwards it over the peer API (the token travels in an Authorization header)"},

	// Maintenance.
	{Method: pb.Maintenance_Alarm_FullMethodName, API: RuleByAction, Check: "CheckAlarm",
		Source: "server/etcdserver/api/v3rpc/maintenance.go authMaintenanceServer.Alarm"},
	{Method: pb.Maintenance_Status_FullMethodName, API: RuleAuthenticated,
		Source: "server/etcdserver/api/v3rpc/maintenance.go authMaintenanceServer.Status"},
	{Method: pb.Maintenance_Defragment_FullMethodName, API: RuleAdmin,
		Source: "server/etcdserver/api/v3rpc/maintenance.go authMaintenanceServer.Defragment"},
	{Method: pb.Maintenance_Hash_FullMethodName, API: RuleAdmin,
		Source: "server/etcdserver/api/v3rpc/maintenance.go authMaintenanceServer.Hash"},
	{Method: pb.Maintenance_HashKV_FullMethodName, API: RuleAdmin,
		Source: "server/etcdserver/api/v3rpc/maintenance.go authMaintenanceServer.HashKV"},
	{Method: pb.Maintenance_Snapshot_FullMethodName, API: RuleAdmin,
		Source: "server/etcdserver/api/v3rpc/maintenance.go authMaintenanceServer.Snapshot"},
	{Method: pb.Maintenance_MoveLeader_FullMethodName, API: RuleAdmin,
		Source: "server/etcdserver/api/v3rpc/maintenance.go authMaintenanceServer.MoveLeader"},
	{Method: pb.Maintenance_Downgrade_FullMethodName, API: RuleAdmin,
		Source: "server/etcdserver/api/v3rpc/maintenance.go authMaintenanceServer.Downgrade"},

	// Auth. The admin checks are made when the request applies
	// (server/etcdserver/apply/auth.go Apply, needAdminPermission).
	{Method: pb.Auth_AuthEnable_FullMethodName, Apply: RuleAdmin, Source: "server/etcdserver/apply/auth.go needAdminPermission",
		Note: "with auth still disabled the check passes"},
	{Method: pb.Auth_AuthDisable_FullMethodName, Apply: RuleAdmin, Source: "server/etcdserver/apply/auth.go needAdminPermission"},
	{Method: pb.Auth_AuthStatus_FullMethodName, Source: "server/etcdserver/apply/auth.go needAdminPermission",
		Note: "proposed through raft like the admin requests, but open to anyone"},
	{Method: pb.Auth_Authenticate_FullMethodName, Source: "server/etcdserver/v3_server.go Authenticate",
		Note: "the password is the credential (Store.CheckPassword before proposing, Store.Authenticate when applied); a token sent along is not looked at"},
	{Method: pb.Auth_UserAdd_FullMethodName, Apply: RuleAdmin, Source: "server/etcdserver/apply/auth.go needAdminPermission"},
	{Method: pb.Auth_UserGet_FullMethodName, Apply: RuleAdminOrSelf, Check: "CheckUserGet",
		Source: "server/etcdserver/apply/auth.go authApplierV3.UserGet"},
	{Method: pb.Auth_UserList_FullMethodName, Apply: RuleAdmin, Source: "server/etcdserver/apply/auth.go needAdminPermission"},
	{Method: pb.Auth_UserDelete_FullMethodName, Apply: RuleAdmin, Source: "server/etcdserver/apply/auth.go needAdminPermission"},
	{Method: pb.Auth_UserChangePassword_FullMethodName, Apply: RuleAdmin, Source: "server/etcdserver/apply/auth.go needAdminPermission",
		Note: "users cannot change their own password without RootRole"},
	{Method: pb.Auth_UserGrantRole_FullMethodName, Apply: RuleAdmin, Source: "server/etcdserver/apply/auth.go needAdminPermission"},
	{Method: pb.Auth_UserRevokeRole_FullMethodName, Apply: RuleAdmin, Source: "server/etcdserver/apply/auth.go needAdminPermission"},
	{Method: pb.Auth_RoleAdd_FullMethodName, Apply: RuleAdmin, Source: "server/etcdserver/apply/auth.go needAdminPermission"},
	{Method: pb.Auth_RoleGet_FullMethodName, Apply: RuleAdminOrMember, Check: "CheckRoleGet",
		Source: "server/etcdserver/apply/auth.go authApplierV3.RoleGet"},
	{Method: pb.Auth_RoleList_FullMethodName, Apply: RuleAdmin, Source: "server/etcdserver/apply/auth.go needAdminPermission"},
	{Method: pb.Auth_RoleDelete_FullMethodName, Apply: RuleAdmin, Source: "server/etcdserver/apply/auth.go needAdminPermission"},
	{Method: pb.Auth_RoleGrantPermission_FullMethodName, Apply: RuleAdmin, Source: "server/etcdserver/apply/auth.go needAdminPermission"},
	{Method: pb.Auth_RoleRevokePermission_FullMethodName, Apply: RuleAdmin, Source: "server/etcdserver/apply/auth.go needAdminPermission"},

	// Lock and Election, served through etcd's in-process client
	// (server/embed/serve.go, server/etcdserver/api/v3client), which
	// passes the caller's metadata, token included, to the KV, Lease and
	// Watch servers; their errors come back without gRPC status mapping.
	{Method: lpb.Lock_Lock_FullMethodName, API: RuleDelegated, Source: "server/etcdserver/api/v3lock/lock.go Lock",
		Note: "a session (LeaseGrant unless a lease is given), then concurrency.Mutex.Lock: a Txn putting <name>/<lease> with the lease and reading the prefix, and reads and watches of the prefix; a refusal reaches the client as codes.Unknown with the refusal's message (seen on etcd 3.7.3: \"etcdserver: permission denied\", \"etcdserver: user name is empty\")"},
	{Method: lpb.Lock_Unlock_FullMethodName, API: RuleDelegated, Source: "server/etcdserver/api/v3lock/lock.go Unlock",
		Note: "a DeleteRange of the key; refusals as for Lock"},
	{Method: epb.Election_Campaign_FullMethodName, API: RuleDelegated, Source: "server/etcdserver/api/v3election/election.go Campaign"},
	{Method: epb.Election_Proclaim_FullMethodName, API: RuleDelegated, Source: "server/etcdserver/api/v3election/election.go Proclaim"},
	{Method: epb.Election_Leader_FullMethodName, API: RuleDelegated, Source: "server/etcdserver/api/v3election/election.go Leader"},
	{Method: epb.Election_Observe_FullMethodName, API: RuleDelegated, Source: "server/etcdserver/api/v3election/election.go Observe"},
	{Method: epb.Election_Resign_FullMethodName, API: RuleDelegated, Source: "server/etcdserver/api/v3election/election.go Resign"},
}

// RuleFor returns the rule of the RPC with the full gRPC method name
// method.
func RuleFor(method string) (RPCRule, bool) {
	for _, r := range RPCRules {
		if r.Method == method {
			return r, true
		}
	}
	return RPCRule{}, false
}

// LeaseKeys returns the keys attached to lease id; ok is false when there
// is no such lease, and then etcd checks no key (the request fails later,
// or not at all, for its own reasons).
type LeaseKeys func(id int64) (keys [][]byte, ok bool)

// CheckRange checks a Range (or RangeStream): read permission on
// [key, range_end).
func CheckRange(c Checker, r *pb.RangeRequest) error {
	return c.IsRangePermitted(r.Key, r.RangeEnd)
}

// CheckPut checks a Put, alone or in a Txn
// (etcd@v3.7.3:server/etcdserver/apply/auth.go checkPutAuth), in etcd's
// order: write permission on the key; then, if the lease exists and the
// caller is not admin, write permission on every key already attached to
// it (whoever attaches a key to a lease could revoke it, deleting those
// keys); then, with prev_kv, read permission on the key.
func CheckPut(c Checker, r *pb.PutRequest, leases LeaseKeys) error {
	if err := c.IsPutPermitted(r.Key); err != nil {
		return err
	}
	if err := checkLeaseWrites(c, r.Lease, leases); err != nil {
		return err
	}
	if r.PrevKv {
		return c.IsRangePermitted(r.Key, nil)
	}
	return nil
}

// checkLeaseWrites is etcd's checkLeasePuts: RootRole, or write permission
// on every key attached to an existing lease. Lease 0 (none) is never
// found.
func checkLeaseWrites(c Checker, id int64, leases LeaseKeys) error {
	if id == 0 || leases == nil {
		return nil
	}
	keys, ok := leases(id)
	if !ok {
		return nil
	}
	if c.IsAdminPermitted() == nil {
		return nil
	}
	for _, k := range keys {
		if err := c.IsPutPermitted(k); err != nil {
			return err
		}
	}
	return nil
}

// CheckDeleteRange checks a DeleteRange outside a Txn
// (etcd@v3.7.3:server/etcdserver/apply/auth.go DeleteRange): write
// permission on [key, range_end), then with prev_kv read permission on it.
func CheckDeleteRange(c Checker, r *pb.DeleteRangeRequest) error {
	if err := c.IsDeleteRangePermitted(r.Key, r.RangeEnd); err != nil {
		return err
	}
	if r.PrevKv {
		return c.IsRangePermitted(r.Key, r.RangeEnd)
	}
	return nil
}

// CheckTxn checks a Txn (etcd@v3.7.3:server/etcdserver/apply/auth.go
// checkTxnPermission, checkTxnReqsPermission): read permission on the
// range of every compare, then every operation of success, then of
// failure, whichever branch will run, nested txns recursively in place
// (CVE-2026-33343): a range needs read permission, a put what CheckPut
// asks (lease and prev_kv included: CVE-2026-44283), a delete read
// permission if prev_kv and then write permission. Empty operations are
// skipped.
func CheckTxn(c Checker, r *pb.TxnRequest, leases LeaseKeys) error {
	for _, cmp := range r.Compare {
		if err := c.IsRangePermitted(cmp.Key, cmp.RangeEnd); err != nil {
			return err
		}
	}
	if err := checkOps(c, r.Success, leases); err != nil {
		return err
	}
	return checkOps(c, r.Failure, leases)
}

func checkOps(c Checker, ops []*pb.RequestOp, leases LeaseKeys) error {
	for _, op := range ops {
		var err error
		switch {
		case op.GetRequestRange() != nil:
			err = CheckRange(c, op.GetRequestRange())
		case op.GetRequestPut() != nil:
			err = CheckPut(c, op.GetRequestPut(), leases)
		case op.GetRequestDeleteRange() != nil:
			d := op.GetRequestDeleteRange()
			if d.PrevKv {
				err = c.IsRangePermitted(d.Key, d.RangeEnd)
			}
			if err == nil {
				err = c.IsDeleteRangePermitted(d.Key, d.RangeEnd)
			}
		case op.GetRequestTxn() != nil:
			err = CheckTxn(c, op.GetRequestTxn(), leases)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// CheckWatchCreate checks a watch create request
// (etcd@v3.7.3:server/etcdserver/api/v3rpc/watch.go isWatchPermitted):
// read permission on [key, range_end), an empty key standing for "\x00"
// as etcd rewrites it first. A range_end of "\x00" (every key >= key)
// needs a permission open at the top (GHSA-xg4h-6gfc-h4m8).
func CheckWatchCreate(c Checker, r *pb.WatchCreateRequest) error {
	key := r.Key
	if len(key) == 0 {
		key = []byte{0}
	}
	return c.IsRangePermitted(key, r.RangeEnd)
}

// WatchCancelReason is the cancel_reason etcd sends when CheckWatchCreate
// fails with err: the full text of the gRPC error, "permission denied"
// for anything but an invalid token, an old revision or no credentials.
func WatchCancelReason(err error) string {
	switch {
	case errors.Is(err, rpctypes.ErrGRPCInvalidAuthToken):
		return rpctypes.ErrGRPCInvalidAuthToken.Error()
	case errors.Is(err, rpctypes.ErrGRPCAuthOldRevision):
		return rpctypes.ErrGRPCAuthOldRevision.Error()
	case errors.Is(err, rpctypes.ErrGRPCUserEmpty):
		return rpctypes.ErrGRPCUserEmpty.Error()
	default:
		return rpctypes.ErrGRPCPermissionDenied.Error()
	}
}

// CheckLeaseGrant checks a LeaseGrant: credentials.
func CheckLeaseGrant(c Checker) error {
	return c.RequireAuthInfo()
}

// CheckLeaseRevoke checks a LeaseRevoke as it applies
// (etcd@v3.7.3:server/etcdserver/apply/auth.go LeaseRevoke): RootRole, or
// write permission on every key attached to the lease. The member that
// proposes it asks for credentials first (CheckLeaseGrant's check).
func CheckLeaseRevoke(c Checker, id int64, leases LeaseKeys) error {
	return checkLeaseWrites(c, id, leases)
}

// CheckLeaseKeepAlive checks one keep-alive of lease id
// (etcd@v3.7.3:server/etcdserver/v3_server.go checkLeaseRenew):
// credentials, then RootRole or write permission on every attached key.
// The caller also fails it with ErrGRPCAuthOldRevision if the store's
// revision changed while checking.
func CheckLeaseKeepAlive(c Checker, id int64, leases LeaseKeys) error {
	if err := c.RequireAuthInfo(); err != nil {
		return err
	}
	if c.IsAdminPermitted() == nil {
		return nil
	}
	if leases == nil {
		return nil
	}
	keys, _ := leases(id)
	for _, k := range keys {
		if err := c.IsPutPermitted(k); err != nil {
			return err
		}
	}
	return nil
}

// CheckLeaseTimeToLive checks a LeaseTimeToLive
// (etcd@v3.7.3:server/etcdserver/v3_server.go LeaseTimeToLive,
// checkLeaseTimeToLive): credentials; with keys, RootRole or read
// permission on every attached key (CVE-2023-32082).
func CheckLeaseTimeToLive(c Checker, r *pb.LeaseTimeToLiveRequest, leases LeaseKeys) error {
	if err := c.RequireAuthInfo(); err != nil {
		return err
	}
	if !r.Keys || c.IsAdminPermitted() == nil || leases == nil {
		return nil
	}
	keys, _ := leases(r.ID)
	for _, k := range keys {
		if err := c.IsRangePermitted(k, nil); err != nil {
			return err
		}
	}
	return nil
}

// CheckLeaseLeases checks a LeaseLeases
// (etcd@v3.7.3:server/etcdserver/v3_server.go checkLeaseLeases):
// credentials, then RootRole or read permission on every key attached to
// any lease, given as attached.
func CheckLeaseLeases(c Checker, attached [][]byte) error {
	if err := c.RequireAuthInfo(); err != nil {
		return err
	}
	if c.IsAdminPermitted() == nil {
		return nil
	}
	for _, k := range attached {
		if err := c.IsRangePermitted(k, nil); err != nil {
			return err
		}
	}
	return nil
}

// CheckAlarm checks an Alarm
// (etcd@v3.7.3:server/etcdserver/api/v3rpc/maintenance.go
// authMaintenanceServer.Alarm): GET asks for credentials, ACTIVATE and
// DEACTIVATE for RootRole.
func CheckAlarm(c Checker, r *pb.AlarmRequest) error {
	if r.Action == pb.AlarmRequest_GET {
		return c.RequireAuthInfo()
	}
	return c.IsAdminPermitted()
}

// CheckUserGet checks a UserGet as it applies
// (etcd@v3.7.3:server/etcdserver/apply/auth.go authApplierV3.UserGet):
// RootRole, or the caller is the user asked about. A request without
// credentials for user "" passes and finds no such user.
func CheckUserGet(c Checker, r *pb.AuthUserGetRequest) error {
	if err := c.IsAdminPermitted(); err != nil && r.Name != c.Username() {
		return err
	}
	return nil
}

// CheckRoleGet checks a RoleGet as it applies
// (etcd@v3.7.3:server/etcdserver/apply/auth.go authApplierV3.RoleGet):
// RootRole, or the caller holds the role asked about.
func CheckRoleGet(c Checker, r *pb.AuthRoleGetRequest) error {
	if err := c.IsAdminPermitted(); err != nil && !c.HasRole(r.Role) {
		return err
	}
	return nil
}

// CheckAdmin checks an RPC whose rule is RuleAdmin.
func CheckAdmin(c Checker) error {
	return c.IsAdminPermitted()
}
