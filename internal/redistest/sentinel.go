package redistest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// StartSentinel runs a Redis Sentinel on a free loopback port that monitors
// master under the given master-set name with a quorum of one, and stops it
// when the test ends. It returns once the sentinel answers PING and knows
// the master.
func StartSentinel(t testing.TB, master *Server, name string) *Server {
	t.Helper()
	bin := Binary(t)
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := FreePort()
		if err != nil {
			t.Fatalf("finding a free port: %v", err)
		}
		s, err := startSentinel(bin, t.TempDir(), port, master, name)
		if err != nil {
			lastErr = err
			continue
		}
		t.Cleanup(s.Stop)
		return s
	}
	t.Fatalf("starting redis sentinel: %v", lastErr)
	return nil
}

func startSentinel(bin, dir string, port int, master *Server, name string) (*Server, error) {
	conf := fmt.Sprintf(`port %d
bind 127.0.0.1
dir %s
logfile %s
sentinel monitor %s 127.0.0.1 %d 1
sentinel down-after-milliseconds %s 1000
sentinel failover-timeout %s 5000
`, port, dir, filepath.Join(dir, "redis.log"), name, master.Port, name, name)
	path := filepath.Join(dir, "sentinel.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, path, "--sentinel")
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &Server{Addr: fmt.Sprintf("127.0.0.1:%d", port), Port: port, Dir: dir, cmd: cmd}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		out, err := Command(s.Addr, "SENTINEL", "get-master-addr-by-name", name)
		if err == nil && strings.Contains(out, "127.0.0.1") {
			return s, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.Stop()
	log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
	return nil, fmt.Errorf("sentinel on port %d did not start within 10s; log:\n%s", port, log)
}
