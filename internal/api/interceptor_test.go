package api

import (
	"context"
	"errors"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/metadata"
)

type fixedLeader bool

func (l fixedLeader) HasLeader() bool { return bool(l) }

func TestInterceptorChecksEtcdMetadata(t *testing.T) {
	in := func(kv ...string) context.Context {
		return metadata.NewIncomingContext(context.Background(), metadata.Pairs(kv...))
	}
	for _, tc := range []struct {
		name   string
		ctx    context.Context
		leader bool
		want   error
	}{
		{"no metadata", context.Background(), false, nil},
		{"client API version", in(rpctypes.MetadataClientAPIVersionKey, "3.7"), false, nil},
		{"client API version not UTF-8", in(rpctypes.MetadataClientAPIVersionKey, "\xff"), true, rpctypes.ErrGRPCInvalidClientAPIVersion},
		{"require leader, none", in(rpctypes.MetadataRequireLeaderKey, rpctypes.MetadataHasLeader), false, rpctypes.ErrGRPCNoLeader},
		{"require leader, known", in(rpctypes.MetadataRequireLeaderKey, rpctypes.MetadataHasLeader), true, nil},
		{"other metadata", in("foo", "bar"), false, nil},
	} {
		ic := interceptor{leader: fixedLeader(tc.leader)}
		if err := ic.check(tc.ctx); !errors.Is(err, tc.want) {
			t.Errorf("%s: check = %v, want %v", tc.name, err, tc.want)
		}
	}
}
