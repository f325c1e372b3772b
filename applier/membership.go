package applier

import (
	"encoding/binary"
	"errors"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/membershippb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Membership is replicated state like the keys: every member derives it by
// applying the same entries, and it travels in snapshots.
//
//	c/m/<id, 8 bytes big endian>   etcdserverpb.Member (marshaled)
//
// A conf change adding a member carries that member (ID and peer URLs,
// marshaled etcdserverpb.Member) in its context; removing deletes it; a
// ClusterMemberAttrSet request, which every member proposes once it is
// up, fills in its name and client URLs. etcd clients treat a member with a
// name as started.
var prefixMembers = []byte("c/m/")

// prefixRemoved records members removed from the cluster (c/r/<id>), as
// etcd does, so that peers can tell a removed member it is gone.
var prefixRemoved = []byte("c/r/")

func memberKey(id uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), prefixMembers...), id)
}

// MemberContext encodes the member a conf change adds or updates, for its
// context field.
func MemberContext(m *pb.Member) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(fmt.Sprintf("applier: marshal member: %v", err))
	}
	return b
}

func getMember(r Reader, id uint64) (*pb.Member, bool, error) {
	v, err := r.Get(memberKey(id))
	if errors.Is(err, ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	m := &pb.Member{}
	if err := proto.Unmarshal(v, m); err != nil {
		return nil, false, fmt.Errorf("%w: member %x: %v", errCorruptValue, id, err)
	}
	return m, true, nil
}

func putMember(b Batch, m *pb.Member) error {
	v, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	return b.Set(memberKey(m.ID), v)
}

// validateMembershipChange decides, deterministically, whether a committed
// conf change is accepted, with etcd's rules and errors: adding an existing
// member or a peer URL already in use, more learners not yet started than allowed,
// removing or updating an unknown member. A rejected change becomes a
// no-op on every member; err is only for storage failures.
func validateMembershipChange(r Reader, cc raftpb.ConfChangeI, maxLearners int) (reject, err error) {
	if maxLearners <= 0 {
		maxLearners = 1
	}
	given := memberFromContext(cc)
	members, err := readMembers(r)
	if err != nil {
		return nil, err
	}
	byID := map[uint64]*pb.Member{}
	learners := 0
	for _, m := range members {
		byID[m.ID] = m
		// Only learners that have not started yet count (a started member
		// has published its name): strata's readers are learners that
		// serve for good, and etcd's bound is meant for learners catching
		// up. See docs/compat.md.
		if m.IsLearner && m.Name == "" {
			learners++
		}
	}
	urlOwner := map[string]uint64{}
	for _, m := range members {
		for _, u := range m.PeerURLs {
			urlOwner[u] = m.ID
		}
	}
	for _, ch := range cc.AsV2().GetChanges() {
		id := ch.GetNodeId()
		if id == 0 {
			continue
		}
		cur, found := byID[id]
		switch ch.GetType() {
		case raftpb.ConfChangeAddNode:
			if found {
				if !cur.IsLearner {
					return rpctypes.ErrGRPCMemberExist, nil
				}
				continue // promotion of a learner
			}
			if urlInUse(urlOwner, given.PeerURLs, id) {
				return rpctypes.ErrGRPCPeerURLExist, nil
			}
		case raftpb.ConfChangeAddLearnerNode:
			if found {
				return rpctypes.ErrGRPCMemberExist, nil
			}
			if urlInUse(urlOwner, given.PeerURLs, id) {
				return rpctypes.ErrGRPCPeerURLExist, nil
			}
			if learners+1 > maxLearners {
				return rpctypes.ErrGRPCTooManyLearners, nil
			}
		case raftpb.ConfChangeRemoveNode:
			if !found {
				return rpctypes.ErrGRPCMemberNotFound, nil
			}
		case raftpb.ConfChangeUpdateNode:
			if !found {
				return rpctypes.ErrGRPCMemberNotFound, nil
			}
			if urlInUse(urlOwner, given.PeerURLs, id) {
				return rpctypes.ErrGRPCPeerURLExist, nil
			}
		}
	}
	return nil, nil
}

func urlInUse(owner map[string]uint64, urls []string, self uint64) bool {
	for _, u := range urls {
		if o, ok := owner[u]; ok && o != self {
			return true
		}
	}
	return false
}

// noopConfChange is cc with every node ID zeroed: raft ignores it, so a
// rejected change still consumes raft's pending-conf-change slot.
func noopConfChange(cc raftpb.ConfChangeI) raftpb.ConfChangeI {
	switch c := cc.(type) {
	case *raftpb.ConfChange:
		n := proto.Clone(c).(*raftpb.ConfChange)
		n.NodeId = new(uint64(0))
		return n
	case *raftpb.ConfChangeV2:
		n := proto.Clone(c).(*raftpb.ConfChangeV2)
		for _, ch := range n.Changes {
			ch.NodeId = new(uint64(0))
		}
		return n
	}
	return cc
}

func memberFromContext(cc raftpb.ConfChangeI) *pb.Member {
	var ctx []byte
	switch c := cc.(type) {
	case *raftpb.ConfChange:
		ctx = c.GetContext()
	case *raftpb.ConfChangeV2:
		ctx = c.GetContext()
	}
	m := &pb.Member{}
	if len(ctx) > 0 {
		// A context that is not a member (another tool's conf change)
		// still changes raft's configuration; record the bare ID.
		if err := proto.Unmarshal(ctx, m); err != nil {
			return &pb.Member{}
		}
	}
	return m
}

// applyMembershipChange records what a committed conf change does to the
// member list.
func applyMembershipChange(b Batch, cc raftpb.ConfChangeI) error {
	given := memberFromContext(cc)
	for _, ch := range cc.AsV2().GetChanges() {
		id := ch.GetNodeId()
		if id == 0 {
			continue
		}
		cur, found, err := getMember(b, id)
		if err != nil {
			return err
		}
		switch ch.GetType() {
		case raftpb.ConfChangeAddNode, raftpb.ConfChangeAddLearnerNode:
			learner := ch.GetType() == raftpb.ConfChangeAddLearnerNode
			if !found {
				cur = &pb.Member{ID: id, PeerURLs: given.PeerURLs}
			} else if len(given.PeerURLs) > 0 {
				cur.PeerURLs = given.PeerURLs
			}
			cur.IsLearner = learner // AddNode of a learner promotes it
			if err := putMember(b, cur); err != nil {
				return err
			}
		case raftpb.ConfChangeRemoveNode:
			if err := b.Delete(memberKey(id)); err != nil {
				return err
			}
			if err := b.Set(binary.BigEndian.AppendUint64(append([]byte(nil), prefixRemoved...), id), nil); err != nil {
				return err
			}
		case raftpb.ConfChangeUpdateNode:
			if found && len(given.PeerURLs) > 0 {
				cur.PeerURLs = given.PeerURLs
				if err := putMember(b, cur); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// applyMemberAttrs records a member's name and client URLs. A member that is
// no longer in the cluster is ignored, as in etcd.
func applyMemberAttrs(b Batch, r *membershippb.ClusterMemberAttrSetRequest) error {
	cur, found, err := getMember(b, r.GetMember_ID())
	if err != nil || !found {
		return err
	}
	cur.Name = r.GetMemberAttributes().GetName()
	cur.ClientURLs = r.GetMemberAttributes().GetClientUrls()
	return putMember(b, cur)
}

// IsRemoved reports whether member id was removed from the cluster.
func (a *Applier) IsRemoved(id uint64) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.mu.removed[id]
}

// loadRemoved reads the removed members recorded in e.
func loadRemoved(e Engine) (map[uint64]bool, error) {
	snap := e.NewSnapshot()
	defer snap.Close()
	it, err := snap.NewIter(prefixRemoved, prefixEnd(prefixRemoved))
	if err != nil {
		return nil, err
	}
	removed := map[uint64]bool{}
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		if len(k) != len(prefixRemoved)+8 {
			return nil, iterCorrupt(it, fmt.Errorf("%w: removed-member key %q", errCorruptValue, k))
		}
		removed[binary.BigEndian.Uint64(k[len(prefixRemoved):])] = true
	}
	return removed, closeIter(it)
}

// Members returns the cluster's members, in ID order, as of the last
// committed batch.
func (a *Applier) Members() ([]*pb.Member, error) {
	snap, err := a.openSnapshot()
	if err != nil {
		return nil, err
	}
	defer snap.Close()
	return readMembers(snap)
}

// readMembers reads the member list, in ID order.
func readMembers(r Reader) ([]*pb.Member, error) {
	it, err := r.NewIter(prefixMembers, prefixEnd(prefixMembers))
	if err != nil {
		return nil, err
	}
	var out []*pb.Member
	for ok := it.First(); ok; ok = it.Next() {
		m := &pb.Member{}
		if err := proto.Unmarshal(it.Value(), m); err != nil {
			return nil, iterCorrupt(it, fmt.Errorf("%w: member: %v", errCorruptValue, err))
		}
		out = append(out, m)
	}
	return out, closeIter(it)
}
