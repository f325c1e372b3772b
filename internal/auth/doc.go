// Package auth is the logic of etcd v3.7.3's authentication and role-based
// access control, with no I/O and no goroutines: the replicated auth state,
// the permission checks, password hashing and the token providers. Wiring
// it to gRPC and to the applier is the job of internal/api and the state
// machine.
//
// # State
//
// Store is the replicated part: the enabled flag, users (name, bcrypt hash
// or no password, sorted roles), roles (key permissions) and the auth
// revision, which every change to users, roles or AuthDisable bumps. Each
// member applies the same Auth* requests in log order and ends with the
// same state and the same bytes from Marshal. Passwords are hashed by the
// member that receives the request (PrepareUserAdd,
// PrepareUserChangePassword) so that the hash, never the password, is in
// the log; Authenticate checks the password on that member too
// (Store.CheckPassword) and applies as Store.Authenticate plus
// TokenProvider.Assign.
//
// # Permissions
//
// A role grants READ, WRITE or READWRITE on a key range in etcd's
// convention: range_end empty is the key alone, "\x00" every key >= key,
// anything else [key, range_end). A user may do what the union of its
// roles grants (MergePerms, Perms.Allowed): a request on a range is allowed
// only if that union covers all of it. The role named "root" grants
// everything, admin operations included. Store.Access gives the Checker of
// one request's caller; the Check* functions make, in etcd's order, the
// checks etcd makes for each kind of request, and RPCRules says which
// apply to each RPC and where (before proposing, or when applying). A
// check of a key fails with ErrGRPCAuthOldRevision when the caller's token
// predates the latest change to users or roles.
//
// # Tokens
//
// NewTokenProvider parses etcd's --auth-token flag. "simple" tokens
// (SimpleTokens) are random strings every member records as the
// Authenticate entry applies, living --auth-token-ttl after their last
// use; "jwt" tokens (JWTTokens) are signed and recorded nowhere. Time comes
// from an injected Clock, and simple tokens expire when the owner calls
// ExpireTokens (or when used too late), never in the background.
//
// Errors a client sees are etcd's rpctypes.ErrGRPC* values, or for the few
// etcd does not map, the codes.Unknown status etcd sends (errors.go).
package auth
