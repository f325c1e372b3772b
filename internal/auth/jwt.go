package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Options of --auth-token jwt,... (etcd@v3.7.3:server/auth/options.go).
const (
	// JWTOptSignMethod names the signing algorithm, as JWT's "alg" header
	// does: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512,
	// EdDSA, HS256, HS384, HS512. Required.
	JWTOptSignMethod = "sign-method"
	// JWTOptPublicKey is the PEM file of the public key (not for HS*).
	JWTOptPublicKey = "pub-key"
	// JWTOptPrivateKey is the PEM file of the private key, or for HS* the
	// file whose bytes are the secret.
	JWTOptPrivateKey = "priv-key"
	// JWTOptTTL is how long a token is valid, a Go duration.
	JWTOptTTL = "ttl"
)

// DefaultJWTTTL is the lifetime of a JWT when no ttl option is given.
const DefaultJWTTTL = 5 * time.Minute

// JWTTokens is etcd's "jwt" token provider
// (etcd@v3.7.3:server/auth/jwt.go): a token is a JWT signed with the
// configured method and key, claiming "username", "revision" and "exp".
// Any member configured with the key verifies any member's tokens, and
// nothing is recorded: Enable, Disable and InvalidateUser do nothing, so a
// token outlives a password change until it expires. Given only a public
// key, a provider verifies but does not issue tokens.
type JWTTokens struct {
	method    jwt.SigningMethod
	signKey   any // nil: verify only
	verifyKey any
	ttl       time.Duration
	clock     Clock
}

var _ TokenProvider = (*JWTTokens)(nil)

// NewJWTTokens returns a JWT provider for the options of a --auth-token
// jwt,... value (see ParseTokenOptions). An unreadable ttl or key file, or
// a missing or unknown sign-method, is ErrInvalidAuthOpts; keys that do not
// parse, do not fit the method or do not match are ErrMissingKey,
// ErrKeyMismatch or the JWT library's parse error, as in etcd. Options it
// does not know are ignored (etcd logs them).
func NewJWTTokens(opts map[string]string, cfg TokenConfig) (*JWTTokens, error) {
	cfg = cfg.withDefaults()
	// etcd's jwtOptions.ParseWithDefaults: ttl, pub-key, priv-key, then
	// sign-method, all failures reported as ErrInvalidAuthOpts.
	ttl := DefaultJWTTTL
	if s := opts[JWTOptTTL]; s != "" {
		var err error
		if ttl, err = time.ParseDuration(s); err != nil {
			return nil, ErrInvalidAuthOpts
		}
	}
	var pubPEM, privPEM []byte
	if f := opts[JWTOptPublicKey]; f != "" {
		var err error
		if pubPEM, err = cfg.ReadFile(f); err != nil {
			return nil, ErrInvalidAuthOpts
		}
	}
	if f := opts[JWTOptPrivateKey]; f != "" {
		var err error
		if privPEM, err = cfg.ReadFile(f); err != nil {
			return nil, ErrInvalidAuthOpts
		}
	}
	method := jwt.GetSigningMethod(opts[JWTOptSignMethod])
	if method == nil {
		return nil, ErrInvalidAuthOpts
	}

	t := &JWTTokens{method: method, ttl: ttl, clock: cfg.Clock}
	var err error
	switch method.(type) {
	case *jwt.SigningMethodRSA, *jwt.SigningMethodRSAPSS:
		t.signKey, t.verifyKey, err = loadKeys(privPEM, pubPEM, jwt.ParseRSAPrivateKeyFromPEM, jwt.ParseRSAPublicKeyFromPEM,
			func(k *rsa.PrivateKey) *rsa.PublicKey { return &k.PublicKey })
	case *jwt.SigningMethodECDSA:
		t.signKey, t.verifyKey, err = loadKeys(privPEM, pubPEM, jwt.ParseECPrivateKeyFromPEM, jwt.ParseECPublicKeyFromPEM,
			func(k *ecdsa.PrivateKey) *ecdsa.PublicKey { return &k.PublicKey })
	case *jwt.SigningMethodEd25519:
		t.signKey, t.verifyKey, err = loadKeys(privPEM, pubPEM, parseEdPrivateKey, parseEdPublicKey,
			func(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) })
	case *jwt.SigningMethodHMAC:
		if len(privPEM) == 0 {
			return nil, ErrMissingKey
		}
		t.signKey, t.verifyKey = privPEM, privPEM
	default:
		// "none", or a method registered by some other package.
		return nil, fmt.Errorf("unsupported signing method: %T", method)
	}
	if err != nil {
		return nil, err
	}
	return t, nil
}

// publicKey is what the asymmetric public key types have in common.
type publicKey interface {
	Equal(x crypto.PublicKey) bool
}

// loadKeys parses whichever of the two PEM blocks are given, as etcd's
// jwtOptions.rsaKey, ecKey and edKey do: a private key signs and verifies
// (and must match the public key if both are given); a public key alone
// only verifies.
func loadKeys[Priv any, Pub publicKey](privPEM, pubPEM []byte,
	parsePriv func([]byte) (Priv, error), parsePub func([]byte) (Pub, error), public func(Priv) Pub,
) (sign, verify any, err error) {
	var (
		priv            Priv
		pub             Pub
		hasPriv, hasPub bool
	)
	if len(privPEM) > 0 {
		if priv, err = parsePriv(privPEM); err != nil {
			return nil, nil, err
		}
		hasPriv = true
	}
	if len(pubPEM) > 0 {
		if pub, err = parsePub(pubPEM); err != nil {
			return nil, nil, err
		}
		hasPub = true
	}
	switch {
	case !hasPriv && !hasPub:
		return nil, nil, ErrMissingKey
	case !hasPriv:
		return nil, pub, nil
	case hasPub && !pub.Equal(public(priv)):
		return nil, nil, ErrKeyMismatch
	}
	return priv, public(priv), nil
}

func parseEdPrivateKey(b []byte) (ed25519.PrivateKey, error) {
	k, err := jwt.ParseEdPrivateKeyFromPEM(b)
	if err != nil {
		return nil, err
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, jwt.ErrNotEdPrivateKey
	}
	return priv, nil
}

func parseEdPublicKey(b []byte) (ed25519.PublicKey, error) {
	k, err := jwt.ParseEdPublicKeyFromPEM(b)
	if err != nil {
		return nil, err
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, jwt.ErrNotEdPublicKey
	}
	return pub, nil
}

// Enable does nothing: JWTs are not recorded.
func (t *JWTTokens) Enable() {}

// Disable does nothing: JWTs are not recorded.
func (t *JWTTokens) Disable() {}

// InvalidateUser does nothing: a JWT is valid until it expires.
func (t *JWTTokens) InvalidateUser(string) {}

// GenTokenPrefix returns "": JWTs need no prefix.
func (t *JWTTokens) GenTokenPrefix() (string, error) { return "", nil }

// Assign signs a token for user at revision rev, expiring one TTL from now
// (whole seconds). seed is not used.
func (t *JWTTokens) Assign(user string, rev uint64, _ TokenSeed) (string, error) {
	if t.signKey == nil {
		return "", ErrVerifyOnly
	}
	tok, err := jwt.NewWithClaims(t.method, jwt.MapClaims{
		"username": user,
		"revision": rev,
		"exp":      t.clock.Now().Add(t.ttl).Unix(),
	}).SignedString(t.signKey)
	if err != nil {
		return "", status.Error(codes.Unknown, err.Error())
	}
	return tok, nil
}

var errWrongSignMethod = errors.New("invalid signing method")

// Info verifies token's signature, method and expiry (an "exp" claim is
// checked if present, as the JWT library does by default) and returns its
// username and revision claims. rev is not used.
func (t *JWTTokens) Info(token string, _ uint64) (AuthInfo, bool) {
	parsed, err := jwt.Parse(token, func(tok *jwt.Token) (any, error) {
		if tok.Method.Alg() != t.method.Alg() {
			return nil, errWrongSignMethod
		}
		return t.verifyKey, nil
	}, jwt.WithTimeFunc(t.clock.Now))
	if err != nil || !parsed.Valid {
		return AuthInfo{}, false
	}
	claims, ok := parsed.Claims.(jwt.MapClaims)
	if !ok {
		return AuthInfo{}, false
	}
	user, ok := claims["username"].(string)
	if !ok {
		return AuthInfo{}, false
	}
	// JSON numbers decode as float64; etcd converts as is.
	rev, ok := claims["revision"].(float64)
	if !ok {
		return AuthInfo{}, false
	}
	return AuthInfo{Username: user, Revision: uint64(rev)}, true
}
