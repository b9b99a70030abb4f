package redis

import (
	"crypto/tls"
	"errors"
	"fmt"
	"math/bits"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// Config configures a Store. The zero value of each field means the
// documented default; either URL or Client must be set.
type Config struct {
	// URL locates Redis, in the form
	//
	//	redis://[user:password@]host[:port][/db][?option=value&...]
	//
	// or rediss:// for TLS. The port defaults to 6379 and db to 0. Options:
	// addr=host:port adds a seed address (repeatable), master_set=NAME
	// connects through Redis Sentinel (host and addr then name sentinels),
	// skip_verify=true turns off TLS certificate checks, client_name=NAME
	// names the connections, and dial_timeout, write_timeout (Go durations)
	// and protocol=2 are passed to the client. Whether the servers run as
	// a Redis Cluster is detected when connecting.
	URL string
	// Client is a connected client that the caller already has. When it is
	// set, URL, TLSConfig, MaxConnections and SocketTimeout are ignored and
	// Close leaves the client open.
	Client rueidis.Client
	// TLSConfig replaces the TLS settings of a rediss:// URL, for example to
	// add a private CA or a client certificate.
	TLSConfig *tls.Config
	// MaxConnections caps the TCP connections to each Redis node. The client
	// pipelines the commands of all goroutines over these connections, so a
	// few are enough. The value is rounded down to a power of two, at most
	// 256. Zero means the client's default: 4 per node, or 1 per node of a
	// Redis Cluster.
	MaxConnections int
	// SocketTimeout bounds dialing, the connection handshake, and how long a
	// connection may wait for Redis before it is closed. Default 5s.
	// Requests never wait this long: Timeout bounds each Apply.
	SocketTimeout time.Duration
	// Timeout bounds each Apply, including any reconnection it triggers.
	// Default 50ms. An Apply that runs out of time returns an error that
	// wraps store.ErrUnavailable; Redis may still apply that request later,
	// which can only charge, never admit, more than the caller saw.
	Timeout time.Duration
	// ParallelSlots changes how a request whose checks live in several
	// Redis Cluster hash slots is charged. By default the slots are charged
	// one after another, in check order, stopping at the first denial and
	// refunding the slots already charged. That takes one round trip per
	// slot, and no request is denied for budget that a refund later
	// returns, as long as the narrowest check comes first (calm.Limiter
	// keeps the caller's order: user, endpoint, global). With ParallelSlots
	// every slot is charged at once, in one round trip. In a burst, requests
	// that arrive while a charge waits for its refund may then be denied (5
	// to 53 of 100 in the burst test of docs/REDIS.md). Neither mode ever
	// admits more than a limit. Nothing changes on a standalone Redis or
	// for checks that share a slot.
	ParallelSlots bool
	// Now supplies the time of every decision. Nil means the Redis server
	// clock (TIME inside the script), so that servers with skewed clocks
	// agree. Set it only in tests or with a single app server.
	Now func() time.Time
}

// Defaults for Config fields left zero.
const (
	DefaultTimeout       = 50 * time.Millisecond
	DefaultSocketTimeout = 5 * time.Second
)

// maxMultiplex is the largest rueidis PipelineMultiplex: 2^8 connections.
const maxMultiplex = 8

// urlOptions are the query parameters that Config.URL accepts.
var urlOptions = map[string]bool{
	"addr": true, "master_set": true, "skip_verify": true, "client_name": true,
	"dial_timeout": true, "write_timeout": true, "protocol": true, "db": true,
}

// clientOption turns the connection settings of c into rueidis options.
func (c Config) clientOption() (rueidis.ClientOption, error) {
	if c.URL == "" {
		return rueidis.ClientOption{}, errors.New("redis: Config.URL is empty: set it (for example redis://127.0.0.1:6379/0) or pass Config.Client")
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		// The error quotes the URL, password included; keep only its cause.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return rueidis.ClientOption{}, fmt.Errorf("redis: invalid URL (%v): use redis://[user:password@]host:port/db or rediss:// for TLS", err)
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return rueidis.ClientOption{}, fmt.Errorf("redis: invalid URL scheme %q: use redis:// or rediss:// (TLS)", u.Scheme)
	}
	shown := u.Redacted()
	for name := range u.Query() {
		if !urlOptions[name] {
			return rueidis.ClientOption{}, fmt.Errorf("redis: invalid URL %q: unknown option %q", shown, name)
		}
	}
	opt, err := rueidis.ParseURL(c.URL)
	if err != nil {
		return rueidis.ClientOption{}, fmt.Errorf("redis: invalid URL %q: %v",
			userinfo.ReplaceAllString(shown, ":xxxxx@"), redactError(err, c.URL))
	}
	if c.TLSConfig != nil && u.Scheme == "rediss" {
		opt.TLSConfig = c.TLSConfig.Clone()
	}
	timeout := c.SocketTimeout
	if timeout <= 0 {
		timeout = DefaultSocketTimeout
	}
	if opt.Dialer.Timeout == 0 {
		opt.Dialer.Timeout = timeout
	}
	if opt.ConnWriteTimeout == 0 {
		opt.ConnWriteTimeout = timeout
	}
	if opt.Sentinel.MasterSet != "" {
		opt.Sentinel.Dialer = opt.Dialer
		opt.Sentinel.TLSConfig = opt.TLSConfig
	}
	if c.MaxConnections < 0 {
		return rueidis.ClientOption{}, fmt.Errorf("redis: invalid MaxConnections %d: must be positive, or 0 for the default", c.MaxConnections)
	}
	if c.MaxConnections > 0 {
		opt.PipelineMultiplex = min(bits.Len(uint(c.MaxConnections))-1, maxMultiplex)
		opt.BlockingPoolSize = c.MaxConnections
	}
	opt.DisableCache = true
	return opt, nil
}

// redactError returns the text of err with anything that may be a
// password, the text between ':' and '@' as in user:password@host, masked.
func redactError(err error, raw string) string {
	msg := err.Error()
	if u, perr := url.Parse(raw); perr == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			msg = strings.ReplaceAll(msg, pw, "xxxxx")
		}
	}
	return userinfo.ReplaceAllString(msg, ":xxxxx@")
}

// userinfo matches the password part of user:password@.
var userinfo = regexp.MustCompile(`:[^:@/\s"]*@`)
