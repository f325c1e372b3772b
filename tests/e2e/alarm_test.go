package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"slices"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestNoSpaceAlarmMatchesEtcd runs etcd's NOSPACE drill on etcd v3.7.3 and
// strata side by side, with the same quota: writes fill the member past
// --quota-backend-bytes until one is refused, which raises the NOSPACE
// alarm; under it puts are refused and deletes are not, Status lists the
// alarm and /health fails; compact, defragment and disarm, and the member
// takes writes again. Every answer is compared with etcd's.
func TestNoSpaceAlarmMatchesEtcd(t *testing.T) {
	b := needSubject(t)
	raw := make([]byte, 45_000)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	big := base64.StdEncoding.EncodeToString(raw) // incompressible, 60 KB
	type outcome struct {
		refusal, putUnder, delUnder, alarms, health, healthAfter string
		statusErr                                                bool
		writesBefore                                             int
	}
	drill := func(t *testing.T, binary string) outcome {
		ms := StartCluster(t, "ns", 1, MemberConfig{Binary: binary, ExtraArgs: []string{"--quota-backend-bytes=2000000"}})
		c := newEndpointClient(t, ms[0])
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		var o outcome
		st0, err := c.Status(ctx, ms[0].Endpoint())
		if err != nil {
			t.Fatal(err)
		}
		id := st0.Header.MemberId
		for o.writesBefore = 0; o.writesBefore < 200; o.writesBefore++ {
			if _, err = c.Put(ctx, "big", big); err != nil {
				break
			}
		}
		if err == nil {
			t.Fatal("200 writes of 60 KB fit in a 2 MB quota")
		}
		o.refusal = err.Error()
		// The alarm is raised through the log, after the refusal: wait
		// (bounded) until it is listed.
		var list *clientv3.AlarmResponse
		for {
			if list, err = c.AlarmList(ctx); err != nil {
				t.Fatal(err)
			}
			if len(list.Alarms) > 0 || ctx.Err() != nil {
				break
			}
			time.Sleep(20 * time.Millisecond) // polling the cluster's state; bounded by ctx
		}
		var names []string
		for _, a := range list.Alarms {
			if a.MemberID != id {
				t.Errorf("alarm of member %x, want %x", a.MemberID, id)
			}
			names = append(names, a.Alarm.String())
		}
		o.alarms = strings.Join(names, ",")
		if _, err := c.Put(ctx, "small", "x"); err != nil {
			o.putUnder = err.Error()
		}
		if _, err := c.Delete(ctx, "absent"); err != nil {
			o.delUnder = err.Error()
		}
		st, err := c.Status(ctx, ms[0].Endpoint())
		if err != nil {
			t.Fatal(err)
		}
		o.statusErr = slices.ContainsFunc(st.Errors, func(e string) bool { return strings.Contains(e, "alarm:NOSPACE") })
		if o.health, err = httpGet(ms[0], "/health"); err != nil {
			t.Fatal(err)
		}

		get, err := c.Get(ctx, "big")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Compact(ctx, get.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Defragment(ctx, ms[0].Endpoint()); err != nil {
			t.Fatal(err)
		}
		if _, err := c.AlarmDisarm(ctx, &clientv3.AlarmMember{MemberID: list.Alarms[0].MemberID, Alarm: pb.AlarmType_NOSPACE}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Put(ctx, "small", "y"); err != nil {
			t.Fatalf("a write after compact, defrag and disarm: %v", err)
		}
		if after, err := c.AlarmList(ctx); err != nil || len(after.Alarms) != 0 {
			t.Fatalf("alarms after disarming: %v, %v", after, err)
		}
		if o.healthAfter, err = httpGet(ms[0], "/health"); err != nil {
			t.Fatal(err)
		}
		return o
	}
	var want, got outcome
	t.Run("etcd", func(t *testing.T) { want = drill(t, b.Etcd) })
	t.Run(b.SubjectName, func(t *testing.T) { got = drill(t, b.Subject) })
	t.Logf("etcd took %d writes of 60 KB to fill 2 MB, %s %d", want.writesBefore, b.SubjectName, got.writesBefore)
	want.writesBefore, got.writesBefore = 0, 0 // the engines' sizes differ; the answers must not
	if got != want {
		t.Fatalf("the NOSPACE drill differs:\n%s: %+v\netcd:   %+v", b.SubjectName, got, want)
	}
	if want.refusal != "etcdserver: mvcc: database space exceeded" || want.alarms != "NOSPACE" || !want.statusErr {
		t.Fatalf("etcd's drill is not what the test expects: %+v", want)
	}
}
