package auth

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	etcdauth "go.etcd.io/etcd/server/v3/auth"
	"golang.org/x/crypto/bcrypt"
	"google.golang.org/protobuf/proto"
)

// testCost keeps bcrypt fast in tests.
const testCost = bcrypt.MinCost

func mustHash(t testing.TB, pw string) string {
	t.Helper()
	h, err := HashPassword(pw, testCost)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// step is one operation on a Store and the error it must return.
type step struct {
	name string
	do   func(*Store) error
	want error
}

func runSteps(t *testing.T, s *Store, steps []step) {
	t.Helper()
	for _, st := range steps {
		if err := st.do(s); !errors.Is(err, st.want) && !sameError(err, st.want) {
			t.Fatalf("%s: got %v, want %v", st.name, err, st.want)
		}
	}
}

func userAdd(name string, hashed string) func(*Store) error {
	return func(s *Store) error { return s.UserAdd(&pb.AuthUserAddRequest{Name: name, HashedPassword: hashed}) }
}

func grantRole(user, role string) func(*Store) error {
	return func(s *Store) error { return s.UserGrantRole(&pb.AuthUserGrantRoleRequest{User: user, Role: role}) }
}

func roleAdd(name string) func(*Store) error {
	return func(s *Store) error { return s.RoleAdd(&pb.AuthRoleAddRequest{Name: name}) }
}

func TestStoreAuthEnable(t *testing.T) {
	s := NewStore(testCost, nil)
	h := mustHash(t, "pw")
	runSteps(t, s, []step{
		{"enable without root", (*Store).AuthEnable, rpctypes.ErrGRPCRootUserNotExist},
		{"add root", userAdd("root", h), nil},
		{"enable without root role", (*Store).AuthEnable, rpctypes.ErrGRPCRootRoleNotExist},
		// The root role need not exist to be granted.
		{"grant root", grantRole("root", "root"), nil},
		{"enable", (*Store).AuthEnable, nil},
		{"enable again", (*Store).AuthEnable, nil},
		{"delete root", func(s *Store) error { return s.UserDelete(&pb.AuthUserDeleteRequest{Name: "root"}) }, rpctypes.ErrGRPCInvalidAuthMgmt},
		{"revoke root from root", func(s *Store) error {
			return s.UserRevokeRole(&pb.AuthUserRevokeRoleRequest{Name: "root", Role: "root"})
		}, rpctypes.ErrGRPCInvalidAuthMgmt},
		{"delete root role", func(s *Store) error { return s.RoleDelete(&pb.AuthRoleDeleteRequest{Role: "root"}) }, rpctypes.ErrGRPCInvalidAuthMgmt},
		{"disable", func(s *Store) error { s.AuthDisable(); return nil }, nil},
		{"revoke root from root when disabled", func(s *Store) error {
			return s.UserRevokeRole(&pb.AuthUserRevokeRoleRequest{Name: "root", Role: "root"})
		}, nil},
		{"delete root when disabled", func(s *Store) error { return s.UserDelete(&pb.AuthUserDeleteRequest{Name: "root"}) }, nil},
	})
}

func TestStoreRevision(t *testing.T) {
	s := NewStore(testCost, nil)
	if got := s.Revision(); got != 1 {
		t.Fatalf("new store at revision %d, want 1 (as etcd's)", got)
	}
	h := mustHash(t, "pw")
	for _, tt := range []struct {
		name string
		do   func(*Store) error
		bump bool
	}{
		{"user add", userAdd("root", h), true},
		{"role add", roleAdd("r"), true},
		{"grant role", grantRole("root", "r"), true},
		{"grant it again", grantRole("root", "r"), false},
		{"grant root", grantRole("root", "root"), true},
		{"enable", (*Store).AuthEnable, false},
		{"grant permission", func(s *Store) error {
			return s.RoleGrantPermission(&pb.AuthRoleGrantPermissionRequest{Name: "r", Perm: perm(R, "a", "")})
		}, true},
		{"update its type", func(s *Store) error {
			return s.RoleGrantPermission(&pb.AuthRoleGrantPermissionRequest{Name: "r", Perm: perm(RW, "a", "")})
		}, true},
		{"revoke permission", func(s *Store) error {
			return s.RoleRevokePermission(&pb.AuthRoleRevokePermissionRequest{Role: "r", Key: []byte("a")})
		}, true},
		{"failed revoke", func(s *Store) error {
			if err := s.RoleRevokePermission(&pb.AuthRoleRevokePermissionRequest{Role: "r", Key: []byte("a")}); err != rpctypes.ErrGRPCPermissionNotGranted {
				return fmt.Errorf("got %v", err)
			}
			return nil
		}, false},
		{"change password", func(s *Store) error {
			return s.UserChangePassword(&pb.AuthUserChangePasswordRequest{Name: "root", HashedPassword: h})
		}, true},
		{"revoke role", func(s *Store) error { return s.UserRevokeRole(&pb.AuthUserRevokeRoleRequest{Name: "root", Role: "r"}) }, true},
		{"role delete", func(s *Store) error { return s.RoleDelete(&pb.AuthRoleDeleteRequest{Role: "r"}) }, true},
		{"disable", func(s *Store) error { s.AuthDisable(); return nil }, true},
		{"disable again", func(s *Store) error { s.AuthDisable(); return nil }, false},
	} {
		before := s.Revision()
		if err := tt.do(s); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if bumped := s.Revision() != before; bumped != tt.bump {
			t.Fatalf("%s: revision %d -> %d, want bumped %v", tt.name, before, s.Revision(), tt.bump)
		}
	}
}

func TestStoreUsersAndRoles(t *testing.T) {
	s := NewStore(testCost, nil)
	h := mustHash(t, "pw")
	runSteps(t, s, []step{
		{"user add empty", userAdd("", h), rpctypes.ErrGRPCUserEmpty},
		{"user add", userAdd("u", h), nil},
		{"user add again", userAdd("u", h), rpctypes.ErrGRPCUserAlreadyExist},
		{"user add bad hash", userAdd("v", "%%%"), ErrNoPasswordUser},
		{"role add empty", roleAdd(""), rpctypes.ErrGRPCRoleEmpty},
		{"role add", roleAdd("r2"), nil},
		{"role add again", roleAdd("r2"), rpctypes.ErrGRPCRoleAlreadyExist},
		{"role add", roleAdd("r1"), nil},
		{"grant to nobody", grantRole("x", "r1"), rpctypes.ErrGRPCUserNotFound},
		{"grant missing role", grantRole("u", "x"), rpctypes.ErrGRPCRoleNotFound},
		{"grant empty role", grantRole("u", ""), rpctypes.ErrGRPCRoleNotFound},
		{"grant r2", grantRole("u", "r2"), nil},
		{"grant r1", grantRole("u", "r1"), nil},
		{"revoke not granted", func(s *Store) error { return s.UserRevokeRole(&pb.AuthUserRevokeRoleRequest{Name: "u", Role: "root"}) }, rpctypes.ErrGRPCRoleNotGranted},
		{"revoke from nobody", func(s *Store) error { return s.UserRevokeRole(&pb.AuthUserRevokeRoleRequest{Name: "x", Role: "r1"}) }, rpctypes.ErrGRPCUserNotFound},
		{"delete nobody", func(s *Store) error { return s.UserDelete(&pb.AuthUserDeleteRequest{Name: "x"}) }, rpctypes.ErrGRPCUserNotFound},
		{"delete missing role", func(s *Store) error { return s.RoleDelete(&pb.AuthRoleDeleteRequest{Role: "x"}) }, rpctypes.ErrGRPCRoleNotFound},
		{"change password of nobody", func(s *Store) error {
			return s.UserChangePassword(&pb.AuthUserChangePasswordRequest{Name: "x", HashedPassword: h})
		}, rpctypes.ErrGRPCUserNotFound},
		{"grant no permission", func(s *Store) error { return s.RoleGrantPermission(&pb.AuthRoleGrantPermissionRequest{Name: "r1"}) }, rpctypes.ErrGRPCPermissionNotGiven},
		{"grant bad range", func(s *Store) error {
			return s.RoleGrantPermission(&pb.AuthRoleGrantPermissionRequest{Name: "r1", Perm: perm(R, "b", "a")})
		}, rpctypes.ErrGRPCInvalidAuthMgmt},
		{"grant to missing role", func(s *Store) error {
			return s.RoleGrantPermission(&pb.AuthRoleGrantPermissionRequest{Name: "x", Perm: perm(R, "a", "")})
		}, rpctypes.ErrGRPCRoleNotFound},
		{"revoke from missing role", func(s *Store) error {
			return s.RoleRevokePermission(&pb.AuthRoleRevokePermissionRequest{Role: "x", Key: []byte("a")})
		}, rpctypes.ErrGRPCRoleNotFound},
		{"grant c", func(s *Store) error {
			return s.RoleGrantPermission(&pb.AuthRoleGrantPermissionRequest{Name: "r1", Perm: perm(W, "c", "d")})
		}, nil},
		{"grant a", func(s *Store) error {
			return s.RoleGrantPermission(&pb.AuthRoleGrantPermissionRequest{Name: "r1", Perm: perm(R, "a", "\x00")})
		}, nil},
	})

	users := s.UserList().Users
	if want := []string{"u"}; !slices.Equal(users, want) {
		t.Errorf("UserList = %q, want %q", users, want)
	}
	if roles, want := s.RoleList().Roles, []string{"r1", "r2"}; !slices.Equal(roles, want) {
		t.Errorf("RoleList = %q, want %q", roles, want)
	}
	ug, err := s.UserGet(&pb.AuthUserGetRequest{Name: "u"})
	if err != nil || !slices.Equal(ug.Roles, []string{"r1", "r2"}) {
		t.Errorf("UserGet = %v, %v; want roles sorted [r1 r2]", ug, err)
	}
	rg, err := s.RoleGet(&pb.AuthRoleGetRequest{Role: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []*authpb.Permission{perm(R, "a", "\x00"), perm(W, "c", "d")}; !protoSliceEqual(rg.Perm, want) {
		t.Errorf("RoleGet = %v, want sorted by key %v", rg.Perm, want)
	}
	if !s.HasRole("u", "r2") || s.HasRole("u", "root") || s.HasRole("x", "r1") {
		t.Error("HasRole is wrong")
	}
	for _, tt := range []struct {
		user, key, end string
		typ            authpb.Permission_Type
		want           bool
	}{
		{"u", "a", "", R, true},
		{"u", "zz", "\x00", R, true},
		{"u", "a", "", W, false},
		{"u", "c", "d", W, true},
		{"x", "a", "", R, false},
	} {
		if got := s.Allowed(tt.user, []byte(tt.key), []byte(tt.end), tt.typ); got != tt.want {
			t.Errorf("Allowed(%q, %q, %q, %v) = %v, want %v", tt.user, tt.key, tt.end, tt.typ, got, tt.want)
		}
	}

	// Deleting a role revokes it from its users.
	if err := s.RoleDelete(&pb.AuthRoleDeleteRequest{Role: "r2"}); err != nil {
		t.Fatal(err)
	}
	if ug, _ := s.UserGet(&pb.AuthUserGetRequest{Name: "u"}); !slices.Equal(ug.Roles, []string{"r1"}) {
		t.Errorf("after RoleDelete, roles %q", ug.Roles)
	}
}

func protoSliceEqual[M proto.Message](a, b []M) bool {
	return slices.EqualFunc(a, b, func(x, y M) bool { return proto.Equal(x, y) })
}

func TestStoreRootRoleGet(t *testing.T) {
	s := NewStore(testCost, nil)
	if _, err := s.RoleGet(&pb.AuthRoleGetRequest{Role: "root"}); err != rpctypes.ErrGRPCRoleNotFound {
		t.Fatalf("RoleGet(root) before RoleAdd: %v", err)
	}
	runSteps(t, s, []step{
		{"add root role", roleAdd("root"), nil},
		{"grant it a key", func(s *Store) error {
			return s.RoleGrantPermission(&pb.AuthRoleGrantPermissionRequest{Name: "root", Perm: perm(R, "a", "")})
		}, nil},
	})
	rg, err := s.RoleGet(&pb.AuthRoleGetRequest{Role: "root"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []*authpb.Permission{{PermType: RW, Key: []byte{}, RangeEnd: []byte{0}}}; !protoSliceEqual(rg.Perm, want) {
		t.Errorf("RoleGet(root) = %v, want %v whatever was granted", rg.Perm, want)
	}
}

func TestStorePasswords(t *testing.T) {
	s := NewStore(testCost, nil)
	if _, err := s.CheckPassword("u", "pw"); err != rpctypes.ErrGRPCAuthNotEnabled {
		t.Fatalf("CheckPassword with auth disabled: %v", err)
	}
	if _, err := s.Authenticate("u"); err != rpctypes.ErrGRPCAuthNotEnabled {
		t.Fatalf("Authenticate with auth disabled: %v", err)
	}
	add := &pb.AuthUserAddRequest{Name: "root", Password: "rootpw"}
	if err := PrepareUserAdd(add, testCost); err != nil {
		t.Fatal(err)
	}
	if add.Password != "" || add.HashedPassword == "" {
		t.Fatalf("PrepareUserAdd left %+v", add)
	}
	runSteps(t, s, []step{
		{"add root", func(s *Store) error { return s.UserAdd(add) }, nil},
		{"grant root", grantRole("root", "root"), nil},
		{"add nopw", func(s *Store) error {
			return s.UserAdd(&pb.AuthUserAddRequest{Name: "nopw", Options: &authpb.UserAddOptions{NoPassword: true}})
		}, nil},
		// An entry from an etcd older than 3.5 carries the plaintext.
		{"add legacy", func(s *Store) error { return s.UserAdd(&pb.AuthUserAddRequest{Name: "legacy", Password: "old"}) }, nil},
		{"enable", (*Store).AuthEnable, nil},
	})
	rev := s.Revision()
	for _, tt := range []struct {
		user, pw string
		want     error
	}{
		{"root", "rootpw", nil},
		{"root", "wrong", rpctypes.ErrGRPCAuthFailed},
		{"nobody", "rootpw", rpctypes.ErrGRPCAuthFailed},
		{"nopw", "", ErrNoPasswordUser},
		{"legacy", "old", nil},
	} {
		got, err := s.CheckPassword(tt.user, tt.pw)
		if err != tt.want || (err == nil && got != rev) {
			t.Errorf("CheckPassword(%q, %q) = %d, %v; want %d, %v", tt.user, tt.pw, got, err, rev, tt.want)
		}
	}
	if _, err := s.Authenticate("nopw"); err != rpctypes.ErrGRPCAuthFailed {
		t.Errorf("Authenticate(nopw) = %v", err)
	}
	if got, err := s.Authenticate("root"); err != nil || got != rev {
		t.Errorf("Authenticate(root) = %d, %v", got, err)
	}

	// A changed password invalidates the old one; a no-password user keeps
	// none.
	chg := &pb.AuthUserChangePasswordRequest{Name: "root", Password: "new"}
	if err := PrepareUserChangePassword(chg, testCost); err != nil {
		t.Fatal(err)
	}
	if err := s.UserChangePassword(chg); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CheckPassword("root", "rootpw"); err != rpctypes.ErrGRPCAuthFailed {
		t.Errorf("old password after change: %v", err)
	}
	if _, err := s.CheckPassword("root", "new"); err != nil {
		t.Errorf("new password after change: %v", err)
	}
	if err := s.UserChangePassword(&pb.AuthUserChangePasswordRequest{Name: "nopw", HashedPassword: mustHash(t, "x")}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CheckPassword("nopw", "x"); err != ErrNoPasswordUser {
		t.Errorf("no-password user after a password change: %v", err)
	}
}

// hookLog records the token hooks a Store calls.
type hookLog []string

func (h *hookLog) Enable()                 { *h = append(*h, "enable") }
func (h *hookLog) Disable()                { *h = append(*h, "disable") }
func (h *hookLog) InvalidateUser(u string) { *h = append(*h, "invalidate "+u) }

func TestStoreTokenHooks(t *testing.T) {
	var log hookLog
	s := NewStore(testCost, &log)
	h := mustHash(t, "pw")
	runSteps(t, s, []step{
		{"add root", userAdd("root", h), nil},
		{"add u", userAdd("u", h), nil},
		{"grant root", grantRole("root", "root"), nil},
		{"enable", (*Store).AuthEnable, nil},
		{"enable again", (*Store).AuthEnable, nil},
		{"change password", func(s *Store) error {
			return s.UserChangePassword(&pb.AuthUserChangePasswordRequest{Name: "u", HashedPassword: h})
		}, nil},
		{"delete", func(s *Store) error { return s.UserDelete(&pb.AuthUserDeleteRequest{Name: "u"}) }, nil},
		{"disable", func(s *Store) error { s.AuthDisable(); return nil }, nil},
		{"disable again", func(s *Store) error { s.AuthDisable(); return nil }, nil},
	})
	if want := []string{"enable", "invalidate u", "invalidate u", "disable"}; !slices.Equal(log, want) {
		t.Errorf("hooks %q, want %q", log, want)
	}
}

func TestAccess(t *testing.T) {
	s := NewStore(testCost, nil)
	h := mustHash(t, "pw")
	runSteps(t, s, []step{
		{"add root", userAdd("root", h), nil},
		{"grant root", grantRole("root", "root"), nil},
		{"add u", userAdd("u", h), nil},
		{"add r", roleAdd("r"), nil},
		{"grant perm", func(s *Store) error {
			return s.RoleGrantPermission(&pb.AuthRoleGrantPermissionRequest{Name: "r", Perm: perm(R, "a", "b")})
		}, nil},
		{"grant r", grantRole("u", "r"), nil},
	})

	// Auth disabled: everything passes, credentials or not.
	for _, a := range []Access{s.Access(nil), s.Access(&AuthInfo{Username: "x"})} {
		for _, err := range []error{a.RequireAuthInfo(), a.IsAdminPermitted(), a.IsPutPermitted([]byte("z")), a.IsRangePermitted([]byte("z"), nil)} {
			if err != nil {
				t.Fatalf("auth disabled: %v", err)
			}
		}
	}
	if err := s.AuthEnable(); err != nil {
		t.Fatal(err)
	}
	rev := s.Revision()
	for _, tt := range []struct {
		name           string
		info           *AuthInfo
		require, admin error
		readA, writeA  error
		readZ          error
	}{
		{"no credentials", nil, rpctypes.ErrGRPCUserEmpty, rpctypes.ErrGRPCUserEmpty, rpctypes.ErrGRPCUserEmpty, rpctypes.ErrGRPCUserEmpty, rpctypes.ErrGRPCUserEmpty},
		{"root", &AuthInfo{"root", rev}, nil, nil, nil, nil, nil},
		{"u", &AuthInfo{"u", rev}, nil, rpctypes.ErrGRPCPermissionDenied, nil, rpctypes.ErrGRPCPermissionDenied, rpctypes.ErrGRPCPermissionDenied},
		{"u, newer token", &AuthInfo{"u", rev + 5}, nil, rpctypes.ErrGRPCPermissionDenied, nil, rpctypes.ErrGRPCPermissionDenied, rpctypes.ErrGRPCPermissionDenied},
		{"u, old token", &AuthInfo{"u", rev - 1}, nil, rpctypes.ErrGRPCPermissionDenied, rpctypes.ErrGRPCAuthOldRevision, rpctypes.ErrGRPCAuthOldRevision, rpctypes.ErrGRPCAuthOldRevision},
		{"root, old token", &AuthInfo{"root", rev - 1}, nil, nil, rpctypes.ErrGRPCAuthOldRevision, rpctypes.ErrGRPCAuthOldRevision, rpctypes.ErrGRPCAuthOldRevision},
		{"revision 0", &AuthInfo{"u", 0}, nil, rpctypes.ErrGRPCPermissionDenied, rpctypes.ErrGRPCUserEmpty, rpctypes.ErrGRPCUserEmpty, rpctypes.ErrGRPCUserEmpty},
		{"no such user", &AuthInfo{"x", rev}, nil, rpctypes.ErrGRPCUserNotFound, rpctypes.ErrGRPCPermissionDenied, rpctypes.ErrGRPCPermissionDenied, rpctypes.ErrGRPCPermissionDenied},
		{"empty user name", &AuthInfo{"", rev}, nil, rpctypes.ErrGRPCUserEmpty, rpctypes.ErrGRPCPermissionDenied, rpctypes.ErrGRPCPermissionDenied, rpctypes.ErrGRPCPermissionDenied},
	} {
		a := s.Access(tt.info)
		for _, c := range []struct {
			what      string
			got, want error
		}{
			{"RequireAuthInfo", a.RequireAuthInfo(), tt.require},
			{"IsAdminPermitted", a.IsAdminPermitted(), tt.admin},
			{"read a", a.IsRangePermitted([]byte("a"), nil), tt.readA},
			{"write a", a.IsPutPermitted([]byte("a")), tt.writeA},
			{"read z", a.IsRangePermitted([]byte("z"), nil), tt.readZ},
		} {
			if c.got != c.want {
				t.Errorf("%s: %s = %v, want %v", tt.name, c.what, c.got, c.want)
			}
		}
	}
}

// TestStoreMatchesEtcd applies random sequences of auth operations to etcd's
// auth store and to a Store, and after each compares the errors, what every
// read shows and every permission check answers.
func TestStoreMatchesEtcd(t *testing.T) {
	pw := mustHash(t, "pw")
	users := []string{"root", "u1", "u2", ""}
	roles := []string{"root", "r1", "r2", ""}
	for seed := range uint64(12) {
		rng := rand.New(rand.NewPCG(seed, 99))
		as, s := newEtcdStore(t, ""), NewStore(testCost, nil)
		pick := func(s []string) string { return s[rng.IntN(len(s))] }
		for i := range 250 {
			var (
				desc      string
				etcdErr   error
				strataErr error
			)
			switch op := rng.IntN(14); op {
			case 0, 1:
				r := &pb.AuthUserAddRequest{Name: pick(users), HashedPassword: pw}
				switch rng.IntN(5) {
				case 0:
					r.Options = &authpb.UserAddOptions{NoPassword: true}
				case 1:
					r.HashedPassword = "not base64!"
				case 2:
					r.HashedPassword = ""
				}
				desc = fmt.Sprintf("UserAdd %v", r)
				_, etcdErr = as.UserAdd(proto.CloneOf(r))
				strataErr = s.UserAdd(r)
			case 2:
				r := &pb.AuthUserDeleteRequest{Name: pick(users)}
				desc = fmt.Sprintf("UserDelete %v", r)
				_, etcdErr = as.UserDelete(r)
				strataErr = s.UserDelete(r)
			case 3:
				r := &pb.AuthUserChangePasswordRequest{Name: pick(users), HashedPassword: pw}
				if rng.IntN(3) == 0 {
					r.HashedPassword = "*"
				}
				desc = fmt.Sprintf("UserChangePassword %v", r)
				_, etcdErr = as.UserChangePassword(r)
				strataErr = s.UserChangePassword(r)
			case 4, 5:
				r := &pb.AuthUserGrantRoleRequest{User: pick(users), Role: pick(roles)}
				desc = fmt.Sprintf("UserGrantRole %v", r)
				_, etcdErr = as.UserGrantRole(r)
				strataErr = s.UserGrantRole(r)
			case 6:
				r := &pb.AuthUserRevokeRoleRequest{Name: pick(users), Role: pick(roles)}
				desc = fmt.Sprintf("UserRevokeRole %v", r)
				_, etcdErr = as.UserRevokeRole(r)
				strataErr = s.UserRevokeRole(r)
			case 7:
				r := &pb.AuthRoleAddRequest{Name: pick(roles)}
				desc = fmt.Sprintf("RoleAdd %v", r)
				_, etcdErr = as.RoleAdd(r)
				strataErr = s.RoleAdd(r)
			case 8:
				r := &pb.AuthRoleDeleteRequest{Role: pick(roles)}
				desc = fmt.Sprintf("RoleDelete %v", r)
				_, etcdErr = as.RoleDelete(r)
				strataErr = s.RoleDelete(r)
			case 9, 10:
				r := &pb.AuthRoleGrantPermissionRequest{Name: pick(roles)}
				if rng.IntN(10) > 0 {
					r.Perm = randPerms(rng, 1)[0]
				}
				desc = fmt.Sprintf("RoleGrantPermission %v", r)
				_, etcdErr = as.RoleGrantPermission(proto.CloneOf(r))
				strataErr = s.RoleGrantPermission(r)
			case 11:
				// Revoke a permission the role has, or a random one.
				role := pick(roles)
				r := &pb.AuthRoleRevokePermissionRequest{Role: role, Key: randKey(rng), RangeEnd: randEnd(rng)}
				if rg, err := s.RoleGet(&pb.AuthRoleGetRequest{Role: role}); err == nil && len(rg.Perm) > 0 && rng.IntN(2) == 0 {
					p := rg.Perm[rng.IntN(len(rg.Perm))]
					r.Key, r.RangeEnd = p.Key, p.RangeEnd
				}
				desc = fmt.Sprintf("RoleRevokePermission %v", r)
				_, etcdErr = as.RoleRevokePermission(r)
				strataErr = s.RoleRevokePermission(r)
			case 12:
				desc = "AuthEnable"
				etcdErr = as.AuthEnable()
				strataErr = s.AuthEnable()
			case 13:
				desc = "AuthDisable"
				as.AuthDisable()
				s.AuthDisable()
			}
			if !sameError(etcdGRPCError(etcdErr), strataErr) {
				t.Fatalf("seed %d op %d %s: etcd %v, Store %v", seed, i, desc, etcdErr, strataErr)
			}
			compareWithEtcd(t, fmt.Sprintf("seed %d op %d %s", seed, i, desc), as, s, rng, i%25 == 0)
		}
		// The state survives encoding: a Store loaded from it answers as
		// etcd does too.
		b, err := s.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		s2 := NewStore(testCost, nil)
		if err := s2.Unmarshal(b); err != nil {
			t.Fatalf("seed %d: Unmarshal(Marshal()): %v", seed, err)
		}
		compareWithEtcd(t, fmt.Sprintf("seed %d reloaded", seed), as, s2, rng, true)
	}
}

// compareWithEtcd compares everything a client can observe of the two
// stores. With passwords, it also checks passwords (slow: bcrypt).
func compareWithEtcd(t *testing.T, at string, as etcdauth.AuthStore, s *Store, rng *rand.Rand, passwords bool) {
	t.Helper()
	if as.Revision() != s.Revision() || as.IsAuthEnabled() != s.IsAuthEnabled() {
		t.Fatalf("%s: etcd at revision %d enabled %v, Store %d %v", at, as.Revision(), as.IsAuthEnabled(), s.Revision(), s.IsAuthEnabled())
	}
	ul, _ := as.UserList(&pb.AuthUserListRequest{})
	if got := s.UserList(); !slices.Equal(ul.Users, got.Users) {
		t.Fatalf("%s: UserList etcd %q, Store %q", at, ul.Users, got.Users)
	}
	rl, _ := as.RoleList(&pb.AuthRoleListRequest{})
	if got := s.RoleList(); !slices.Equal(rl.Roles, got.Roles) {
		t.Fatalf("%s: RoleList etcd %q, Store %q", at, rl.Roles, got.Roles)
	}
	for _, u := range append(ul.Users, "nobody") {
		eg, eerr := as.UserGet(&pb.AuthUserGetRequest{Name: u})
		sg, serr := s.UserGet(&pb.AuthUserGetRequest{Name: u})
		if !sameError(etcdGRPCError(eerr), serr) || (eerr == nil && !slices.Equal(eg.Roles, sg.Roles)) {
			t.Fatalf("%s: UserGet(%q) etcd %v %v, Store %v %v", at, u, eg, eerr, sg, serr)
		}
		for _, r := range []string{"root", "r1", "r2"} {
			if as.HasRole(u, r) != s.HasRole(u, r) {
				t.Fatalf("%s: HasRole(%q, %q) differs", at, u, r)
			}
		}
		if passwords {
			erev, eerr := as.CheckPassword(u, "pw")
			srev, serr := s.CheckPassword(u, "pw")
			if !sameError(etcdGRPCError(eerr), serr) || erev != srev {
				t.Fatalf("%s: CheckPassword(%q) etcd %d %v, Store %d %v", at, u, erev, eerr, srev, serr)
			}
		}
		// Permission checks, at the current revision, an older one and 0.
		for _, rev := range []uint64{s.Revision(), s.Revision() - 1, 0} {
			ai := &etcdauth.AuthInfo{Username: u, Revision: rev}
			a := s.Access(&AuthInfo{Username: u, Revision: rev})
			if e, g := etcdGRPCError(as.IsAdminPermitted(ai)), a.IsAdminPermitted(); !sameError(e, g) {
				t.Fatalf("%s: IsAdminPermitted(%v) etcd %v, Store %v", at, ai, e, g)
			}
			for range 10 {
				key, end := randKey(rng), randEnd(rng)
				if e, g := etcdGRPCError(as.IsRangePermitted(ai, key, end)), a.IsRangePermitted(key, end); !sameError(e, g) {
					t.Fatalf("%s: IsRangePermitted(%v, %q, %q) etcd %v, Store %v", at, ai, key, end, e, g)
				}
				if e, g := etcdGRPCError(as.IsDeleteRangePermitted(ai, key, end)), a.IsDeleteRangePermitted(key, end); !sameError(e, g) {
					t.Fatalf("%s: IsDeleteRangePermitted(%v, %q, %q) etcd %v, Store %v", at, ai, key, end, e, g)
				}
				if e, g := etcdGRPCError(as.IsPutPermitted(ai, key)), a.IsPutPermitted(key); !sameError(e, g) {
					t.Fatalf("%s: IsPutPermitted(%v, %q) etcd %v, Store %v", at, ai, key, e, g)
				}
			}
		}
	}
	for _, r := range append(rl.Roles, "nobody") {
		eg, eerr := as.RoleGet(&pb.AuthRoleGetRequest{Role: r})
		sg, serr := s.RoleGet(&pb.AuthRoleGetRequest{Role: r})
		if !sameError(etcdGRPCError(eerr), serr) || (eerr == nil && !protoSliceEqual(eg.Perm, sg.Perm)) {
			t.Fatalf("%s: RoleGet(%q) etcd %v %v, Store %v %v", at, r, eg, eerr, sg, serr)
		}
	}
}

// TestStoreConcurrentReaders runs one writer against readers, for the race
// detector: Access snapshots and reads must not race with changes.
func TestStoreConcurrentReaders(t *testing.T) {
	s := sampleStore(t)
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				a := s.Access(&AuthInfo{Username: "u", Revision: s.Revision()})
				_ = a.IsRangePermitted([]byte("a"), []byte("z"))
				_ = a.IsDeleteRangePermitted([]byte("b"), []byte("a"))
				_, _ = s.RoleGet(&pb.AuthRoleGetRequest{Role: "r"})
				_, _ = s.UserGet(&pb.AuthUserGetRequest{Name: "u"})
				_, _ = s.Marshal()
			}
		}()
	}
	for i := range 200 {
		key := []byte{'k', byte(i)}
		if err := s.RoleGrantPermission(&pb.AuthRoleGrantPermissionRequest{Name: "r", Perm: &authpb.Permission{Key: key}}); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			if err := s.RoleRevokePermission(&pb.AuthRoleRevokePermissionRequest{Role: "r", Key: key}); err != nil {
				t.Fatal(err)
			}
		}
	}
	close(done)
	wg.Wait()
}
