package auth

import (
	"encoding/base64"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// DefaultBcryptCost is the default of etcd's --bcrypt-cost flag.
const DefaultBcryptCost = bcrypt.DefaultCost

// BcryptCost returns the bcrypt cost a member uses for the --bcrypt-cost
// flag value cost: cost itself when it is in [bcrypt.MinCost,
// bcrypt.MaxCost], else DefaultBcryptCost. etcd does not refuse a bad cost:
// it logs "use default bcrypt cost instead of the invalid given cost" and
// goes on with the default (etcd@v3.7.3:server/auth/store.go NewAuthStore).
func BcryptCost(cost int) int {
	if cost < bcrypt.MinCost || cost > bcrypt.MaxCost {
		return DefaultBcryptCost
	}
	return cost
}

// HashPassword returns the bcrypt hash of password, base64-encoded as it
// travels in a request's hashed_password. cost must come from BcryptCost.
// A password longer than 72 bytes is refused, with the error etcd sends.
func HashPassword(password string, cost int) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		// etcd returns bcrypt's error as is: codes.Unknown.
		return "", status.Error(codes.Unknown, err.Error())
	}
	return base64.StdEncoding.EncodeToString(h), nil
}

// PrepareUserAdd does what the member receiving UserAdd does before
// proposing it (etcd@v3.7.3:server/etcdserver/v3_server.go UserAdd): unless
// the user is to have no password, it hashes the password, even an empty
// one, into HashedPassword and clears Password, so that no plaintext
// reaches the log.
func PrepareUserAdd(r *pb.AuthUserAddRequest, cost int) error {
	if r.Options.GetNoPassword() {
		return nil
	}
	h, err := HashPassword(r.Password, cost)
	if err != nil {
		return err
	}
	r.HashedPassword, r.Password = h, ""
	return nil
}

// PrepareUserChangePassword does what the member receiving
// UserChangePassword does before proposing it
// (etcd@v3.7.3:server/etcdserver/v3_server.go UserChangePassword): it
// hashes a non-empty password into HashedPassword and clears Password. A
// request with an empty password is proposed as is: applying it stores the
// client's hashed_password, and an empty one matches no password.
func PrepareUserChangePassword(r *pb.AuthUserChangePasswordRequest, cost int) error {
	if r.Password == "" {
		return nil
	}
	h, err := HashPassword(r.Password, cost)
	if err != nil {
		return err
	}
	r.HashedPassword, r.Password = h, ""
	return nil
}
