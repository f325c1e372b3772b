package auth

import (
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Errors a client can see are the rpctypes.ErrGRPC* values etcd sends,
// returned as they are. The ones below are what etcd sends where its auth
// package has an error that v3rpc's togRPCError does not map
// (etcd@v3.7.3:server/etcdserver/api/v3rpc/util.go): the raw text with
// codes.Unknown.
var (
	// ErrNoPasswordUser is returned by Store.CheckPassword for a user added
	// with no_password, and by UserAdd and UserChangePassword when the
	// hashed password is not valid base64 (etcd's auth.ErrNoPasswordUser).
	ErrNoPasswordUser = status.Error(codes.Unknown, "auth: authentication failed, password was given for no password user")
	// ErrVerifyOnly is returned by a JWT provider's Assign when it was given
	// only a public key (etcd's auth.ErrVerifyOnly).
	ErrVerifyOnly = status.Error(codes.Unknown, "auth: token signing attempted with verify-only key")
)

// Errors from parsing the --auth-token flag and loading its keys. They stop
// a member from starting; the texts are etcd's (etcd@v3.7.3:server/auth).
var (
	// ErrInvalidAuthOpts is returned when the --auth-token value is
	// malformed, names an unknown token type, or its JWT options cannot be
	// read (unknown sign-method, bad ttl, unreadable key file).
	ErrInvalidAuthOpts = errors.New("auth: invalid auth options")
	// ErrMissingKey is returned when a JWT sign method has no key to use.
	ErrMissingKey = errors.New("auth: missing key data")
	// ErrKeyMismatch is returned when the JWT public key is not the private
	// key's.
	ErrKeyMismatch = errors.New("auth: public and private keys don't match")
)

// ErrBadState is returned by Store.Unmarshal for bytes that are not a state
// Store.Marshal produces; the error wraps a description of the fault.
var ErrBadState = errors.New("auth: malformed auth state")
