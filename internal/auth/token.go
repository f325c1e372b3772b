package auth

import (
	"crypto/rand"
	"io"
	"os"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/metadata"

	"github.com/stratakv/strata/internal/clock"
)

// Clock is the time a token provider reads: token expiry is measured
// against it, never against the wall clock directly.
type Clock interface {
	Now() time.Time
}

// TokenSeed is what an applied Authenticate entry gives the token
// provider: Prefix is the random string GenTokenPrefix returned on the
// member that proposed the entry (carried in
// InternalAuthenticateRequest.simple_token), Index the entry's raft index.
// Simple tokens are built from both, so that every member issues, and
// knows, the same token; JWT ignores them.
type TokenSeed struct {
	Prefix string
	Index  uint64
}

// TokenProvider issues and verifies the tokens clients present in the
// "token" (or "authorization") gRPC metadata, as etcd's TokenProvider does
// (etcd@v3.7.3:server/auth/store.go). Each member has its own; simple
// tokens live in its memory, JWTs in the client's hands.
type TokenProvider interface {
	// TokenHooks: the Store enables and disables the provider with auth,
	// and invalidates a user's tokens when it is deleted or its password
	// changes (simple tokens only; a JWT stays valid until it expires).
	TokenHooks
	// GenTokenPrefix is called on the member that receives Authenticate,
	// before proposing it: a random prefix for simple tokens, "" for JWT.
	GenTokenPrefix() (string, error)
	// Assign issues a token for user at auth revision rev when the
	// Authenticate entry applies.
	Assign(user string, rev uint64, seed TokenSeed) (string, error)
	// Info verifies token and returns whom it names and at which auth
	// revision. A simple token carries no revision: rev, the store's
	// current revision, is returned. ok is false for a token that does not
	// verify: the request fails with rpctypes.ErrGRPCInvalidAuthToken.
	Info(token string, rev uint64) (_ AuthInfo, ok bool)
}

// Token types of the --auth-token flag.
const (
	TokenTypeSimple = "simple"
	TokenTypeJWT    = "jwt"
)

// DefaultAuthToken is the default of etcd's --auth-token flag.
const DefaultAuthToken = TokenTypeSimple

// TokenOptions is a parsed --auth-token value: a token type, then
// comma-separated key=value options ("jwt,pub-key=a.pem,sign-method=RS256").
type TokenOptions struct {
	Type    string
	Options map[string]string
}

// ParseTokenOptions parses a --auth-token value as etcd does
// (etcd@v3.7.3:server/auth/store.go decomposeOpts, NewTokenProvider): an
// option that is not exactly one key=value pair, a repeated key, or a type
// other than "simple", "jwt" or "" (no tokens at all) is
// ErrInvalidAuthOpts. Options a type does not know are ignored.
func ParseTokenOptions(flag string) (TokenOptions, error) {
	parts := strings.Split(flag, ",")
	o := TokenOptions{Type: parts[0], Options: map[string]string{}}
	for _, part := range parts[1:] {
		kv := strings.Split(part, "=")
		if len(kv) != 2 {
			return TokenOptions{}, ErrInvalidAuthOpts
		}
		if _, dup := o.Options[kv[0]]; dup {
			return TokenOptions{}, ErrInvalidAuthOpts
		}
		o.Options[kv[0]] = kv[1]
	}
	switch o.Type {
	case TokenTypeSimple, TokenTypeJWT, "":
		return o, nil
	default:
		return TokenOptions{}, ErrInvalidAuthOpts
	}
}

// TokenConfig is what a token provider takes besides the flag.
type TokenConfig struct {
	// SimpleTTL is --auth-token-ttl: how long a simple token lives
	// without use. Zero or less means DefaultSimpleTokenTTL.
	SimpleTTL time.Duration
	// Clock defaults to the wall clock.
	Clock Clock
	// ReadFile reads JWT key files; it defaults to os.ReadFile.
	ReadFile func(name string) ([]byte, error)
	// Rand is the randomness of simple token prefixes; it defaults to
	// crypto/rand.
	Rand io.Reader
}

func (c TokenConfig) withDefaults() TokenConfig {
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
	if c.ReadFile == nil {
		c.ReadFile = os.ReadFile
	}
	if c.Rand == nil {
		c.Rand = rand.Reader
	}
	return c
}

// NewTokenProvider returns the provider a --auth-token value selects: a
// SimpleTokens, a JWTTokens, or for "" a provider that issues nothing and
// verifies nothing (Assign fails with ErrGRPCAuthFailed). Its errors are
// etcd's, and stop the member from starting.
func NewTokenProvider(flag string, cfg TokenConfig) (TokenProvider, error) {
	o, err := ParseTokenOptions(flag)
	if err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	switch o.Type {
	case TokenTypeSimple:
		return NewSimpleTokens(cfg), nil
	case TokenTypeJWT:
		t, err := NewJWTTokens(o.Options, cfg)
		if err != nil {
			return nil, err // not a nil *JWTTokens in a non-nil interface
		}
		return t, nil
	default:
		return noTokens{}, nil
	}
}

// noTokens is the provider for --auth-token "".
type noTokens struct{}

func (noTokens) Enable()                              {}
func (noTokens) Disable()                             {}
func (noTokens) InvalidateUser(string)                {}
func (noTokens) GenTokenPrefix() (string, error)      { return "", nil }
func (noTokens) Info(string, uint64) (AuthInfo, bool) { return AuthInfo{}, false }
func (noTokens) Assign(string, uint64, TokenSeed) (string, error) {
	return "", rpctypes.ErrGRPCAuthFailed
}

// TokenFromMetadata returns the token a request carries: the first value
// of the "token" metadata key, else of "authorization" (the gateway's
// header), less a "Bearer " prefix (etcd@v3.7.3:server/auth/store.go
// AuthInfoFromCtx). ok is false when the request carries none; it then
// runs without credentials.
func TokenFromMetadata(md metadata.MD) (token string, ok bool) {
	ts, ok := md[rpctypes.TokenFieldNameGRPC]
	if !ok {
		ts, ok = md[rpctypes.TokenFieldNameSwagger]
	}
	if !ok || len(ts) == 0 {
		return "", false
	}
	return strings.TrimPrefix(ts[0], "Bearer "), true
}
