package auth

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// sampleStore has every kind of state: users with and without passwords
// and roles, roles with every kind of permission, auth enabled.
func sampleStore(t testing.TB) *Store {
	s := NewStore(testCost, nil)
	h := mustHash(t, "pw")
	for _, err := range []error{
		s.UserAdd(&pb.AuthUserAddRequest{Name: "root", HashedPassword: h}),
		s.UserAdd(&pb.AuthUserAddRequest{Name: "nopw", Options: &authpb.UserAddOptions{NoPassword: true}}),
		s.UserAdd(&pb.AuthUserAddRequest{Name: "u", HashedPassword: h}),
		s.RoleAdd(&pb.AuthRoleAddRequest{Name: "r"}),
		s.RoleAdd(&pb.AuthRoleAddRequest{Name: "empty"}),
		s.RoleGrantPermission(&pb.AuthRoleGrantPermissionRequest{Name: "r", Perm: perm(R, "a", "")}),
		s.RoleGrantPermission(&pb.AuthRoleGrantPermissionRequest{Name: "r", Perm: perm(W, "b", "c")}),
		s.RoleGrantPermission(&pb.AuthRoleGrantPermissionRequest{Name: "r", Perm: perm(RW, "d", "\x00")}),
		s.UserGrantRole(&pb.AuthUserGrantRoleRequest{User: "root", Role: "root"}),
		s.UserGrantRole(&pb.AuthUserGrantRoleRequest{User: "u", Role: "r"}),
		s.UserGrantRole(&pb.AuthUserGrantRoleRequest{User: "u", Role: "empty"}),
		s.AuthEnable(),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func mustMarshalStore(t testing.TB, s *Store) []byte {
	t.Helper()
	b, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMarshalRoundTrip(t *testing.T) {
	s := sampleStore(t)
	b := mustMarshalStore(t, s)
	var hooks hookLog
	s2 := NewStore(testCost, &hooks)
	if err := s2.Unmarshal(b); err != nil {
		t.Fatal(err)
	}
	if b2 := mustMarshalStore(t, s2); !bytes.Equal(b, b2) {
		t.Fatal("Marshal(Unmarshal(b)) != b")
	}
	if s2.Revision() != s.Revision() || !s2.IsAuthEnabled() {
		t.Errorf("reloaded at revision %d enabled %v", s2.Revision(), s2.IsAuthEnabled())
	}
	if want := []string{"enable"}; len(hooks) != 1 || hooks[0] != want[0] {
		t.Errorf("hooks %q, want %q", hooks, want)
	}
	// Permissions are derived again.
	a := s2.Access(&AuthInfo{Username: "u", Revision: s2.Revision()})
	if a.IsRangePermitted([]byte("a"), nil) != nil || a.IsPutPermitted([]byte("a")) == nil || a.IsRangePermitted([]byte("zz"), []byte{0}) != nil {
		t.Error("reloaded permissions differ")
	}
	if _, err := s2.CheckPassword("u", "pw"); err != nil {
		t.Errorf("reloaded password: %v", err)
	}
}

// TestMarshalIsOrderIndependent checks that states reached by different
// orders of operations encode alike when they are alike.
func TestMarshalIsOrderIndependent(t *testing.T) {
	build := func(names []string) []byte {
		s := NewStore(testCost, nil)
		for _, n := range names {
			if err := s.UserAdd(&pb.AuthUserAddRequest{Name: n, Options: &authpb.UserAddOptions{NoPassword: true}}); err != nil {
				t.Fatal(err)
			}
			if err := s.RoleAdd(&pb.AuthRoleAddRequest{Name: n}); err != nil {
				t.Fatal(err)
			}
		}
		return mustMarshalStore(t, s)
	}
	a, b := build([]string{"x", "y", "z", "w"}), build([]string{"z", "w", "y", "x"})
	if !bytes.Equal(a, b) {
		t.Fatal("same state, different bytes")
	}
}

// encoding is a state written field by field, in any order, to build
// encodings Marshal would not produce.
type encoding struct {
	magic   string
	version byte
	flags   byte
	rev     []byte // uvarint
	users   []proto.Message
	roles   []proto.Message
	extra   []byte
}

func uv(v uint64) []byte { return binary.AppendUvarint(nil, v) }

func (e encoding) bytes() []byte {
	b := append([]byte(e.magic), e.version, e.flags)
	b = append(b, e.rev...)
	for _, ms := range [][]proto.Message{e.users, e.roles} {
		b = binary.AppendUvarint(b, uint64(len(ms)))
		for _, m := range ms {
			enc, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
			if err != nil {
				panic(err)
			}
			b = binary.AppendUvarint(b, uint64(len(enc)))
			b = append(b, enc...)
		}
	}
	return append(b, e.extra...)
}

func validEncoding() encoding {
	return encoding{
		magic: codecMagic, version: codecVersion, flags: 1, rev: uv(7),
		users: []proto.Message{
			&authpb.User{Name: []byte("root"), Password: []byte("h"), Roles: []string{"root"}, Options: &authpb.UserAddOptions{}},
			&authpb.User{Name: []byte("u"), Roles: []string{"r", "s"}, Options: &authpb.UserAddOptions{NoPassword: true}},
		},
		roles: []proto.Message{
			&authpb.Role{Name: []byte("r"), KeyPermission: []*authpb.Permission{perm(R, "a", ""), perm(W, "a", "b"), perm(RW, "c", "\x00")}},
			&authpb.Role{Name: []byte("s")},
		},
	}
}

func TestUnmarshalRejects(t *testing.T) {
	if err := NewStore(testCost, nil).Unmarshal(validEncoding().bytes()); err != nil {
		t.Fatalf("the valid encoding is refused: %v", err)
	}
	userWithUnknownField := &authpb.User{Name: []byte("v")}
	userWithUnknownField.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 1))

	for _, tt := range []struct {
		name string
		edit func(e *encoding)
	}{
		{"bad magic", func(e *encoding) { e.magic = "SAUTX" }},
		{"unknown version", func(e *encoding) { e.version = 2 }},
		{"unknown flag", func(e *encoding) { e.flags = 3 }},
		{"revision 0", func(e *encoding) { e.rev = uv(0) }},
		{"non-minimal varint", func(e *encoding) { e.rev = []byte{0x87, 0x00} }},
		{"trailing byte", func(e *encoding) { e.extra = []byte{0} }},
		{"users out of order", func(e *encoding) { e.users[0], e.users[1] = e.users[1], e.users[0] }},
		{"duplicate user", func(e *encoding) { e.users = append(e.users, e.users[1]) }},
		{"empty user name", func(e *encoding) { e.users = append(e.users, &authpb.User{}) }},
		{"unknown user field", func(e *encoding) { e.users = append(e.users, userWithUnknownField) }},
		{"user roles unsorted", func(e *encoding) { e.users[1].(*authpb.User).Roles = []string{"s", "r"} }},
		{"user roles repeated", func(e *encoding) { e.users[1].(*authpb.User).Roles = []string{"r", "r"} }},
		{"user holds a missing role", func(e *encoding) { e.users[1].(*authpb.User).Roles = []string{"q"} }},
		{"enabled without root role", func(e *encoding) { e.users[0].(*authpb.User).Roles = nil }},
		{"enabled without root", func(e *encoding) { e.users = e.users[1:] }},
		{"roles out of order", func(e *encoding) { e.roles[0], e.roles[1] = e.roles[1], e.roles[0] }},
		{"ungrantable permission", func(e *encoding) { e.roles[0].(*authpb.Role).KeyPermission[1] = perm(W, "b", "a") }},
		{"unknown permission type", func(e *encoding) { e.roles[0].(*authpb.Role).KeyPermission[1].PermType = 3 }},
		{"permissions out of order", func(e *encoding) {
			ps := e.roles[0].(*authpb.Role).KeyPermission
			ps[0], ps[2] = ps[2], ps[0]
		}},
		{"truncated", func(e *encoding) { e.roles = nil; e.extra = []byte{5, 1} }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := validEncoding()
			tt.edit(&e)
			s := sampleStore(t)
			before := mustMarshalStore(t, s)
			if err := s.Unmarshal(e.bytes()); !errors.Is(err, ErrBadState) {
				t.Fatalf("Unmarshal = %v, want ErrBadState", err)
			}
			if after := mustMarshalStore(t, s); !bytes.Equal(before, after) {
				t.Fatal("a refused Unmarshal changed the state")
			}
		})
	}
	for n := range len(validEncoding().bytes()) {
		if err := NewStore(testCost, nil).Unmarshal(validEncoding().bytes()[:n]); err == nil {
			t.Fatalf("prefix of %d bytes accepted", n)
		}
	}
}
