// Package redistest starts real redis-server processes on loopback ports for
// tests. Each server runs without persistence in a temporary directory and is
// stopped, by its PID, when the test ends.
package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Server is a running redis-server.
type Server struct {
	Addr string // host:port on 127.0.0.1
	Port int
	Dir  string
	cmd  *exec.Cmd
}

// Required reports whether a missing redis-server must fail the test rather
// than skip it. `make test` and CI set CALM_REQUIRE_REDIS=1.
func Required() bool { return os.Getenv("CALM_REQUIRE_REDIS") != "" }

// Binary returns the path of redis-server, or fails or skips the test when
// it is not installed.
func Binary(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		if Required() {
			t.Fatalf("redis-server not found on PATH (run `make deps`): %v", err)
		}
		t.Skip("redis-server not installed; `make test` installs it")
	}
	return path
}

// Start runs a redis-server on a free loopback port with the extra
// configuration arguments given (such as "--cluster-enabled", "yes") and
// stops it when the test ends.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	bin := Binary(t)
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := FreePort()
		if err != nil {
			t.Fatalf("finding a free port: %v", err)
		}
		s, err := StartOnPort(bin, t.TempDir(), port, args...)
		if err != nil {
			lastErr = err
			continue
		}
		t.Cleanup(s.Stop)
		return s
	}
	t.Fatalf("starting redis-server: %v", lastErr)
	return nil
}

// StartOnPort runs a redis-server on 127.0.0.1:port with its files in dir
// and waits until it replies to PING. The caller must call Stop.
func StartOnPort(bin, dir string, port int, args ...string) (*Server, error) {
	base := []string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--dir", dir,
		"--save", "",
		"--appendonly", "no",
		"--protected-mode", "yes",
		"--logfile", filepath.Join(dir, "redis.log"),
	}
	cmd := exec.Command(bin, append(base, args...)...)
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Port: port, Dir: dir, cmd: cmd}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if err := Ping(s.Addr); err == nil {
			return s, nil
		}
		if cmd.ProcessState != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.Stop()
	log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
	return nil, fmt.Errorf("redis-server on port %d did not reply to PING within 10s; log:\n%s", port, log)
}

// Stop kills the server process and waits for it to exit. It is safe to call
// more than once.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Restart starts the server again on the same port, after Stop.
func (s *Server) Restart(t testing.TB, args ...string) {
	t.Helper()
	again, err := StartOnPort(Binary(t), s.Dir, s.Port, args...)
	if err != nil {
		t.Fatalf("restarting redis-server: %v", err)
	}
	s.cmd = again.cmd
}

// Pause stops the server process with SIGSTOP: it keeps its port and
// accepts TCP connections through the kernel's backlog but answers nothing,
// like a hung server. Resume continues it.
func (s *Server) Pause() error {
	if s.cmd == nil || s.cmd.Process == nil {
		return fmt.Errorf("redis-server on %s is not running", s.Addr)
	}
	return s.cmd.Process.Signal(syscall.SIGSTOP)
}

// Resume continues a server stopped by Pause.
func (s *Server) Resume() error {
	if s.cmd == nil || s.cmd.Process == nil {
		return fmt.Errorf("redis-server on %s is not running", s.Addr)
	}
	return s.cmd.Process.Signal(syscall.SIGCONT)
}

// PID returns the server's process id, or 0 when it is stopped.
func (s *Server) PID() int {
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Ping sends a RESP PING to addr and reports an error unless it gets PONG,
// or NOAUTH from a server with a password.
func Ping(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := conn.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	// A server with a password replies NOAUTH, which also shows it is up.
	if !strings.HasPrefix(line, "+PONG") && !strings.HasPrefix(line, "-NOAUTH") {
		return fmt.Errorf("unexpected reply to PING: %q", line)
	}
	return nil
}
