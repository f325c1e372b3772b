package auth

import (
	"crypto/rand"
	"fmt"
	"io"
	"math/big"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

const (
	// DefaultSimpleTokenTTL is the default of etcd's --auth-token-ttl.
	DefaultSimpleTokenTTL = 300 * time.Second
	// SimpleTokenSweepInterval is how often etcd drops expired simple
	// tokens; the owner of a SimpleTokens calls ExpireTokens that often.
	SimpleTokenSweepInterval = time.Second

	simpleTokenLetters   = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	simpleTokenPrefixLen = 16
)

// SimpleTokens is etcd's "simple" token provider
// (etcd@v3.7.3:server/auth/simple_token.go). A token is
// "<16 random letters>.<raft index of the Authenticate entry>"; it is not
// signed, so it is only as good as the member's memory of it: every member
// records each token as the Authenticate entry applies. A token lives for
// the TTL after its last use. The provider records tokens only while
// enabled, and forgets them all when disabled.
//
// Nothing runs in the background: the owner calls ExpireTokens every
// SimpleTokenSweepInterval, and Info refuses an expired token even
// before that. etcd only sweeps, once a second, so it may accept a token up
// to a second past its deadline; refusing at the deadline keeps the answer
// independent of when the sweep ran.
type SimpleTokens struct {
	ttl   time.Duration
	clock Clock
	rand  io.Reader

	mu struct {
		sync.Mutex
		// tokens is nil while disabled.
		tokens map[string]simpleToken
	}
}

type simpleToken struct {
	user     string
	deadline time.Time // expires when the clock passes it
}

var _ TokenProvider = (*SimpleTokens)(nil)

// NewSimpleTokens returns a disabled simple token provider.
func NewSimpleTokens(cfg TokenConfig) *SimpleTokens {
	cfg = cfg.withDefaults()
	ttl := cfg.SimpleTTL
	if ttl <= 0 {
		ttl = DefaultSimpleTokenTTL
	}
	return &SimpleTokens{ttl: ttl, clock: cfg.Clock, rand: cfg.Rand}
}

// Enable starts recording tokens.
func (t *SimpleTokens) Enable() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mu.tokens == nil {
		t.mu.tokens = map[string]simpleToken{}
	}
}

// Disable forgets every token and stops recording new ones.
func (t *SimpleTokens) Disable() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.mu.tokens = nil
}

// InvalidateUser forgets user's tokens.
func (t *SimpleTokens) InvalidateUser(user string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for tok, st := range t.mu.tokens {
		if st.user == user {
			delete(t.mu.tokens, tok)
		}
	}
}

// GenTokenPrefix returns 16 letters drawn uniformly from [a-zA-Z].
func (t *SimpleTokens) GenTokenPrefix() (string, error) {
	b := make([]byte, simpleTokenPrefixLen)
	n := big.NewInt(int64(len(simpleTokenLetters)))
	for i := range b {
		v, err := rand.Int(t.rand, n)
		if err != nil {
			return "", err
		}
		b[i] = simpleTokenLetters[v.Int64()]
	}
	return string(b), nil
}

// Assign records and returns the token "<seed.Prefix>.<seed.Index>" for
// user; rev is not part of a simple token. While disabled the token is
// returned but not recorded, so it never verifies.
//
// The prefix must be one GenTokenPrefix makes (16 letters): a member with
// another token provider proposes none. Two requests of one raft entry
// share its index, so a token already recorded (the same prefix twice in
// an entry, which a member never proposes) is refused too. Both refusals
// are ErrGRPCAuthFailed, on every member alike: nothing a client or a peer
// sends can stop a member here.
func (t *SimpleTokens) Assign(user string, _ uint64, seed TokenSeed) (string, error) {
	if len(seed.Prefix) != simpleTokenPrefixLen || strings.Trim(seed.Prefix, simpleTokenLetters) != "" {
		return "", rpctypes.ErrGRPCAuthFailed
	}
	tok := fmt.Sprintf("%s.%d", seed.Prefix, seed.Index)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mu.tokens == nil {
		return tok, nil
	}
	if _, dup := t.mu.tokens[tok]; dup {
		return "", rpctypes.ErrGRPCAuthFailed
	}
	t.mu.tokens[tok] = simpleToken{user: user, deadline: t.clock.Now().Add(t.ttl)}
	return tok, nil
}

// SimpleTokenIndex returns the raft index a well-formed simple token names:
// etcd waits until its member has applied that index before looking the
// token up, so that a token issued through another member is known. ok is
// false for a malformed token, which never verifies.
func SimpleTokenIndex(token string) (index uint64, ok bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 2 {
		return 0, false
	}
	index, err := strconv.ParseUint(parts[1], 10, 64)
	return index, err == nil
}

// Info returns the user a recorded, unexpired token names, at revision rev
// (the store's), and extends its life by the TTL. The caller waits for
// the token's index to apply first (SimpleTokenIndex).
func (t *SimpleTokens) Info(token string, rev uint64) (AuthInfo, bool) {
	if _, ok := SimpleTokenIndex(token); !ok {
		return AuthInfo{}, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	st, ok := t.mu.tokens[token]
	if !ok {
		return AuthInfo{}, false
	}
	now := t.clock.Now()
	if now.After(st.deadline) {
		delete(t.mu.tokens, token)
		return AuthInfo{}, false
	}
	st.deadline = now.Add(t.ttl)
	t.mu.tokens[token] = st
	return AuthInfo{Username: st.user, Revision: rev}, true
}

// ExpireTokens forgets every token unused for longer than the TTL.
func (t *SimpleTokens) ExpireTokens() {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.clock.Now()
	for tok, st := range t.mu.tokens {
		if now.After(st.deadline) {
			delete(t.mu.tokens, tok)
		}
	}
}

// Len returns the number of tokens recorded, expired ones included until
// ExpireTokens or Info drops them.
func (t *SimpleTokens) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.mu.tokens)
}
