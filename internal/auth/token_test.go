package auth

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	etcdauth "go.etcd.io/etcd/server/v3/auth"
	"go.uber.org/zap"
	"google.golang.org/grpc/metadata"

	"github.com/stratakv/strata/internal/clock"
)

// testKeys are PEM files for every JWT key type, written once.
type testKeys struct {
	dir   string
	files map[string][]byte // name -> contents
}

var (
	keysOnce sync.Once
	keys     testKeys
)

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func mustDER(der []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return der
}

// getTestKeys returns the key files. Their directory outlives the test
// that first asks (it is removed by TestMain).
func getTestKeys(t testing.TB) testKeys {
	t.Helper()
	keysOnce.Do(func() {
		dir, err := os.MkdirTemp("", "strata-auth-keys")
		if err != nil {
			panic(err)
		}
		files := map[string][]byte{}
		rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		rsaOther, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		ec384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
		edOther, _, _ := ed25519.GenerateKey(rand.Reader)
		files["rsa.pem"] = pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey))
		files["rsa.pub"] = pemBlock("PUBLIC KEY", mustDER(x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)))
		files["rsa-other.pub"] = pemBlock("PUBLIC KEY", mustDER(x509.MarshalPKIXPublicKey(&rsaOther.PublicKey)))
		files["ec.pem"] = pemBlock("EC PRIVATE KEY", mustDER(x509.MarshalECPrivateKey(ecKey)))
		files["ec.pub"] = pemBlock("PUBLIC KEY", mustDER(x509.MarshalPKIXPublicKey(&ecKey.PublicKey)))
		files["ec384.pem"] = pemBlock("EC PRIVATE KEY", mustDER(x509.MarshalECPrivateKey(ec384)))
		files["ed.pem"] = pemBlock("PRIVATE KEY", mustDER(x509.MarshalPKCS8PrivateKey(edPriv)))
		files["ed.pub"] = pemBlock("PUBLIC KEY", mustDER(x509.MarshalPKIXPublicKey(edPub)))
		files["ed-other.pub"] = pemBlock("PUBLIC KEY", mustDER(x509.MarshalPKIXPublicKey(edOther)))
		files["hmac.key"] = []byte("a shared secret of some length")
		files["garbage"] = []byte("not a key")
		for name, b := range files {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
				panic(err)
			}
		}
		keys = testKeys{dir: dir, files: files}
	})
	return keys
}

func TestMain(m *testing.M) {
	code := m.Run()
	if keys.dir != "" {
		os.RemoveAll(keys.dir)
	}
	os.Exit(code)
}

// readFile serves the key files from memory, by name.
func (k testKeys) readFile(name string) ([]byte, error) {
	b, ok := k.files[name]
	if !ok {
		return nil, os.ErrNotExist
	}
	return b, nil
}

// etcdFlag rewrites the key file names of a flag to the files on disk,
// for etcd, which reads them itself.
func (k testKeys) etcdFlag(flag string) string {
	for name := range k.files {
		flag = strings.ReplaceAll(flag, "key="+name, "key="+filepath.Join(k.dir, name))
	}
	return flag
}

func TestParseTokenOptions(t *testing.T) {
	for _, tt := range []struct {
		flag    string
		want    TokenOptions
		wantErr error
	}{
		{"simple", TokenOptions{Type: "simple", Options: map[string]string{}}, nil},
		{"", TokenOptions{Type: "", Options: map[string]string{}}, nil},
		{"simple,ttl=5m", TokenOptions{Type: "simple", Options: map[string]string{"ttl": "5m"}}, nil},
		{"jwt,pub-key=a,priv-key=b,sign-method=RS256,ttl=", TokenOptions{Type: "jwt", Options: map[string]string{
			"pub-key": "a", "priv-key": "b", "sign-method": "RS256", "ttl": ""}}, nil},
		{"foo", TokenOptions{}, ErrInvalidAuthOpts},
		{"Simple", TokenOptions{}, ErrInvalidAuthOpts},
		{"simple,", TokenOptions{}, ErrInvalidAuthOpts},
		{"jwt,sign-method", TokenOptions{}, ErrInvalidAuthOpts},
		{"jwt,a=b=c", TokenOptions{}, ErrInvalidAuthOpts},
		{"jwt,ttl=1m,ttl=2m", TokenOptions{}, ErrInvalidAuthOpts},
	} {
		got, err := ParseTokenOptions(tt.flag)
		if err != tt.wantErr || got.Type != tt.want.Type || !mapsEqual(got.Options, tt.want.Options) {
			t.Errorf("ParseTokenOptions(%q) = %+v, %v; want %+v, %v", tt.flag, got, err, tt.want, tt.wantErr)
		}
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || v != w {
			return false
		}
	}
	return true
}

// TestNewTokenProviderMatchesEtcd compares NewTokenProvider's verdict on
// --auth-token values with etcd's NewTokenProvider: the same error text, or
// both succeed (and then issue and verify tokens alike: see
// TestJWTInteroperatesWithEtcd).
func TestNewTokenProviderMatchesEtcd(t *testing.T) {
	k := getTestKeys(t)
	for _, tt := range []struct {
		flag    string
		wantErr string
	}{
		{"simple", ""},
		{"", ""},
		{"simple,unknown=1", ""},
		{"nope", "auth: invalid auth options"},
		{"jwt", "auth: invalid auth options"},
		{"jwt,sign-method=XX999", "auth: invalid auth options"},
		{"jwt,sign-method=none", "unsupported signing method: *jwt.signingMethodNone"},
		{"jwt,sign-method=HS256,ttl=forever", "auth: invalid auth options"},
		{"jwt,sign-method=HS256,priv-key=missing", "auth: invalid auth options"},
		{"jwt,sign-method=HS256", "auth: missing key data"},
		{"jwt,sign-method=HS256,pub-key=hmac.key", "auth: missing key data"},
		{"jwt,sign-method=HS256,priv-key=hmac.key", ""},
		{"jwt,sign-method=HS512,priv-key=hmac.key,ttl=1h,color=blue", ""},
		{"jwt,sign-method=RS256", "auth: missing key data"},
		{"jwt,sign-method=RS256,priv-key=rsa.pem", ""},
		{"jwt,sign-method=RS384,priv-key=rsa.pem,pub-key=rsa.pub", ""},
		{"jwt,sign-method=PS256,pub-key=rsa.pub", ""},
		{"jwt,sign-method=RS256,priv-key=rsa.pem,pub-key=rsa-other.pub", "auth: public and private keys don't match"},
		{"jwt,sign-method=RS256,priv-key=garbage", ""}, // error text compared with etcd's below
		{"jwt,sign-method=RS256,priv-key=rsa.pem,pub-key=garbage", ""},
		{"jwt,sign-method=RS256,priv-key=ec.pem", ""},
		{"jwt,sign-method=ES256,priv-key=ec.pem", ""},
		{"jwt,sign-method=ES256,priv-key=ec.pem,pub-key=ec.pub", ""},
		{"jwt,sign-method=ES512,pub-key=ec.pub", ""},
		{"jwt,sign-method=ES256,priv-key=ec384.pem,pub-key=ec.pub", "auth: public and private keys don't match"},
		{"jwt,sign-method=ES256,priv-key=rsa.pem", ""},
		{"jwt,sign-method=EdDSA,priv-key=ed.pem", ""},
		{"jwt,sign-method=EdDSA,priv-key=ed.pem,pub-key=ed.pub", ""},
		{"jwt,sign-method=EdDSA,pub-key=ed.pub", ""},
		{"jwt,sign-method=EdDSA,priv-key=ed.pem,pub-key=ed-other.pub", "auth: public and private keys don't match"},
		{"jwt,sign-method=EdDSA,priv-key=rsa.pem", ""},
	} {
		tp, err := NewTokenProvider(tt.flag, TokenConfig{ReadFile: k.readFile})
		if (err == nil) == (tp == nil) {
			t.Errorf("%q: provider %v with error %v", tt.flag, tp, err)
		}
		_, etcdErr := etcdauth.NewTokenProvider(zap.NewNop(), k.etcdFlag(tt.flag), nil, time.Minute)
		t.Logf("%q: %v", tt.flag, err)
		if errText(err) != errText(etcdErr) {
			t.Errorf("%q: error %q, etcd's %q", tt.flag, errText(err), errText(etcdErr))
		}
		if tt.wantErr != "" && errText(err) != tt.wantErr {
			t.Errorf("%q: error %q, want %q", tt.flag, errText(err), tt.wantErr)
		}
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestSimpleTokens(t *testing.T) {
	clk := clock.NewManual(time.Unix(1000, 0))
	tp := NewSimpleTokens(TokenConfig{SimpleTTL: 10 * time.Second, Clock: clk, Rand: bytes.NewReader(bytes.Repeat([]byte{7}, 1024))})

	prefix, err := tp.GenTokenPrefix()
	if err != nil {
		t.Fatal(err)
	}
	if len(prefix) != 16 || strings.Trim(prefix, simpleTokenLetters) != "" {
		t.Fatalf("prefix %q is not 16 letters", prefix)
	}

	// Disabled: the token is returned but not recorded.
	tok, err := tp.Assign("u", 3, TokenSeed{Prefix: prefix, Index: 42})
	if err != nil || tok != prefix+".42" {
		t.Fatalf("Assign = %q, %v", tok, err)
	}
	if _, ok := tp.Info(tok, 3); ok {
		t.Fatal("a token assigned while disabled verifies")
	}

	tp.Enable()
	tok, _ = tp.Assign("u", 3, TokenSeed{Prefix: "abcdefghijklmnop", Index: 42})
	if tok != "abcdefghijklmnop.42" {
		t.Fatalf("token %q", tok)
	}
	// The revision of a simple token is whatever the store's is now.
	if ai, ok := tp.Info(tok, 9); !ok || ai != (AuthInfo{Username: "u", Revision: 9}) {
		t.Fatalf("Info = %+v, %v", ai, ok)
	}
	for _, bad := range []string{"", "abcdefghijklmnop", "abcdefghijklmnop.43", "abcdefghijklmnop.42.1", "abcdefghijklmnop.x", "Bearer abcdefghijklmnop.42"} {
		if _, ok := tp.Info(bad, 9); ok {
			t.Errorf("Info(%q) verifies", bad)
		}
	}

	// Each use extends the token's life by the TTL.
	clk.Advance(8 * time.Second)
	if _, ok := tp.Info(tok, 9); !ok {
		t.Fatal("token expired before its TTL")
	}
	clk.Advance(8 * time.Second)
	tp.ExpireTokens()
	if _, ok := tp.Info(tok, 9); !ok {
		t.Fatal("use did not extend the token")
	}
	// Unused for more than the TTL, it expires: at the sweep, or at use.
	tok2, _ := tp.Assign("v", 3, TokenSeed{Prefix: "bbbbbbbbbbbbbbbb", Index: 43})
	clk.Advance(10 * time.Second)
	tp.ExpireTokens()
	if tp.Len() != 2 {
		t.Fatalf("%d tokens after exactly the TTL, want 2 (a token expires after its deadline)", tp.Len())
	}
	clk.Advance(time.Second)
	if _, ok := tp.Info(tok2, 9); ok {
		t.Fatal("an expired token verifies before the sweep")
	}
	tp.ExpireTokens()
	if tp.Len() != 0 {
		t.Fatalf("%d tokens after the sweep", tp.Len())
	}

	// Invalidation and disabling.
	a, _ := tp.Assign("u", 3, TokenSeed{Prefix: "cccccccccccccccc", Index: 44})
	b, _ := tp.Assign("w", 3, TokenSeed{Prefix: "dddddddddddddddd", Index: 45})
	tp.InvalidateUser("u")
	if _, ok := tp.Info(a, 9); ok {
		t.Error("invalidated user's token verifies")
	}
	if _, ok := tp.Info(b, 9); !ok {
		t.Error("other user's token was invalidated")
	}
	tp.Disable()
	tp.Enable()
	if _, ok := tp.Info(b, 9); ok {
		t.Error("token survived disabling")
	}

	// The same token twice (two requests of one entry with one prefix)
	// and prefixes no simple-token member makes are refused, not fatal.
	if _, err := tp.Assign("u", 3, TokenSeed{Prefix: "eeeeeeeeeeeeeeee", Index: 46}); err != nil {
		t.Fatal(err)
	}
	for _, seed := range []TokenSeed{{Prefix: "eeeeeeeeeeeeeeee", Index: 46}, {Prefix: "", Index: 47}, {Prefix: "short", Index: 48}, {Prefix: "eeeeeeeeeeeeeee.", Index: 49}} {
		if tok, err := tp.Assign("u", 3, seed); err != rpctypes.ErrGRPCAuthFailed {
			t.Errorf("Assign(%+v) = %q, %v; want %v", seed, tok, err, rpctypes.ErrGRPCAuthFailed)
		}
	}
}

func TestSimpleTokenIndex(t *testing.T) {
	for tok, want := range map[string]int64{
		"abc.42":                   42,
		"abc.18446744073709551615": -2, // max uint64
		"abc.18446744073709551616": -1,
		"abc.-1":                   -1,
		"abc.+1":                   -1,
		"abc.":                     -1,
		"abc":                      -1,
		"a.b.1":                    -1,
		".0":                       0,
	} {
		idx, ok := SimpleTokenIndex(tok)
		switch {
		case want == -1 && ok:
			t.Errorf("SimpleTokenIndex(%q) = %d, want malformed", tok, idx)
		case want == -2 && (!ok || idx != 1<<64-1):
			t.Errorf("SimpleTokenIndex(%q) = %d, %v", tok, idx, ok)
		case want >= 0 && (!ok || idx != uint64(want)):
			t.Errorf("SimpleTokenIndex(%q) = %d, %v; want %d", tok, idx, ok, want)
		}
	}
}

func TestNoTokens(t *testing.T) {
	tp, err := NewTokenProvider("", TokenConfig{})
	if err != nil {
		t.Fatal(err)
	}
	tp.Enable()
	if _, err := tp.Assign("u", 1, TokenSeed{Prefix: "x", Index: 1}); err != rpctypes.ErrGRPCAuthFailed {
		t.Errorf("Assign = %v", err)
	}
	if _, ok := tp.Info("x.1", 1); ok {
		t.Error("Info verified a token")
	}
}

func TestJWTTokens(t *testing.T) {
	k := getTestKeys(t)
	for _, flag := range []string{
		"jwt,sign-method=RS256,priv-key=rsa.pem",
		"jwt,sign-method=PS512,priv-key=rsa.pem,pub-key=rsa.pub",
		"jwt,sign-method=ES256,priv-key=ec.pem",
		"jwt,sign-method=EdDSA,priv-key=ed.pem",
		"jwt,sign-method=HS256,priv-key=hmac.key",
	} {
		t.Run(flag, func(t *testing.T) {
			clk := clock.NewManual(time.Unix(1_700_000_000, 0))
			tp, err := NewTokenProvider(flag+",ttl=1m", TokenConfig{ReadFile: k.readFile, Clock: clk})
			if err != nil {
				t.Fatal(err)
			}
			if p, _ := tp.GenTokenPrefix(); p != "" {
				t.Errorf("prefix %q", p)
			}
			tok, err := tp.Assign("alice", 17, TokenSeed{Prefix: "ignored", Index: 5})
			if err != nil {
				t.Fatal(err)
			}
			// The token's revision is its own, not the store's.
			if ai, ok := tp.Info(tok, 99); !ok || ai != (AuthInfo{Username: "alice", Revision: 17}) {
				t.Fatalf("Info = %+v, %v", ai, ok)
			}
			// Password changes do not revoke a JWT.
			tp.InvalidateUser("alice")
			if _, ok := tp.Info(tok, 99); !ok {
				t.Fatal("InvalidateUser revoked a JWT")
			}
			for i := range len(tok) {
				mutated := []byte(tok)
				mutated[i] ^= 0x20
				if ai, ok := tp.Info(string(mutated), 99); ok && !sameSigningInput(string(mutated), tok) {
					t.Fatalf("token with byte %d changed verifies: %+v", i, ai)
				}
			}
			clk.Advance(time.Minute + time.Second)
			if _, ok := tp.Info(tok, 99); ok {
				t.Fatal("expired token verifies")
			}
		})
	}
}

// sameSigningInput reports whether two tokens have the same header and
// claims segments: base64 leaves slack in the last characters of a
// signature, so a token can change there and still verify.
func sameSigningInput(a, b string) bool {
	ia, ib := strings.LastIndexByte(a, '.'), strings.LastIndexByte(b, '.')
	return ia >= 0 && ib >= 0 && a[:ia] == b[:ib]
}

func TestJWTMethodAndKeyChecks(t *testing.T) {
	k := getTestKeys(t)
	cfg := TokenConfig{ReadFile: k.readFile}
	rs, err := NewTokenProvider("jwt,sign-method=RS256,priv-key=rsa.pem", cfg)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := rs.Assign("alice", 1, TokenSeed{})

	// The same key under another method of its family does not verify.
	ps, _ := NewTokenProvider("jwt,sign-method=PS256,priv-key=rsa.pem", cfg)
	if _, ok := ps.Info(tok, 1); ok {
		t.Error("RS256 token verified as PS256")
	}
	// A verify-only provider verifies but cannot sign.
	pub, err := NewTokenProvider("jwt,sign-method=RS256,pub-key=rsa.pub", cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := pub.Info(tok, 1); !ok {
		t.Error("public key did not verify")
	}
	if _, err := pub.Assign("alice", 1, TokenSeed{}); err != ErrVerifyOnly {
		t.Errorf("verify-only Assign = %v", err)
	}
	// A token signed with HS256 using the public key's bytes as secret
	// (the classic algorithm confusion) is refused.
	hs, _ := NewTokenProvider("jwt,sign-method=HS256,priv-key=rsa.pub", cfg)
	forged, _ := hs.Assign("root", 1, TokenSeed{})
	if _, ok := pub.Info(forged, 1); ok {
		t.Error("HS256 token forged with the public key verified")
	}
}

// TestJWTInteroperatesWithEtcd checks that etcd verifies our tokens and we
// verify etcd's, with the same key and method.
func TestJWTInteroperatesWithEtcd(t *testing.T) {
	k := getTestKeys(t)
	for _, flag := range []string{
		"jwt,sign-method=RS256,priv-key=rsa.pem",
		"jwt,sign-method=ES256,priv-key=ec.pem",
		"jwt,sign-method=EdDSA,priv-key=ed.pem",
		"jwt,sign-method=HS384,priv-key=hmac.key",
	} {
		t.Run(flag, func(t *testing.T) {
			as := newEtcdStore(t, k.etcdFlag(flag))
			mustNoErr := func(_ any, err error) {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
			}
			mustNoErr(as.UserAdd(&pb.AuthUserAddRequest{Name: "root", HashedPassword: mustHash(t, "pw")}))
			mustNoErr(as.UserGrantRole(&pb.AuthUserGrantRoleRequest{User: "root", Role: "root"}))
			mustNoErr(nil, as.AuthEnable())
			resp, err := as.Authenticate(context.Background(), "root", "pw")
			if err != nil {
				t.Fatal(err)
			}

			tp, err := NewTokenProvider(flag, TokenConfig{ReadFile: k.readFile})
			if err != nil {
				t.Fatal(err)
			}
			if ai, ok := tp.Info(resp.Token, 0); !ok || ai != (AuthInfo{Username: "root", Revision: as.Revision()}) {
				t.Errorf("etcd's token: Info = %+v, %v", ai, ok)
			}
			ours, err := tp.Assign("root", 12, TokenSeed{})
			if err != nil {
				t.Fatal(err)
			}
			ai, err := etcdAuthInfo(as, ours)
			if err != nil || ai.Username != "root" || ai.Revision != 12 {
				t.Errorf("etcd on our token: %+v, %v", ai, err)
			}
		})
	}
}

func TestTokenFromMetadata(t *testing.T) {
	for _, tt := range []struct {
		md     metadata.MD
		want   string
		wantOK bool
	}{
		{metadata.Pairs("token", "abc.1"), "abc.1", true},
		{metadata.Pairs("authorization", "Bearer abc.1"), "abc.1", true},
		{metadata.Pairs("authorization", "abc.1"), "abc.1", true},
		{metadata.Pairs("token", "t1", "authorization", "t2"), "t1", true},
		{metadata.Pairs("token", "t1", "token", "t2"), "t1", true},
		{metadata.Pairs("other", "x"), "", false},
		{nil, "", false},
	} {
		got, ok := TokenFromMetadata(tt.md)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("TokenFromMetadata(%v) = %q, %v; want %q, %v", tt.md, got, ok, tt.want, tt.wantOK)
		}
	}
}
