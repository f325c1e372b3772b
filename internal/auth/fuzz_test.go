package auth

import (
	"encoding/base64"
	"slices"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/authpb"
	etcdauth "go.etcd.io/etcd/server/v3/auth"
	"go.uber.org/zap"

	"github.com/stratakv/strata/internal/clock"
)

// FuzzRangePermission compares Perms.Allowed with the brute-force model and
// with etcd's permission check, on permissions and a request decoded from
// the input.
func FuzzRangePermission(f *testing.F) {
	f.Add([]byte("\x01\x00\x01a\x00\x01a\x00"))
	f.Add([]byte("\x02\x02\x03foo\x02\x03fop\x01\x01b\x01\x03foo\x02\x03fop"))
	f.Add([]byte("\x03\x00\x01a\x02\x01c\x00\x01c\x02\x01e\x01\x01\x00\x01\x00\x01b\x02\x01d"))
	f.Add([]byte("\x02\x01\x02a\xff\x01\x01\x02ab\x00\x01\x02\xffb\x02\x01a"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d := fuzzInput{b: data}
		perms := make([]*authpb.Permission, d.byte()%8)
		for i := range perms {
			perms[i] = &authpb.Permission{PermType: authpb.Permission_Type(d.byte() % 3), Key: d.key(), RangeEnd: d.end()}
		}
		typ := []authpb.Permission_Type{R, W}[d.byte()%2]
		key, end := d.key(), d.end()

		got := MergePerms(&authpb.Role{KeyPermission: perms}).Allowed(key, end, typ)
		if want, defined := refAllowed(perms, key, end, typ); got != want && (defined || got) {
			t.Fatalf("perms %v: Allowed(%q, %q, %v) = %v, reference %v", perms, key, end, typ, got, want)
		}
		// etcd's answer for an empty range depends on the order of the
		// role's permissions, which RoleGrantPermission sorts: compare
		// a Store built by the same grants.
		as, s := etcdWithPerms(t, perms)
		ai := &etcdauth.AuthInfo{Username: "u", Revision: as.Revision()}
		a := s.Access(&AuthInfo{Username: "u", Revision: s.Revision()})
		var etcdErr, strataErr error
		if typ == R {
			etcdErr, strataErr = as.IsRangePermitted(ai, key, end), a.IsRangePermitted(key, end)
		} else {
			etcdErr, strataErr = as.IsDeleteRangePermitted(ai, key, end), a.IsDeleteRangePermitted(key, end)
		}
		if !sameError(etcdGRPCError(etcdErr), strataErr) {
			t.Fatalf("perms %v: check of %q, %q, %v: %v, etcd %v", perms, key, end, typ, strataErr, etcdErr)
		}
	})
}

// fuzzInput reads fields from fuzz data, zeros past its end.
type fuzzInput struct{ b []byte }

func (d *fuzzInput) byte() byte {
	if len(d.b) == 0 {
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *fuzzInput) key() []byte {
	n := min(int(d.byte()%6), len(d.b))
	k := slices.Clone(d.b[:n])
	d.b = d.b[n:]
	return k
}

func (d *fuzzInput) end() []byte {
	switch d.byte() % 3 {
	case 0:
		return nil
	case 1:
		return []byte{0}
	default:
		return d.key()
	}
}

// FuzzSimpleToken checks that no string but a token issued verifies, and
// then as the user it was issued to.
func FuzzSimpleToken(f *testing.F) {
	issued := map[string]string{"abcdefghijklmnop.1": "alice", "ABCDEFGHIJKLMNOP.2": "bob", "qqqqqqqqqqqqqqqq.18446744073709551615": "carol"}
	for tok := range issued {
		f.Add(tok)
	}
	for _, s := range []string{"", ".", "abcdefghijklmnop.01", "abcdefghijklmnop.1.", "abcdefghijklmnop.+1", "abcdefghijklmnop", "x.1", "\x00.1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		tp := NewSimpleTokens(TokenConfig{Clock: clock.NewManual(time.Unix(0, 0))})
		tp.Enable()
		for tok, user := range issued {
			d, _ := SimpleTokenIndex(tok)
			prefix := tok[:len(tok)-len(uintString(d))-1]
			if got, err := tp.Assign(user, 1, TokenSeed{Prefix: prefix, Index: d}); err != nil || got != tok {
				t.Fatalf("Assign = %q, %v; want %q", got, err, tok)
			}
		}
		_, wellFormed := SimpleTokenIndex(token)
		ai, ok := tp.Info(token, 5)
		user, wasIssued := issued[token]
		if ok != wasIssued || (ok && (ai.Username != user || ai.Revision != 5 || !wellFormed)) {
			t.Fatalf("Info(%q) = %+v, %v; issued to %q: %v", token, ai, ok, user, wasIssued)
		}
	})
}

func uintString(v uint64) string {
	if v == 0 {
		return "0"
	}
	var b []byte
	for ; v > 0; v /= 10 {
		b = append([]byte{byte('0' + v%10)}, b...)
	}
	return string(b)
}

// FuzzJWTToken checks that a token verifies only if its header and claims
// are those of a token issued, and then names what was issued.
func FuzzJWTToken(f *testing.F) {
	k := getTestKeys(f)
	clk := clock.NewManual(time.Unix(1_700_000_000, 0))
	var providers []TokenProvider
	issued := map[string]AuthInfo{}
	for _, flag := range []string{
		"jwt,sign-method=HS256,priv-key=hmac.key",
		"jwt,sign-method=EdDSA,priv-key=ed.pem",
		"jwt,sign-method=RS256,priv-key=rsa.pem",
		"jwt,sign-method=ES256,priv-key=ec.pem",
	} {
		tp, err := NewTokenProvider(flag, TokenConfig{ReadFile: k.readFile, Clock: clk})
		if err != nil {
			f.Fatal(err)
		}
		providers = append(providers, tp)
		for rev, user := range []string{"root", "alice"} {
			tok, err := tp.Assign(user, uint64(rev+1), TokenSeed{})
			if err != nil {
				f.Fatal(err)
			}
			issued[tok] = AuthInfo{Username: user, Revision: uint64(rev + 1)}
			f.Add(tok)
			f.Add(tok[:len(tok)-1])
			f.Add(tok + "A")
		}
	}
	// An unsigned token naming root.
	b64 := base64.RawURLEncoding.EncodeToString
	f.Add(b64([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + b64([]byte(`{"username":"root","revision":1}`)) + ".")
	f.Add("")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, token string) {
		for _, tp := range providers {
			ai, ok := tp.Info(token, 0)
			if !ok {
				continue
			}
			var match bool
			for tok, want := range issued {
				if sameSigningInput(token, tok) && ai == want {
					match = true
				}
			}
			if !match {
				t.Fatalf("Info(%q) = %+v: verifies but was not issued", token, ai)
			}
		}
	})
}

// FuzzAuthTokenFlag checks that any --auth-token value parses without
// panicking into a provider or one of etcd's errors, the same as etcd's
// where etcd can be asked without reading files the test does not own.
func FuzzAuthTokenFlag(f *testing.F) {
	k := getTestKeys(f)
	for _, s := range []string{
		"simple", "", "jwt", "jwt,sign-method=HS256,priv-key=hmac.key,ttl=10m", "jwt,sign-method=RS256,priv-key=rsa.pem,pub-key=rsa.pub",
		"jwt,sign-method=ES256,pub-key=ec.pub", "jwt,sign-method=EdDSA,priv-key=ed.pem,pub-key=ed-other.pub", "jwt,sign-method=none",
		"jwt,,", "jwt,a=b=c", "simple,ttl=1,ttl=2", "jwt,sign-method=PS384,priv-key=garbage", "jwt,ttl=-5s,sign-method=HS512,priv-key=hmac.key",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, flag string) {
		o, perr := ParseTokenOptions(flag)
		if perr != nil && perr != ErrInvalidAuthOpts {
			t.Fatalf("ParseTokenOptions(%q) = %v", flag, perr)
		}
		tp, err := NewTokenProvider(flag, TokenConfig{ReadFile: k.readFile, Clock: clock.NewManual(time.Unix(0, 0))})
		if (err == nil) == (tp == nil) {
			t.Fatalf("NewTokenProvider(%q) = %v, %v", flag, tp, err)
		}
		if err != nil && err.Error() == "" {
			t.Fatalf("NewTokenProvider(%q): empty error", flag)
		}
		if perr == nil && o.Type == TokenTypeJWT {
			for _, opt := range []string{JWTOptPublicKey, JWTOptPrivateKey} {
				if v := o.Options[opt]; v != "" && k.files[v] == nil {
					return // etcd would read a file we do not own
				}
			}
		}
		_, etcdErr := etcdauth.NewTokenProvider(zap.NewNop(), k.etcdFlag(flag), nil, time.Minute)
		if errText(err) != errText(etcdErr) {
			t.Fatalf("NewTokenProvider(%q): %q, etcd %q", flag, errText(err), errText(etcdErr))
		}
	})
}

// FuzzStateUnmarshal checks that Unmarshal never panics and accepts only
// the encodings Marshal produces.
func FuzzStateUnmarshal(f *testing.F) {
	f.Add(mustMarshalStore(f, NewStore(testCost, nil)))
	f.Add(mustMarshalStore(f, sampleStore(f)))
	f.Add(validEncoding().bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		s := NewStore(testCost, nil)
		if err := s.Unmarshal(b); err != nil {
			return
		}
		if got := mustMarshalStore(t, s); string(got) != string(b) {
			t.Fatalf("Unmarshal accepted %x, which Marshal writes as %x", b, got)
		}
		for _, u := range s.UserList().Users {
			a := s.Access(&AuthInfo{Username: u, Revision: s.Revision()})
			_ = a.IsRangePermitted([]byte("a"), []byte{0})
			_ = a.IsAdminPermitted()
		}
	})
}
