package auth

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"go.etcd.io/etcd/api/v3/authpb"
	"google.golang.org/protobuf/proto"
)

// The state encoding, version 1:
//
//	magic    "SAUTH"
//	version  1 byte, codecVersion
//	flags    1 byte: bit 0 is the enabled flag, the others are zero
//	revision uvarint
//	users    uvarint count, then per user in name order: uvarint length,
//	         authpb.User in deterministic protobuf encoding
//	roles    the same for authpb.Role
//
// The encoding of a state is unique: Unmarshal accepts only what Marshal
// produces, so equal states are equal bytes and members can compare them.
const (
	codecMagic   = "SAUTH"
	codecVersion = 1
)

var marshalOpts = proto.MarshalOptions{Deterministic: true}

// Marshal returns the state (enabled flag, revision, users and roles) in
// its unique encoding. It fails only for a name that protobuf refuses
// (invalid UTF-8 in a role name), which gRPC never delivers.
func (s *Store) Marshal() ([]byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return encodeState(&s.mu.state)
}

func encodeState(st *state) ([]byte, error) {
	b := append([]byte(codecMagic), codecVersion)
	var flags byte
	if st.enabled {
		flags |= 1
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, st.revision)
	var err error
	b = binary.AppendUvarint(b, uint64(len(st.users)))
	for _, name := range sortedKeys(st.users) {
		if b, err = appendMessage(b, st.users[name]); err != nil {
			return nil, err
		}
	}
	b = binary.AppendUvarint(b, uint64(len(st.roles)))
	for _, name := range sortedKeys(st.roles) {
		if b, err = appendMessage(b, st.roles[name]); err != nil {
			return nil, err
		}
	}
	return b, nil
}

func appendMessage(b []byte, m proto.Message) ([]byte, error) {
	enc, err := marshalOpts.Marshal(m)
	if err != nil {
		return nil, err
	}
	b = binary.AppendUvarint(b, uint64(len(enc)))
	return append(b, enc...), nil
}

// Unmarshal replaces the state with the one b encodes, as when a member
// loads a snapshot, and tells the token hooks whether auth is now enabled.
// It refuses (ErrBadState, state unchanged) anything Marshal would not
// produce, including states that break the Store's invariants.
func (s *Store) Unmarshal(b []byte) error {
	st, err := decodeState(b)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadState, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.state = *st
	if s.tokens != nil {
		// etcd only enables on recovery; disabling as well keeps tokens
		// of a superseded enabled state from outliving it.
		if st.enabled {
			s.tokens.Enable()
		} else {
			s.tokens.Disable()
		}
	}
	return nil
}

type decoder struct{ b []byte }

func (d *decoder) uvarint() (uint64, error) {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		return 0, fmt.Errorf("bad uvarint")
	}
	d.b = d.b[n:]
	return v, nil
}

func (d *decoder) message(m proto.Message) error {
	n, err := d.uvarint()
	if err != nil {
		return err
	}
	if n > uint64(len(d.b)) {
		return fmt.Errorf("message of %d bytes, %d left", n, len(d.b))
	}
	if err := proto.Unmarshal(d.b[:n], m); err != nil {
		return err
	}
	d.b = d.b[n:]
	return nil
}

// count reads an entry count; every entry takes at least one byte.
func (d *decoder) count() (int, error) {
	n, err := d.uvarint()
	if err != nil {
		return 0, err
	}
	if n > uint64(len(d.b)) {
		return 0, fmt.Errorf("%d entries in %d bytes", n, len(d.b))
	}
	return int(n), nil
}

func decodeState(b []byte) (*state, error) {
	if !bytes.HasPrefix(b, []byte(codecMagic)) {
		return nil, fmt.Errorf("no magic")
	}
	d := &decoder{b: b[len(codecMagic):]}
	if len(d.b) < 2 {
		return nil, fmt.Errorf("truncated header")
	}
	if v := d.b[0]; v != codecVersion {
		return nil, fmt.Errorf("unknown version %d", v)
	}
	flags := d.b[1]
	if flags&^1 != 0 {
		return nil, fmt.Errorf("unknown flags %#x", flags)
	}
	d.b = d.b[2:]
	st := &state{enabled: flags&1 != 0, users: map[string]*authpb.User{}, roles: map[string]*authpb.Role{}}
	var err error
	if st.revision, err = d.uvarint(); err != nil {
		return nil, err
	}
	if st.revision == 0 {
		return nil, fmt.Errorf("auth revision 0")
	}

	n, err := d.count()
	if err != nil {
		return nil, err
	}
	for range n {
		u := &authpb.User{}
		if err := d.message(u); err != nil {
			return nil, fmt.Errorf("user: %v", err)
		}
		if len(u.Name) == 0 || st.users[string(u.Name)] != nil {
			return nil, fmt.Errorf("empty or duplicate user name %q", u.Name)
		}
		if hasUnknown(u) || hasUnknown(u.Options) {
			return nil, fmt.Errorf("user %q: unknown fields", u.Name)
		}
		if !isStrictlySorted(u.Roles) {
			return nil, fmt.Errorf("user %q: roles not sorted and unique", u.Name)
		}
		st.users[string(u.Name)] = u
	}

	if n, err = d.count(); err != nil {
		return nil, err
	}
	for range n {
		r := &authpb.Role{}
		if err := d.message(r); err != nil {
			return nil, fmt.Errorf("role: %v", err)
		}
		if len(r.Name) == 0 || st.roles[string(r.Name)] != nil {
			return nil, fmt.Errorf("empty or duplicate role name %q", r.Name)
		}
		if hasUnknown(r) {
			return nil, fmt.Errorf("role %q: unknown fields", r.Name)
		}
		for i, p := range r.KeyPermission {
			if hasUnknown(p) || authpb.Permission_Type_name[int32(p.PermType)] == "" || !ValidPermRange(p.Key, p.RangeEnd) {
				return nil, fmt.Errorf("role %q: bad permission %v", r.Name, p)
			}
			if i > 0 && bytes.Compare(r.KeyPermission[i-1].Key, p.Key) > 0 {
				return nil, fmt.Errorf("role %q: permissions not sorted by key", r.Name)
			}
		}
		st.roles[string(r.Name)] = r
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%d trailing bytes", len(d.b))
	}

	for name, u := range st.users {
		for _, role := range u.Roles {
			if role != RootRole && st.roles[role] == nil {
				return nil, fmt.Errorf("user %q holds missing role %q", name, role)
			}
		}
	}
	if st.enabled && (st.users[RootUser] == nil || !hasRootRole(st.users[RootUser])) {
		return nil, fmt.Errorf("auth enabled without user %q holding role %q", RootUser, RootRole)
	}

	// Order, duplicate fields and non-minimal varints all decode to the
	// same messages: only the encoding Marshal produces is accepted.
	enc, err := encodeState(st)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(enc, b) {
		return nil, fmt.Errorf("not in canonical encoding")
	}
	st.perms = derivePerms(st.users, st.roles)
	return st, nil
}

func hasUnknown(m proto.Message) bool {
	return m != nil && m.ProtoReflect().IsValid() && len(m.ProtoReflect().GetUnknown()) != 0
}

func isStrictlySorted(s []string) bool {
	for i := 1; i < len(s); i++ {
		if s[i-1] >= s[i] {
			return false
		}
	}
	return true
}
