package redistest

import (
	"strconv"
	"strings"
	"testing"
)

func TestStartAndStop(t *testing.T) {
	s := Start(t)
	if err := Ping(s.Addr); err != nil {
		t.Fatalf("Ping(%s) = %v, want nil", s.Addr, err)
	}
	s.Stop()
	if err := Ping(s.Addr); err == nil {
		t.Fatalf("Ping(%s) after Stop = nil, want an error", s.Addr)
	}
	s.Restart(t)
	if err := Ping(s.Addr); err != nil {
		t.Fatalf("Ping(%s) after Restart = %v, want nil", s.Addr, err)
	}
}

func TestStartCluster(t *testing.T) {
	c := StartCluster(t, 3)
	for _, addr := range c.Addrs() {
		out, err := Command(addr, "CLUSTER", "INFO")
		if err != nil {
			t.Fatalf("CLUSTER INFO on %s: %v", addr, err)
		}
		if !strings.Contains(out, "cluster_slots_assigned:16384") {
			t.Errorf("CLUSTER INFO on %s = %q, want all 16384 slots assigned", addr, out)
		}
	}
}

func TestStartSentinel(t *testing.T) {
	master := Start(t)
	s := StartSentinel(t, master, "calm")
	out, err := Command(s.Addr, "SENTINEL", "get-master-addr-by-name", "calm")
	if err != nil {
		t.Fatalf("SENTINEL get-master-addr-by-name: %v", err)
	}
	if !strings.Contains(out, strconv.Itoa(master.Port)) {
		t.Errorf("sentinel master address = %q, want port %d", out, master.Port)
	}
}
