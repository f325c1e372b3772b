package auth

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	etcdauth "go.etcd.io/etcd/server/v3/auth"
)

const (
	R  = authpb.Permission_READ
	W  = authpb.Permission_WRITE
	RW = authpb.Permission_READWRITE
)

func perm(t authpb.Permission_Type, key, end string) *authpb.Permission {
	p := &authpb.Permission{PermType: t, Key: []byte(key)}
	if end != "" {
		p.RangeEnd = []byte(end)
	}
	return p
}

func TestPermsAllowed(t *testing.T) {
	const all = "\x00"
	tests := []struct {
		name     string
		perms    []*authpb.Permission
		key, end string
		typ      authpb.Permission_Type
		want     bool
	}{
		{"single key: the key", []*authpb.Permission{perm(R, "a", "")}, "a", "", R, true},
		{"single key: another key", []*authpb.Permission{perm(R, "a", "")}, "b", "", R, false},
		{"single key: a key it prefixes", []*authpb.Permission{perm(R, "a", "")}, "ab", "", R, false},
		{"single key: the range of the key alone", []*authpb.Permission{perm(R, "a", "")}, "a", "a\x00", R, true},
		{"single key: a range beyond it", []*authpb.Permission{perm(R, "a", "")}, "a", "b", R, false},
		{"single key: from the key", []*authpb.Permission{perm(R, "a", "")}, "a", all, R, false},

		{"prefix: the prefix", []*authpb.Permission{perm(R, "foo", "fop")}, "foo", "fop", R, true},
		{"prefix: a sub-range", []*authpb.Permission{perm(R, "foo", "fop")}, "foo/x", "foo/y", R, true},
		{"prefix: a key in it", []*authpb.Permission{perm(R, "foo", "fop")}, "foo/x", "", R, true},
		{"prefix: the end key", []*authpb.Permission{perm(R, "foo", "fop")}, "fop", "", R, false},
		{"prefix: starting before", []*authpb.Permission{perm(R, "foo", "fop")}, "fo", "fop", R, false},
		{"prefix: ending after", []*authpb.Permission{perm(R, "foo", "fop")}, "foo", "fop\x00", R, false},
		{"prefix: from a key in it", []*authpb.Permission{perm(R, "foo", "fop")}, "foo", all, R, false},

		{"from key: from the key", []*authpb.Permission{perm(R, "foo", all)}, "foo", all, R, true},
		{"from key: from a later key", []*authpb.Permission{perm(R, "foo", all)}, "zzz", all, R, true},
		{"from key: from an earlier key", []*authpb.Permission{perm(R, "foo", all)}, "fo", all, R, false},
		{"from key: a later key", []*authpb.Permission{perm(R, "foo", all)}, "\xff\xff", "", R, true},
		{"from key: a bounded range in it", []*authpb.Permission{perm(R, "foo", all)}, "g", "h", R, true},

		{"every key: all keys", []*authpb.Permission{perm(R, all, all)}, all, all, R, true},
		{"every key: the smallest key", []*authpb.Permission{perm(R, all, all)}, "\x00", "", R, true},
		{"every key: the empty key", []*authpb.Permission{perm(R, all, all)}, "", "", R, false},
		{"every key: from the empty key", []*authpb.Permission{perm(R, all, all)}, "", all, R, false},

		{"union: touching ranges", []*authpb.Permission{perm(R, "a", "c"), perm(R, "c", "e")}, "b", "d", R, true},
		{"union: overlapping ranges", []*authpb.Permission{perm(R, "a", "d"), perm(R, "c", "e")}, "a", "e", R, true},
		{"union: a gap", []*authpb.Permission{perm(R, "a", "c"), perm(R, "d", "e")}, "b", "d", R, false},
		{"union: a one-key gap", []*authpb.Permission{perm(R, "a", "c"), perm(R, "c\x00", "e")}, "b", "d", R, false},
		{"union: the gap filled by a key", []*authpb.Permission{perm(R, "a", "c"), perm(R, "c", ""), perm(R, "c\x00", "e")}, "b", "d", R, true},
		{"union: to the end", []*authpb.Permission{perm(R, "a", "c"), perm(R, "b", all)}, "a", all, R, true},
		{"union: across roles of mixed types", []*authpb.Permission{perm(RW, "a", "c"), perm(R, "c", "e")}, "a", "e", R, true},

		{"empty range: its key permitted", []*authpb.Permission{perm(R, "b", "")}, "b", "a", R, true},
		{"empty range: its key not permitted", []*authpb.Permission{perm(R, "a", "")}, "b", "a", R, false},
		{"empty range: end equals key", []*authpb.Permission{perm(R, "a", "")}, "a", "a", R, true},

		{"type: read does not write", []*authpb.Permission{perm(R, "a", "")}, "a", "", W, false},
		{"type: write does not read", []*authpb.Permission{perm(W, "a", "")}, "a", "", R, false},
		{"type: readwrite reads", []*authpb.Permission{perm(RW, "a", "")}, "a", "", R, true},
		{"type: readwrite writes", []*authpb.Permission{perm(RW, "a", "")}, "a", "", W, true},
		{"type: asking readwrite needs both", []*authpb.Permission{perm(R, "a", ""), perm(W, "a", "b")}, "a", "", RW, true},
		{"type: asking readwrite, one missing", []*authpb.Permission{perm(R, "a", "")}, "a", "", RW, false},

		{"ungrantable: empty key", []*authpb.Permission{perm(R, "", "")}, "a", "", R, false},
		{"ungrantable: inverted range", []*authpb.Permission{perm(R, "b", "a")}, "a", "", R, false},
		{"no permissions", nil, "a", "", R, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := MergePerms(&authpb.Role{KeyPermission: tt.perms})
			if got := p.Allowed([]byte(tt.key), []byte(tt.end), tt.typ); got != tt.want {
				t.Errorf("Allowed(%q, %q, %v) = %v, want %v", tt.key, tt.end, tt.typ, got, tt.want)
			}
			if tt.typ == RW {
				return
			}
			if ref, defined := refAllowed(tt.perms, []byte(tt.key), []byte(tt.end), tt.typ); defined && ref != tt.want {
				t.Errorf("reference model says %v, want %v", ref, tt.want)
			}
			as, _ := etcdWithPerms(t, tt.perms)
			ai := &etcdauth.AuthInfo{Username: "u", Revision: as.Revision()}
			var err error
			if tt.typ == R {
				err = as.IsRangePermitted(ai, []byte(tt.key), []byte(tt.end))
			} else {
				err = as.IsDeleteRangePermitted(ai, []byte(tt.key), []byte(tt.end))
			}
			if etcdSays := err == nil; etcdSays != tt.want {
				t.Errorf("etcd says %v (%v), want %v", etcdSays, err, tt.want)
			}
		})
	}
}

func TestValidPermRange(t *testing.T) {
	for _, tt := range []struct {
		key, end string
		want     bool
	}{
		{"a", "", true},
		{"a", "b", true},
		{"a", "\x00", true},
		{"\x00", "\x00", true},
		{"", "", false},
		{"", "\x00", false},
		{"b", "a", false},
		{"a", "a", false},
	} {
		if got := ValidPermRange([]byte(tt.key), []byte(tt.end)); got != tt.want {
			t.Errorf("ValidPermRange(%q, %q) = %v, want %v", tt.key, tt.end, got, tt.want)
		}
	}
}

// The reference model: enumerate keys and check each against each
// permission. The keys enumerated are every key of up to refMaxLen+1 bytes
// over a small alphabet, plus the request's key and every permission's key
// and range end (and key+"\x00"). Any gap in the permissions a request
// covers has a first key, which is the request's key or where some
// permission ends: the enumeration is exact for any input, and the
// alphabet adds keys that random inputs share.
const refMaxLen = 3

var refAlphabet = []byte{0x00, 'a', 'b', 0xff}

var refKeys = func() [][]byte {
	var keys [][]byte
	var gen func(prefix []byte)
	gen = func(prefix []byte) {
		if len(prefix) > 0 {
			keys = append(keys, prefix)
		}
		if len(prefix) == refMaxLen+1 {
			return
		}
		for _, c := range refAlphabet {
			gen(append(bytes.Clone(prefix), c))
		}
	}
	gen(nil)
	return keys
}()

// refPermits reports whether permission p, if etcd would grant it, holds
// key k.
func refPermits(p *authpb.Permission, k []byte) bool {
	openEnded := bytes.Equal(p.RangeEnd, []byte{0})
	switch {
	case len(p.Key) == 0:
		return false
	case len(p.RangeEnd) == 0:
		return bytes.Equal(k, p.Key)
	case openEnded:
		return bytes.Compare(k, p.Key) >= 0
	default:
		return bytes.Compare(p.Key, k) <= 0 && bytes.Compare(k, p.RangeEnd) < 0
	}
}

// refAllowed is etcd's rule for a READ or WRITE request, key by key: every
// key of the request must be held by a permission of its type, and a
// request with an empty key is refused. For an empty range (range_end <=
// key) etcd's answer depends on its tree's shape: the model only knows that
// it is refused unless the key is held, and says so with defined false.
func refAllowed(perms []*authpb.Permission, key, end []byte, t authpb.Permission_Type) (allowed, defined bool) {
	held := func(k []byte) bool {
		for _, p := range perms {
			if (p.PermType == t || p.PermType == RW) && refPermits(p, k) {
				return true
			}
		}
		return false
	}
	openEnded := bytes.Equal(end, []byte{0})
	switch {
	case len(key) == 0:
		return false, true
	case len(end) == 0:
		return held(key), true
	case !openEnded && bytes.Compare(end, key) <= 0:
		return held(key), false
	}
	candidates := append([][]byte{key}, refKeys...)
	for _, p := range perms {
		candidates = append(candidates, p.Key, p.RangeEnd, append(bytes.Clone(p.Key), 0))
	}
	for _, k := range candidates {
		if len(k) > 0 && bytes.Compare(k, key) >= 0 && (openEnded || bytes.Compare(k, end) < 0) && !held(k) {
			return false, true
		}
	}
	return true, true
}

// randKey returns a key of 0..refMaxLen bytes over refAlphabet.
func randKey(rng *rand.Rand) []byte {
	k := make([]byte, rng.IntN(refMaxLen+1))
	for i := range k {
		k[i] = refAlphabet[rng.IntN(len(refAlphabet))]
	}
	return k
}

// randEnd returns a range end: often empty or "\x00", else random.
func randEnd(rng *rand.Rand) []byte {
	switch rng.IntN(4) {
	case 0:
		return nil
	case 1:
		return []byte{0}
	default:
		return randKey(rng)
	}
}

func randPerms(rng *rand.Rand, n int) []*authpb.Permission {
	ps := make([]*authpb.Permission, n)
	for i := range ps {
		ps[i] = &authpb.Permission{PermType: authpb.Permission_Type(rng.IntN(3)), Key: randKey(rng), RangeEnd: randEnd(rng)}
	}
	return ps
}

// TestPermsMatchReference compares Perms.Allowed with the brute-force
// model on random permissions and requests.
func TestPermsMatchReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	allowedSeen := 0
	for i := range 3000 {
		perms := randPerms(rng, rng.IntN(6))
		p := MergePerms(&authpb.Role{KeyPermission: perms})
		key, end := randKey(rng), randEnd(rng)
		for _, typ := range []authpb.Permission_Type{R, W} {
			got := p.Allowed(key, end, typ)
			want, defined := refAllowed(perms, key, end, typ)
			if got != want && (defined || got) {
				t.Fatalf("case %d: perms %v: Allowed(%q, %q, %v) = %v, reference %v (defined %v)", i, perms, key, end, typ, got, want, defined)
			}
			if got {
				allowedSeen++
			}
		}
	}
	// The generator must produce both answers, or the comparison is empty.
	if allowedSeen < 300 || allowedSeen > 5700 {
		t.Fatalf("%d of 6000 checks allowed: generator is lopsided", allowedSeen)
	}
}

// etcdWithPerms builds, in etcd's auth store and in a Store, user "u"
// holding role "r" with perms (etcd refusing the ungrantable ones as the
// Store does), and root, with auth enabled.
func etcdWithPerms(t testing.TB, perms []*authpb.Permission) (etcdauth.AuthStore, *Store) {
	t.Helper()
	as, s := newEtcdStore(t, ""), NewStore(4, nil)
	noPw := &authpb.UserAddOptions{NoPassword: true}
	both := func(what string, e func() error, m func() error) {
		t.Helper()
		ee, me := e(), m()
		if !sameError(etcdGRPCError(ee), me) {
			t.Fatalf("%s: etcd %v, Store %v", what, ee, me)
		}
	}
	both("add root", func() error { _, err := as.UserAdd(&pb.AuthUserAddRequest{Name: "root", Options: noPw}); return err },
		func() error { return s.UserAdd(&pb.AuthUserAddRequest{Name: "root", Options: noPw}) })
	both("grant root", func() error {
		_, err := as.UserGrantRole(&pb.AuthUserGrantRoleRequest{User: "root", Role: "root"})
		return err
	},
		func() error { return s.UserGrantRole(&pb.AuthUserGrantRoleRequest{User: "root", Role: "root"}) })
	both("add u", func() error { _, err := as.UserAdd(&pb.AuthUserAddRequest{Name: "u", Options: noPw}); return err },
		func() error { return s.UserAdd(&pb.AuthUserAddRequest{Name: "u", Options: noPw}) })
	both("add r", func() error { _, err := as.RoleAdd(&pb.AuthRoleAddRequest{Name: "r"}); return err },
		func() error { return s.RoleAdd(&pb.AuthRoleAddRequest{Name: "r"}) })
	for _, p := range perms {
		r := &pb.AuthRoleGrantPermissionRequest{Name: "r", Perm: p}
		both(fmt.Sprintf("grant %v", p), func() error { _, err := as.RoleGrantPermission(r); return err },
			func() error { return s.RoleGrantPermission(r) })
	}
	both("grant r", func() error {
		_, err := as.UserGrantRole(&pb.AuthUserGrantRoleRequest{User: "u", Role: "r"})
		return err
	},
		func() error { return s.UserGrantRole(&pb.AuthUserGrantRoleRequest{User: "u", Role: "r"}) })
	both("enable", as.AuthEnable, s.AuthEnable)
	return as, s
}

// TestPermsMatchEtcd compares permission checks with etcd's interval trees
// (etcd@v3.7.3:server/auth/range_perm_cache.go) on random permissions and
// requests, single keys, ranges, "from key" and empty ranges alike.
func TestPermsMatchEtcd(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 200 {
		perms := randPerms(rng, rng.IntN(8))
		as, s := etcdWithPerms(t, perms)
		ai := &etcdauth.AuthInfo{Username: "u", Revision: as.Revision()}
		a := s.Access(&AuthInfo{Username: "u", Revision: s.Revision()})
		for range 50 {
			key, end := randKey(rng), randEnd(rng)
			if got, want := a.IsRangePermitted(key, end), etcdGRPCError(as.IsRangePermitted(ai, key, end)); !sameError(got, want) {
				t.Fatalf("case %d: perms %v: IsRangePermitted(%q, %q) = %v, etcd %v", i, perms, key, end, got, want)
			}
			if got, want := a.IsDeleteRangePermitted(key, end), etcdGRPCError(as.IsDeleteRangePermitted(ai, key, end)); !sameError(got, want) {
				t.Fatalf("case %d: perms %v: IsDeleteRangePermitted(%q, %q) = %v, etcd %v", i, perms, key, end, got, want)
			}
			if got, want := a.IsPutPermitted(key), etcdGRPCError(as.IsPutPermitted(ai, key)); !sameError(got, want) {
				t.Fatalf("case %d: perms %v: IsPutPermitted(%q) = %v, etcd %v", i, perms, key, got, want)
			}
		}
	}
}

// TestEmptyRangeFollowsEtcdTree pins the case where etcd's answer for an
// empty range depends on its interval tree's shape, as seen on a live etcd
// 3.7.3: a DeleteRange of ["\xffb", "a") is refused to a user writing
// ["a\xff", ∞) and "ab" although "\xffb" is writable, and allowed to a user
// writing ["a", ∞).
func TestEmptyRangeFollowsEtcdTree(t *testing.T) {
	for _, tt := range []struct {
		perms []*authpb.Permission
		want  error
	}{
		{[]*authpb.Permission{perm(W, "a\xff", "\x00"), perm(W, "ab", ""), perm(R, "a", "")}, rpctypes.ErrGRPCPermissionDenied},
		{[]*authpb.Permission{perm(RW, "a", "\x00")}, nil},
	} {
		_, s := etcdWithPerms(t, tt.perms)
		a := s.Access(&AuthInfo{Username: "u", Revision: s.Revision()})
		if err := a.IsPutPermitted([]byte("\xffb")); err != nil {
			t.Fatalf("perms %v: the key itself is not writable: %v", tt.perms, err)
		}
		if err := a.IsDeleteRangePermitted([]byte("\xffb"), []byte("a")); err != tt.want {
			t.Errorf("perms %v: DeleteRange [\"\\xffb\", \"a\"): %v, want %v", tt.perms, err, tt.want)
		}
	}
}
