package writernode

import (
	"context"
	"time"

	"github.com/stratakv/strata/internal/api"
	"github.com/stratakv/strata/internal/auth"
)

// Auth configures the member's authentication, with etcd's flags.
type Auth struct {
	// Token is --auth-token ("simple", "jwt,...", or "" for none); ""
	// is taken as auth.DefaultAuthToken here, as the flag's default.
	Token string
	// TokenTTL is --auth-token-ttl, the life of an unused simple token.
	TokenTTL time.Duration
	// BcryptCost is --bcrypt-cost; out of range, bcrypt's default (as
	// etcd).
	BcryptCost int
}

// authState is the member's auth: the replicated store the state machine
// applies to and this member's token provider.
type authState struct {
	store  *auth.Store
	tokens auth.TokenProvider
	cost   int
}

// newAuthState builds the member's auth from its flags; a bad --auth-token
// stops the member, with etcd's error.
func newAuthState(m *Member) (*authState, error) {
	a := m.cfg.Auth
	flag := a.Token
	if flag == "" {
		flag = auth.DefaultAuthToken
	}
	tokens, err := auth.NewTokenProvider(flag, auth.TokenConfig{SimpleTTL: a.TokenTTL, Clock: m.cfg.Clock})
	if err != nil {
		return nil, err
	}
	cost := auth.BcryptCost(a.BcryptCost)
	return &authState{store: auth.NewStore(cost, tokens), tokens: tokens, cost: cost}, nil
}

// apiConfig is the auth the member's gRPC services check callers with.
func (s *authState) apiConfig(m *Member) api.AuthConfig {
	return api.AuthConfig{Store: s.store, Tokens: s.tokens, BcryptCost: s.cost, WaitApplied: m.app.WaitApplied}
}

// runTokenSweep drops expired simple tokens every
// auth.SimpleTokenSweepInterval, as etcd does, until the member stops.
func (m *Member) runTokenSweep() {
	st, ok := m.auth.tokens.(*auth.SimpleTokens)
	if !ok {
		return
	}
	m.everyTick(auth.SimpleTokenSweepInterval, func(context.Context) bool {
		st.ExpireTokens()
		return true
	})
}
