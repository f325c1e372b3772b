package auth

import (
	"encoding/base64"
	"strings"
	"testing"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

func TestBcryptCost(t *testing.T) {
	for cost, want := range map[int]int{
		-1: 10, 0: 10, 3: 10, 4: 4, 10: 10, 31: 31, 32: 10, 1 << 40: 10,
	} {
		if got := BcryptCost(cost); got != want {
			t.Errorf("BcryptCost(%d) = %d, want %d", cost, got, want)
		}
	}
}

func TestHashPassword(t *testing.T) {
	h, err := HashPassword("secret", testCost)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(h)
	if err != nil {
		t.Fatalf("hash is not base64: %v", err)
	}
	if cost, _ := bcrypt.Cost(raw); cost != testCost {
		t.Errorf("cost %d", cost)
	}
	if bcrypt.CompareHashAndPassword(raw, []byte("secret")) != nil {
		t.Error("hash does not match its password")
	}

	// bcrypt refuses passwords over 72 bytes; etcd sends its error as is.
	_, err = HashPassword(strings.Repeat("x", 73), testCost)
	if st, _ := status.FromError(err); st.Code() != codes.Unknown || st.Message() != "bcrypt: password length exceeds 72 bytes" {
		t.Errorf("73-byte password: %v", err)
	}
}

func TestPrepare(t *testing.T) {
	noPw := &pb.AuthUserAddRequest{Name: "n", Password: "ignored", Options: &authpb.UserAddOptions{NoPassword: true}}
	want := proto.CloneOf(noPw)
	if err := PrepareUserAdd(noPw, testCost); err != nil || !proto.Equal(noPw, want) {
		t.Errorf("no-password UserAdd changed to %v, %v", noPw, err)
	}
	// An empty password is hashed too (etcd lets a user have one), and a
	// hash the client sent is replaced.
	empty := &pb.AuthUserAddRequest{Name: "e", HashedPassword: "client's"}
	if err := PrepareUserAdd(empty, testCost); err != nil || empty.HashedPassword == "client's" || empty.Password != "" {
		t.Errorf("UserAdd with empty password prepared as %v, %v", empty, err)
	}
	s := NewStore(testCost, nil)
	root := &pb.AuthUserAddRequest{Name: "root", Password: "pw"}
	if err := PrepareUserAdd(root, testCost); err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{
		s.UserAdd(empty),
		s.UserAdd(root),
		s.UserGrantRole(&pb.AuthUserGrantRoleRequest{User: "root", Role: "root"}),
		s.AuthEnable(),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.CheckPassword("e", ""); err != nil {
		t.Errorf("empty password: %v", err)
	}
	// A password change without a password is proposed unchanged.
	chg := &pb.AuthUserChangePasswordRequest{Name: "e", HashedPassword: "client's"}
	if err := PrepareUserChangePassword(chg, testCost); err != nil || chg.HashedPassword != "client's" {
		t.Errorf("empty password change prepared as %v, %v", chg, err)
	}
}
