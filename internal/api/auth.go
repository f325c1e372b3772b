package api

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/stratakv/strata/internal/auth"
)

// Auth implements etcd's Auth service. Every request goes through raft, as
// in etcd, and is checked as it applies (the state machine's auth.go)
// against the caller in its header; Authenticate checks the password here
// first, so that neither the password nor its hash reaches the log.
type Auth struct {
	pb.UnimplementedAuthServer
	b Backend
	z authz
}

// errUnexpectedResponse is a state machine answer of the wrong type: a bug.
var errUnexpectedResponse = status.Error(codes.Internal, "etcdserver: unexpected response type")

// proposeAuth proposes an Auth request with the caller's header and returns
// the state machine's response with this member's header.
func proposeAuth[T interface {
	proto.Message
	GetHeader() *pb.ResponseHeader
}](ctx context.Context, s *Auth, r *pb.InternalRaftRequest) (T, error) {
	var zero T
	r.Header = s.z.header(ctx)
	resp, err := propose(ctx, s.b, r)
	if err != nil {
		return zero, err
	}
	out, ok := resp.(T)
	if !ok {
		return zero, errUnexpectedResponse
	}
	setHeader(out, s.b.Header())
	return out, nil
}

// setHeader gives an Auth response this member's header. etcd's carry the
// store revision too; the state machine's answer has none.
func setHeader(m proto.Message, h *pb.ResponseHeader) {
	f := m.ProtoReflect()
	fd := f.Descriptor().Fields().ByName("header")
	if fd == nil {
		return
	}
	f.Set(fd, protoreflect.ValueOfMessage(h.ProtoReflect()))
}

// AuthEnable implements etcd's AuthEnable.
func (s *Auth) AuthEnable(ctx context.Context, r *pb.AuthEnableRequest) (*pb.AuthEnableResponse, error) {
	return proposeAuth[*pb.AuthEnableResponse](ctx, s, &pb.InternalRaftRequest{AuthEnable: r})
}

// AuthDisable implements etcd's AuthDisable.
func (s *Auth) AuthDisable(ctx context.Context, r *pb.AuthDisableRequest) (*pb.AuthDisableResponse, error) {
	return proposeAuth[*pb.AuthDisableResponse](ctx, s, &pb.InternalRaftRequest{AuthDisable: r})
}

// AuthStatus implements etcd's AuthStatus.
func (s *Auth) AuthStatus(ctx context.Context, r *pb.AuthStatusRequest) (*pb.AuthStatusResponse, error) {
	return proposeAuth[*pb.AuthStatusResponse](ctx, s, &pb.InternalRaftRequest{AuthStatus: r})
}

// Authenticate implements etcd's Authenticate: the password is checked on
// this member (bcrypt), then the token is issued by an entry every member
// applies. As etcd does, the member first catches up with the log (a
// linearizable barrier), and checks the password again if users or roles
// changed between the check and the entry's apply (a password changed in
// between must not yield a token).
func (s *Auth) Authenticate(ctx context.Context, r *pb.AuthenticateRequest) (*pb.AuthenticateResponse, error) {
	if err := s.b.LinearizableBarrier(ctx); err != nil {
		return nil, togRPCError(err)
	}
	for {
		checked, err := s.z.cfg.Store.CheckPassword(r.Name, r.Password)
		if err != nil {
			return nil, err
		}
		prefix, err := s.z.cfg.Tokens.GenTokenPrefix()
		if err != nil {
			return nil, err
		}
		resp, err := proposeAuth[*pb.AuthenticateResponse](ctx, s, &pb.InternalRaftRequest{
			Authenticate: &pb.InternalAuthenticateRequest{Name: r.Name, SimpleToken: prefix},
		})
		if err != nil || s.z.cfg.Store.Revision() == checked {
			return resp, err
		}
		if err := ctx.Err(); err != nil {
			return nil, togRPCError(err)
		}
	}
}

// UserAdd implements etcd's UserAdd.
func (s *Auth) UserAdd(ctx context.Context, r *pb.AuthUserAddRequest) (*pb.AuthUserAddResponse, error) {
	r = proto.Clone(r).(*pb.AuthUserAddRequest)
	if err := auth.PrepareUserAdd(r, s.z.cfg.BcryptCost); err != nil {
		return nil, err
	}
	return proposeAuth[*pb.AuthUserAddResponse](ctx, s, &pb.InternalRaftRequest{AuthUserAdd: r})
}

// UserGet implements etcd's UserGet.
func (s *Auth) UserGet(ctx context.Context, r *pb.AuthUserGetRequest) (*pb.AuthUserGetResponse, error) {
	return proposeAuth[*pb.AuthUserGetResponse](ctx, s, &pb.InternalRaftRequest{AuthUserGet: r})
}

// UserList implements etcd's UserList.
func (s *Auth) UserList(ctx context.Context, r *pb.AuthUserListRequest) (*pb.AuthUserListResponse, error) {
	return proposeAuth[*pb.AuthUserListResponse](ctx, s, &pb.InternalRaftRequest{AuthUserList: r})
}

// UserDelete implements etcd's UserDelete.
func (s *Auth) UserDelete(ctx context.Context, r *pb.AuthUserDeleteRequest) (*pb.AuthUserDeleteResponse, error) {
	return proposeAuth[*pb.AuthUserDeleteResponse](ctx, s, &pb.InternalRaftRequest{AuthUserDelete: r})
}

// UserChangePassword implements etcd's UserChangePassword.
func (s *Auth) UserChangePassword(ctx context.Context, r *pb.AuthUserChangePasswordRequest) (*pb.AuthUserChangePasswordResponse, error) {
	r = proto.Clone(r).(*pb.AuthUserChangePasswordRequest)
	if err := auth.PrepareUserChangePassword(r, s.z.cfg.BcryptCost); err != nil {
		return nil, err
	}
	return proposeAuth[*pb.AuthUserChangePasswordResponse](ctx, s, &pb.InternalRaftRequest{AuthUserChangePassword: r})
}

// UserGrantRole implements etcd's UserGrantRole.
func (s *Auth) UserGrantRole(ctx context.Context, r *pb.AuthUserGrantRoleRequest) (*pb.AuthUserGrantRoleResponse, error) {
	return proposeAuth[*pb.AuthUserGrantRoleResponse](ctx, s, &pb.InternalRaftRequest{AuthUserGrantRole: r})
}

// UserRevokeRole implements etcd's UserRevokeRole.
func (s *Auth) UserRevokeRole(ctx context.Context, r *pb.AuthUserRevokeRoleRequest) (*pb.AuthUserRevokeRoleResponse, error) {
	return proposeAuth[*pb.AuthUserRevokeRoleResponse](ctx, s, &pb.InternalRaftRequest{AuthUserRevokeRole: r})
}

// RoleAdd implements etcd's RoleAdd.
func (s *Auth) RoleAdd(ctx context.Context, r *pb.AuthRoleAddRequest) (*pb.AuthRoleAddResponse, error) {
	return proposeAuth[*pb.AuthRoleAddResponse](ctx, s, &pb.InternalRaftRequest{AuthRoleAdd: r})
}

// RoleGet implements etcd's RoleGet.
func (s *Auth) RoleGet(ctx context.Context, r *pb.AuthRoleGetRequest) (*pb.AuthRoleGetResponse, error) {
	return proposeAuth[*pb.AuthRoleGetResponse](ctx, s, &pb.InternalRaftRequest{AuthRoleGet: r})
}

// RoleList implements etcd's RoleList.
func (s *Auth) RoleList(ctx context.Context, r *pb.AuthRoleListRequest) (*pb.AuthRoleListResponse, error) {
	return proposeAuth[*pb.AuthRoleListResponse](ctx, s, &pb.InternalRaftRequest{AuthRoleList: r})
}

// RoleDelete implements etcd's RoleDelete.
func (s *Auth) RoleDelete(ctx context.Context, r *pb.AuthRoleDeleteRequest) (*pb.AuthRoleDeleteResponse, error) {
	return proposeAuth[*pb.AuthRoleDeleteResponse](ctx, s, &pb.InternalRaftRequest{AuthRoleDelete: r})
}

// RoleGrantPermission implements etcd's RoleGrantPermission.
func (s *Auth) RoleGrantPermission(ctx context.Context, r *pb.AuthRoleGrantPermissionRequest) (*pb.AuthRoleGrantPermissionResponse, error) {
	return proposeAuth[*pb.AuthRoleGrantPermissionResponse](ctx, s, &pb.InternalRaftRequest{AuthRoleGrantPermission: r})
}

// RoleRevokePermission implements etcd's RoleRevokePermission.
func (s *Auth) RoleRevokePermission(ctx context.Context, r *pb.AuthRoleRevokePermissionRequest) (*pb.AuthRoleRevokePermissionResponse, error) {
	return proposeAuth[*pb.AuthRoleRevokePermissionResponse](ctx, s, &pb.InternalRaftRequest{AuthRoleRevokePermission: r})
}
