package writernode

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/url"
	"slices"
	"time"

	"google.golang.org/grpc"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/stratakv/strata/internal/transport"
)

// joinIdentity is how a member started with --initial-cluster-state=existing
// learns who it is: it asks the other members named in --initial-cluster,
// over their peer URLs, for the member list (etcd's Cluster.MemberList is
// served there too), and finds the member MemberAdd created for its own
// peer URLs. A reader must have been added as a learner.
func joinIdentity(ctx context.Context, peerTLS *tls.Config, name string, initial map[string][]string, reader bool) (*identity, error) {
	self, ok := initial[name]
	if !ok {
		return nil, fmt.Errorf("couldn't find local name %q in the initial cluster configuration", name)
	}
	var lastErr error
	for n, urls := range initial {
		if n == name {
			continue
		}
		for _, u := range urls {
			resp, err := memberListAt(ctx, peerTLS, u)
			if err != nil {
				lastErr = err
				continue
			}
			id := &identity{Name: name, ClusterID: resp.Header.GetClusterId(), Joined: true}
			for _, m := range resp.Members {
				id.Members = append(id.Members, InitialMember{Name: m.Name, ID: m.ID, PeerURLs: m.PeerURLs})
				if sameURLs(m.PeerURLs, self) {
					id.MemberID = m.ID
					if reader && !m.IsLearner {
						return nil, fmt.Errorf("member %x with peer URLs %v was added as a voter; a reader joins as a learner (etcdctl member add %s --learner --peer-urls=...)", m.ID, self, name)
					}
				}
			}
			if id.MemberID == 0 {
				return nil, fmt.Errorf("member with peer URLs %v is not in the cluster (add it with MemberAdd first)", self)
			}
			return id, nil
		}
	}
	return nil, fmt.Errorf("cannot fetch the member list from any peer in --initial-cluster: %v", lastErr)
}

func memberListAt(ctx context.Context, peerTLS *tls.Config, peerURL string) (*pb.MemberListResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return callPeerCluster(ctx, peerTLS, peerURL, func(c pb.ClusterClient) (*pb.MemberListResponse, error) {
		return c.MemberList(ctx, &pb.MemberListRequest{}, grpc.WaitForReady(true))
	})
}

// callPeerCluster calls the Cluster service another member serves on its
// peer URL.
func callPeerCluster[R any](ctx context.Context, peerTLS *tls.Config, peerURL string, call func(pb.ClusterClient) (R, error)) (R, error) {
	var zero R
	conn, err := dialPeer(peerTLS, peerURL)
	if err != nil {
		return zero, err
	}
	defer conn.Close()
	return call(pb.NewClusterClient(conn))
}

// dialPeer returns a client connection to the gRPC server on a member's
// peer URL, over TLS when it is an https URL (peerTLS: the member's peer
// TLS client side, nil without peer TLS).
func dialPeer(peerTLS *tls.Config, peerURL string) (*grpc.ClientConn, error) {
	u, err := url.Parse(peerURL)
	if err != nil {
		return nil, err
	}
	c, err := transport.LinkTLS([]string{peerURL}, peerTLS)
	if err != nil {
		return nil, err
	}
	return grpc.NewClient(u.Host, transport.DialCredentials(c))
}

func sameURLs(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
