package redis

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/calm-limiter/calm/algorithm"
	"github.com/calm-limiter/calm/internal/redistest"
	"github.com/calm-limiter/calm/store"
)

// TestSentinelFailover connects through Redis Sentinel, stops the master,
// and expects the store to follow the promoted replica, which never loaded
// the scripts, without an error past the failover.
func TestSentinelFailover(t *testing.T) {
	master := redistest.Start(t)
	replica := redistest.Start(t, "--replicaof", "127.0.0.1", strconv.Itoa(master.Port))
	waitReplicaSynced(t, replica)
	sentinel := redistest.StartSentinel(t, master, "calm")

	s, err := New(Config{URL: "redis://" + sentinel.Addr + "?master_set=calm", Timeout: testTimeout})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := check("test:sentinel:{a}:60", algorithm.FixedWindow, 100, time.Minute)
	if ok, _ := apply(t, s, 1, c); !ok {
		t.Fatal("Apply through sentinel = false, want true")
	}

	master.Stop()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out := make([]algorithm.Decision, 1)
		ok, err := s.Apply(context.Background(), []store.Check{c}, 1, out)
		if err == nil && ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no successful Apply within 30s of stopping the master; last error %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	role, err := redistest.Command(replica.Addr, "ROLE")
	if err != nil || !strings.HasPrefix(role, "master") {
		t.Errorf("ROLE of the replica after failover = %q, %v; want master", role, err)
	}
}

// waitReplicaSynced waits until the replica reports a finished sync.
func waitReplicaSynced(t *testing.T, replica *redistest.Server) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, _ := redistest.Command(replica.Addr, "INFO", "replication")
		if strings.Contains(info, "master_link_status:up") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica did not sync within 10s:\n%s", info)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
