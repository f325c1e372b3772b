package auth

import (
	"bytes"
	"encoding/base64"
	"slices"
	"sort"
	"sync"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"golang.org/x/crypto/bcrypt"
	"google.golang.org/protobuf/proto"
)

const (
	// RootUser is the user that must exist, with RootRole, before auth can
	// be enabled, and that cannot be deleted while it is.
	RootUser = "root"
	// RootRole is the role that grants every permission: all keys, and
	// the admin operations (user, role, cluster and maintenance
	// management).
	RootRole = "root"
)

// TokenHooks is what a Store tells the member's token provider, as etcd's
// auth store does (etcd@v3.7.3:server/auth/store.go): Enable when auth is
// enabled (or a state with auth enabled is loaded), Disable when it is
// disabled, InvalidateUser when a user is deleted or its password changes.
// TokenProvider implementations satisfy it.
type TokenHooks interface {
	Enable()
	Disable()
	InvalidateUser(name string)
}

// Store is the replicated auth state: the enabled flag, users, roles and
// the auth revision. Every member applies the same operations in the same
// order and ends in the same state; Marshal gives it as bytes to store with
// the state machine and compare across members.
//
// Operations take etcd's request types and return etcd's errors
// (rpctypes.ErrGRPC*), with the semantics of etcd v3.7.3's authStore
// (etcd@v3.7.3:server/auth/store.go). They check no permissions: the
// applier checks the caller with Access first (see RPCRules).
//
// A Store is safe for concurrent use: one applier mutates it while request
// handlers read it.
type Store struct {
	// bcryptCost hashes a plaintext password found in an applied UserAdd or
	// UserChangePassword, which only an etcd older than 3.5 proposes.
	bcryptCost int
	tokens     TokenHooks // may be nil

	mu struct {
		sync.RWMutex
		state
	}
}

// state is what Marshal encodes, plus the permissions derived from it.
//
// Invariants: every stored *authpb.User and *authpb.Role is immutable once
// stored (operations replace, never modify, so Access snapshots need no
// lock); a user's Roles are sorted and unique, and each names a stored role
// or RootRole; a role's KeyPermission is sorted by key (etcd's order: see
// RoleGrantPermission) and every range is valid (ValidPermRange); if
// enabled, RootUser exists and has RootRole; revision >= 1; perms holds an
// entry for every user, computed from users and roles.
type state struct {
	enabled  bool
	revision uint64
	users    map[string]*authpb.User
	roles    map[string]*authpb.Role
	perms    map[string]*userPerms
}

// userPerms is what one user may do.
type userPerms struct {
	roles []string // sorted
	root  bool     // has RootRole: everything is allowed
	perms *Perms
}

// NewStore returns a Store with auth disabled, no users and no roles, at
// auth revision 1 (etcd commits revision 1 when it creates its auth store).
// bcryptCost is the --bcrypt-cost flag (see BcryptCost); tokens may be nil.
func NewStore(bcryptCost int, tokens TokenHooks) *Store {
	s := &Store{bcryptCost: BcryptCost(bcryptCost), tokens: tokens}
	s.mu.state = state{
		revision: 1,
		users:    map[string]*authpb.User{},
		roles:    map[string]*authpb.Role{},
		perms:    map[string]*userPerms{},
	}
	return s
}

// commitLocked bumps the auth revision after a change to users or roles and
// recomputes every user's permissions, as etcd's commitRevision and
// refreshRangePermCache do.
//
// REQUIRES: s.mu held for writing.
func (s *Store) commitLocked() {
	s.mu.revision++
	s.mu.perms = derivePerms(s.mu.users, s.mu.roles)
}

func derivePerms(users map[string]*authpb.User, roles map[string]*authpb.Role) map[string]*userPerms {
	perms := make(map[string]*userPerms, len(users))
	for name, u := range users {
		var rs []*authpb.Role
		for _, r := range u.Roles {
			// A user may hold RootRole without a role of that name
			// existing; etcd skips such roles when merging.
			if role, ok := roles[r]; ok {
				rs = append(rs, role)
			}
		}
		perms[name] = &userPerms{roles: u.Roles, root: hasRootRole(u), perms: MergePerms(rs...)}
	}
	return perms
}

// hasRootRole reports whether u holds RootRole. etcd searches the sorted
// role list (etcd@v3.7.3:server/auth/store.go hasRootRole).
func hasRootRole(u *authpb.User) bool {
	_, found := slices.BinarySearch(u.Roles, RootRole)
	return found
}

// Revision returns the auth revision: it counts the changes to users, roles
// and AuthDisable, and a token issued at an older revision is refused for
// key access (ErrGRPCAuthOldRevision).
func (s *Store) Revision() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.mu.revision
}

// IsAuthEnabled reports whether auth is enabled.
func (s *Store) IsAuthEnabled() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.mu.enabled
}

// AuthStatus answers the AuthStatus RPC (header left to the caller).
func (s *Store) AuthStatus() *pb.AuthStatusResponse {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return &pb.AuthStatusResponse{Enabled: s.mu.enabled, AuthRevision: s.mu.revision}
}

// AuthEnable enables auth. It needs RootUser holding RootRole; enabling
// an enabled store does nothing. It does not bump the revision.
func (s *Store) AuthEnable() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.enabled {
		return nil
	}
	u := s.mu.users[RootUser]
	if u == nil {
		return rpctypes.ErrGRPCRootUserNotExist
	}
	if !hasRootRole(u) {
		return rpctypes.ErrGRPCRootRoleNotExist
	}
	s.mu.enabled = true
	if s.tokens != nil {
		s.tokens.Enable()
	}
	return nil
}

// AuthDisable disables auth and bumps the revision; disabling a disabled
// store does nothing.
func (s *Store) AuthDisable() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.mu.enabled {
		return
	}
	s.mu.enabled = false
	s.mu.revision++
	if s.tokens != nil {
		s.tokens.Disable()
	}
}

// selectPassword returns the password hash to store: the request's
// base64 hashed password, or, for an entry proposed by an etcd older than
// 3.5 (plaintext only), a fresh hash of it. The fresh hash has a random
// salt, so members applying such an entry diverge, as etcd's do; strata's
// proposer always hashes first (PrepareUserAdd).
func (s *Store) selectPassword(password, hashed string) ([]byte, error) {
	if password != "" && hashed == "" {
		return bcrypt.GenerateFromPassword([]byte(password), s.bcryptCost)
	}
	return base64.StdEncoding.DecodeString(hashed)
}

// UserAdd adds a user with no roles. A user added with
// options.no_password has no password and cannot Authenticate (only a
// client certificate names it).
func (s *Store) UserAdd(r *pb.AuthUserAddRequest) error {
	if r.Name == "" {
		return rpctypes.ErrGRPCUserEmpty
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.users[r.Name] != nil {
		return rpctypes.ErrGRPCUserAlreadyExist
	}
	opts := &authpb.UserAddOptions{NoPassword: r.Options.GetNoPassword()}
	var pw []byte
	if !opts.NoPassword {
		var err error
		if pw, err = s.selectPassword(r.Password, r.HashedPassword); err != nil {
			return ErrNoPasswordUser
		}
	}
	s.mu.users[r.Name] = &authpb.User{Name: []byte(r.Name), Password: pw, Options: opts}
	s.commitLocked()
	return nil
}

// UserDelete deletes a user. RootUser cannot be deleted while auth is
// enabled.
func (s *Store) UserDelete(r *pb.AuthUserDeleteRequest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.enabled && r.Name == RootUser {
		return rpctypes.ErrGRPCInvalidAuthMgmt
	}
	if s.mu.users[r.Name] == nil {
		return rpctypes.ErrGRPCUserNotFound
	}
	delete(s.mu.users, r.Name)
	s.commitLocked()
	if s.tokens != nil {
		s.tokens.InvalidateUser(r.Name)
	}
	return nil
}

// UserChangePassword replaces a user's password hash and invalidates its
// tokens. A no_password user keeps no password, but the revision is
// bumped all the same.
func (s *Store) UserChangePassword(r *pb.AuthUserChangePasswordRequest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.mu.users[r.Name]
	if u == nil {
		return rpctypes.ErrGRPCUserNotFound
	}
	var pw []byte
	if !u.Options.GetNoPassword() {
		var err error
		if pw, err = s.selectPassword(r.Password, r.HashedPassword); err != nil {
			return ErrNoPasswordUser
		}
	}
	s.mu.users[r.Name] = &authpb.User{Name: u.Name, Password: pw, Roles: u.Roles, Options: u.Options}
	s.commitLocked()
	if s.tokens != nil {
		s.tokens.InvalidateUser(r.Name)
	}
	return nil
}

// UserGrantRole grants a role to a user. RootRole can be granted without a
// role of that name existing. Granting a role the user has does nothing
// (and does not bump the revision).
func (s *Store) UserGrantRole(r *pb.AuthUserGrantRoleRequest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.mu.users[r.User]
	if u == nil {
		return rpctypes.ErrGRPCUserNotFound
	}
	if r.Role != RootRole && s.mu.roles[r.Role] == nil {
		return rpctypes.ErrGRPCRoleNotFound
	}
	i, found := slices.BinarySearch(u.Roles, r.Role)
	if found {
		return nil
	}
	s.mu.users[r.User] = &authpb.User{Name: u.Name, Password: u.Password, Roles: slices.Insert(slices.Clone(u.Roles), i, r.Role), Options: u.Options}
	s.commitLocked()
	return nil
}

// UserRevokeRole revokes a role from a user. RootRole cannot be revoked
// from RootUser while auth is enabled.
func (s *Store) UserRevokeRole(r *pb.AuthUserRevokeRoleRequest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.enabled && r.Name == RootUser && r.Role == RootRole {
		return rpctypes.ErrGRPCInvalidAuthMgmt
	}
	u := s.mu.users[r.Name]
	if u == nil {
		return rpctypes.ErrGRPCUserNotFound
	}
	roles := slices.DeleteFunc(slices.Clone(u.Roles), func(role string) bool { return role == r.Role })
	if len(roles) == len(u.Roles) {
		return rpctypes.ErrGRPCRoleNotGranted
	}
	if len(roles) == 0 {
		roles = nil
	}
	s.mu.users[r.Name] = &authpb.User{Name: u.Name, Password: u.Password, Roles: roles, Options: u.Options}
	s.commitLocked()
	return nil
}

// UserGet answers UserGet: the user's roles, sorted.
func (s *Store) UserGet(r *pb.AuthUserGetRequest) (*pb.AuthUserGetResponse, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	u := s.mu.users[r.Name]
	if u == nil {
		return nil, rpctypes.ErrGRPCUserNotFound
	}
	return &pb.AuthUserGetResponse{Roles: slices.Clone(u.Roles)}, nil
}

// UserList answers UserList: every user name, in byte order.
func (s *Store) UserList() *pb.AuthUserListResponse {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return &pb.AuthUserListResponse{Users: sortedKeys(s.mu.users)}
}

// RoleAdd adds a role with no permissions.
func (s *Store) RoleAdd(r *pb.AuthRoleAddRequest) error {
	if r.Name == "" {
		return rpctypes.ErrGRPCRoleEmpty
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.roles[r.Name] != nil {
		return rpctypes.ErrGRPCRoleAlreadyExist
	}
	s.mu.roles[r.Name] = &authpb.Role{Name: []byte(r.Name)}
	s.commitLocked()
	return nil
}

// RoleDelete deletes a role and revokes it from every user. RootRole
// cannot be deleted while auth is enabled.
func (s *Store) RoleDelete(r *pb.AuthRoleDeleteRequest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.enabled && r.Role == RootRole {
		return rpctypes.ErrGRPCInvalidAuthMgmt
	}
	if s.mu.roles[r.Role] == nil {
		return rpctypes.ErrGRPCRoleNotFound
	}
	delete(s.mu.roles, r.Role)
	for name, u := range s.mu.users {
		i, found := slices.BinarySearch(u.Roles, r.Role)
		if !found {
			continue
		}
		roles := slices.Delete(slices.Clone(u.Roles), i, i+1)
		if len(roles) == 0 {
			roles = nil
		}
		s.mu.users[name] = &authpb.User{Name: u.Name, Password: u.Password, Roles: roles, Options: u.Options}
	}
	s.commitLocked()
	return nil
}

// rootPerm is what RoleGet shows for RootRole, whatever permissions were
// granted to it (etcd@v3.7.3:server/auth/store.go rootPerm).
func rootPerm() *authpb.Permission {
	return &authpb.Permission{PermType: authpb.Permission_READWRITE, Key: []byte{}, RangeEnd: []byte{0}}
}

// RoleGet answers RoleGet: the role's key permissions in stored order, or
// for RootRole the single permission "READWRITE on every key".
func (s *Store) RoleGet(r *pb.AuthRoleGetRequest) (*pb.AuthRoleGetResponse, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	role := s.mu.roles[r.Role]
	if role == nil {
		return nil, rpctypes.ErrGRPCRoleNotFound
	}
	if r.Role == RootRole {
		return &pb.AuthRoleGetResponse{Perm: []*authpb.Permission{rootPerm()}}, nil
	}
	resp := &pb.AuthRoleGetResponse{}
	for _, p := range role.KeyPermission {
		resp.Perm = append(resp.Perm, proto.CloneOf(p))
	}
	return resp, nil
}

// RoleList answers RoleList: every role name, in byte order.
func (s *Store) RoleList() *pb.AuthRoleListResponse {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return &pb.AuthRoleListResponse{Roles: sortedKeys(s.mu.roles)}
}

// permsByKey sorts permissions by key alone, with sort.Sort, as etcd does:
// permissions with equal keys keep whatever order that algorithm leaves,
// which RoleGet shows and RoleGrantPermission depends on.
type permsByKey []*authpb.Permission

func (p permsByKey) Len() int           { return len(p) }
func (p permsByKey) Less(i, j int) bool { return bytes.Compare(p[i].Key, p[j].Key) < 0 }
func (p permsByKey) Swap(i, j int)      { p[i], p[j] = p[j], p[i] }

// RoleGrantPermission grants a key permission to a role, or changes the
// type of the permission the role has on the same [key, range_end).
//
// As in etcd, only the first permission whose key is >= the new key is
// compared: when a role holds several permissions with one key, granting
// one of them again may add a second copy instead of updating it.
func (s *Store) RoleGrantPermission(r *pb.AuthRoleGrantPermissionRequest) error {
	if r.Perm == nil {
		return rpctypes.ErrGRPCPermissionNotGiven
	}
	if !ValidPermRange(r.Perm.Key, r.Perm.RangeEnd) {
		return rpctypes.ErrGRPCInvalidAuthMgmt
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	role := s.mu.roles[r.Name]
	if role == nil {
		return rpctypes.ErrGRPCRoleNotFound
	}
	perms := slices.Clone(role.KeyPermission)
	i := sort.Search(len(perms), func(i int) bool { return bytes.Compare(perms[i].Key, r.Perm.Key) >= 0 })
	if i < len(perms) && bytes.Equal(perms[i].Key, r.Perm.Key) && bytes.Equal(perms[i].RangeEnd, r.Perm.RangeEnd) {
		perms[i] = &authpb.Permission{PermType: r.Perm.PermType, Key: perms[i].Key, RangeEnd: perms[i].RangeEnd}
	} else {
		perms = append(perms, &authpb.Permission{
			PermType: r.Perm.PermType,
			Key:      bytes.Clone(r.Perm.Key),
			RangeEnd: bytes.Clone(r.Perm.RangeEnd),
		})
		sort.Sort(permsByKey(perms))
	}
	s.mu.roles[r.Name] = &authpb.Role{Name: role.Name, KeyPermission: perms}
	s.commitLocked()
	return nil
}

// RoleRevokePermission removes every permission of the role on exactly
// [key, range_end).
func (s *Store) RoleRevokePermission(r *pb.AuthRoleRevokePermissionRequest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	role := s.mu.roles[r.Role]
	if role == nil {
		return rpctypes.ErrGRPCRoleNotFound
	}
	perms := slices.DeleteFunc(slices.Clone(role.KeyPermission), func(p *authpb.Permission) bool {
		return bytes.Equal(p.Key, r.Key) && bytes.Equal(p.RangeEnd, r.RangeEnd)
	})
	if len(perms) == len(role.KeyPermission) {
		return rpctypes.ErrGRPCPermissionNotGranted
	}
	if len(perms) == 0 {
		perms = nil
	}
	s.mu.roles[r.Role] = &authpb.Role{Name: role.Name, KeyPermission: perms}
	s.commitLocked()
	return nil
}

// Allowed reports whether user's roles allow a request of type t on
// [key, rangeEnd) (see Perms.Allowed); RootRole allows everything. It
// answers for the permissions alone: whether auth is enabled and how old
// the caller's token is are Access's business.
func (s *Store) Allowed(user string, key, rangeEnd []byte, t authpb.Permission_Type) bool {
	s.mu.RLock()
	up := s.mu.perms[user]
	s.mu.RUnlock()
	return up != nil && (up.root || up.perms.Allowed(key, rangeEnd, t))
}

// HasRole reports whether user holds role.
func (s *Store) HasRole(user, role string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	u := s.mu.users[user]
	return u != nil && slices.Contains(u.Roles, role)
}

// Authenticate is the applied half of the Authenticate RPC: it checks that
// user may be given a token and returns the auth revision to issue it at
// (TokenProvider.Assign). The password was checked before proposing
// (CheckPassword); the proposer retries when the revision it checked at is
// no longer current, as etcd's EtcdServer.Authenticate does.
func (s *Store) Authenticate(user string) (revision uint64, err error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.mu.enabled {
		return 0, rpctypes.ErrGRPCAuthNotEnabled
	}
	u := s.mu.users[user]
	if u == nil || u.Options.GetNoPassword() {
		return 0, rpctypes.ErrGRPCAuthFailed
	}
	return s.mu.revision, nil
}

// CheckPassword checks user's password, on the member that received the
// Authenticate RPC, and returns the auth revision it checked at.
func (s *Store) CheckPassword(user, password string) (revision uint64, err error) {
	hash, revision, err := func() ([]byte, uint64, error) {
		s.mu.RLock()
		defer s.mu.RUnlock()
		if !s.mu.enabled {
			return nil, 0, rpctypes.ErrGRPCAuthNotEnabled
		}
		u := s.mu.users[user]
		if u == nil {
			return nil, 0, rpctypes.ErrGRPCAuthFailed
		}
		if u.Options.GetNoPassword() {
			return nil, 0, ErrNoPasswordUser
		}
		return u.Password, s.mu.revision, nil
	}()
	if err != nil {
		return 0, err
	}
	// bcrypt is slow by design: compare outside the lock.
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil {
		return 0, rpctypes.ErrGRPCAuthFailed
	}
	return revision, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
