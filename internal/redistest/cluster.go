package redistest

import (
	"bytes"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Cluster is a Redis Cluster of masters without replicas on loopback ports.
type Cluster struct {
	Servers []*Server
}

// Addrs returns the host:port of every master.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.Servers))
	for i, s := range c.Servers {
		addrs[i] = s.Addr
	}
	return addrs
}

// StartCluster runs n redis-server processes with cluster mode enabled,
// joins them with `redis-cli --cluster create` so that every hash slot is
// served, waits until each node reports cluster_state:ok, and stops them
// when the test ends. Redis Cluster needs at least 3 masters.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	bin := Binary(t)
	cli := CLIBinary(t)
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		c, err := startCluster(t, bin, cli, n)
		if err == nil {
			return c
		}
		lastErr = err
	}
	t.Fatalf("starting a %d-node Redis Cluster: %v", n, lastErr)
	return nil
}

func startCluster(t testing.TB, bin, cli string, n int) (*Cluster, error) {
	c := &Cluster{}
	for i := 0; i < n; i++ {
		port, err := clusterPort()
		if err != nil {
			c.Stop()
			return nil, err
		}
		s, err := StartOnPort(bin, t.TempDir(), port, clusterArgs...)
		if err != nil {
			c.Stop()
			return nil, err
		}
		c.Servers = append(c.Servers, s)
	}
	t.Cleanup(c.Stop)

	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	out, err := exec.Command(cli, args...).CombinedOutput()
	if err != nil {
		c.Stop()
		return nil, fmt.Errorf("redis-cli --cluster create: %v\n%s", err, out)
	}
	if err := c.waitReady(15 * time.Second); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// clusterPort returns a free port whose cluster bus port (port+10000) is
// also free.
func clusterPort() (int, error) {
	for i := 0; i < 20; i++ {
		port, err := FreePort()
		if err != nil {
			return 0, err
		}
		if port+10000 > 65535 {
			continue
		}
		if portFree(port + 10000) {
			return port, nil
		}
	}
	return 0, fmt.Errorf("no free port pair (port, port+10000) found on 127.0.0.1")
}

// waitReady polls CLUSTER INFO on every node until all report
// cluster_state:ok.
func (c *Cluster) waitReady(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		ready := true
		var last string
		for _, s := range c.Servers {
			info, err := Command(s.Addr, "CLUSTER", "INFO")
			if err != nil || !strings.Contains(info, "cluster_state:ok") {
				ready, last = false, info
				break
			}
		}
		if ready {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster not ready after %v; last CLUSTER INFO:\n%s", limit, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// clusterArgs are the redis-server arguments of a cluster node.
var clusterArgs = []string{
	"--cluster-enabled", "yes",
	"--cluster-config-file", "nodes.conf",
	"--cluster-node-timeout", "2000",
}

// RestartNode starts node i again after its Stop, on the same port and with
// the same nodes.conf, and waits until every node reports cluster_state:ok.
func (c *Cluster) RestartNode(t testing.TB, i int) {
	t.Helper()
	c.Servers[i].Restart(t, clusterArgs...)
	if err := c.waitReady(30 * time.Second); err != nil {
		t.Fatalf("restarting cluster node %d: %v", i, err)
	}
}

// Stop stops every node. It is safe to call more than once.
func (c *Cluster) Stop() {
	for _, s := range c.Servers {
		s.Stop()
	}
}

// CLIBinary returns the path of redis-cli, or fails or skips the test when
// it is not installed.
func CLIBinary(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("redis-cli")
	if err != nil {
		if Required() {
			t.Fatalf("redis-cli not found on PATH (run `make deps`): %v", err)
		}
		t.Skip("redis-cli not installed; `make test` installs it")
	}
	return path
}

// Command runs one command with redis-cli against addr and returns its raw
// output.
func Command(addr string, args ...string) (string, error) {
	host, port, err := splitAddr(addr)
	if err != nil {
		return "", err
	}
	full := append([]string{"-h", host, "-p", port}, args...)
	var out bytes.Buffer
	cmd := exec.Command("redis-cli", full...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("redis-cli %s: %w", strings.Join(args, " "), err)
	}
	return out.String(), nil
}

func splitAddr(addr string) (host, port string, err error) {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return "", "", fmt.Errorf("address %q has no port", addr)
	}
	if _, err := strconv.Atoi(addr[i+1:]); err != nil {
		return "", "", fmt.Errorf("address %q has an invalid port", addr)
	}
	return addr[:i], addr[i+1:], nil
}

// portFree reports whether a TCP listener can bind 127.0.0.1:port now.
func portFree(port int) bool {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}
