package redis

import (
	"context"
	"crypto/sha1"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/rueidis"

	"github.com/calm-limiter/calm/algorithm"
)

var (
	//go:embed lua/apply.lua
	applyFrame string
	//go:embed lua/refund.lua
	refundFrame string
	//go:embed lua/undo.lua
	undoLua string
)

// Markers are the lines of a frame where generated Lua goes.
const (
	algorithmsMarker = "--{{ALGORITHMS}}"
	undoMarker       = "--{{UNDO}}"
)

// script is a Lua script with its SHA1 digest, the name EVALSHA uses.
type script struct {
	source string
	sha    string
}

func newScript(frame, marker, body string) script {
	src := strings.Replace(frame, marker, body, 1)
	sum := sha1.Sum([]byte(src))
	return script{source: src, sha: hex.EncodeToString(sum[:])}
}

// The scripts of the store.
var (
	// applyScript decides and charges requests of any algorithms.
	applyScript = newScript(applyFrame, algorithmsMarker, algorithmsLua(allKinds...))
	// kindScripts hold the function of one algorithm each: Redis runs the
	// whole script on every call, defining every function it holds, so a
	// call whose checks share an algorithm is cheaper with its own script.
	kindScripts = func() (scripts [algorithm.GCRA + 1]script) {
		for k := range scripts {
			scripts[k] = newScript(applyFrame, algorithmsMarker, algorithmsLua(algorithm.Kind(k)))
		}
		return scripts
	}()
	// refundScript takes back the charges of one hash slot.
	refundScript = newScript(refundFrame, undoMarker, undoLua)
	// allScripts lists every script, for SCRIPT LOAD.
	allScripts = append(kindScripts[:], applyScript, refundScript)
)

// allKinds lists every algorithm.
var allKinds = []algorithm.Kind{
	algorithm.SlidingWindow, algorithm.FixedWindow, algorithm.TokenBucket,
	algorithm.LeakyBucket, algorithm.LeakyQueue, algorithm.GCRA,
}

// scriptFor returns the apply script for a call whose checks use kind
// only, or every kind when mixed is true.
func scriptFor(kind algorithm.Kind, mixed bool) script {
	if mixed || int(kind) >= len(kindScripts) {
		return applyScript
	}
	return kindScripts[kind]
}

// algorithmsLua returns the Lua functions of the given algorithms, from
// package algorithm, each registered in the DECIDE table under its Kind.
func algorithmsLua(kinds ...algorithm.Kind) string {
	var b strings.Builder
	b.WriteString(algorithm.LuaSource(kinds...))
	b.WriteString("\n")
	for _, k := range kinds {
		fmt.Fprintf(&b, "DECIDE[%d] = %s\n", k, algorithm.LuaFunction(k))
	}
	return b.String()
}

// exec runs sc with EVALSHA. When Redis no longer has the script (after
// SCRIPT FLUSH, a restart or a failover to a node that never loaded it), it
// sends the source once with EVAL, which also caches it on that node.
//
// A call that fails on a broken connection is sent again, up to
// maxReconnects times, while ctx allows: after Redis restarts, each pooled
// connection fails once before the client replaces it.
func (sc script) exec(ctx context.Context, c rueidis.Client, keys, args []string) rueidis.RedisResult {
	resp := c.Do(ctx, sc.evalSHA(c, keys, args))
	for i := 0; i < maxReconnects && isConnectionError(resp.Error()) && ctx.Err() == nil; i++ {
		// NOTE: Redis may have run the script before the connection broke;
		// the second run then charges twice, which denies more, never
		// admits more.
		resp = c.Do(ctx, sc.evalSHA(c, keys, args))
	}
	if isNoScript(resp.Error()) {
		resp = c.Do(ctx, sc.eval(c, keys, args))
	}
	return resp
}

// maxReconnects bounds the resends of exec: one per connection that the
// client pools to a node by default, less the one that failed first.
const maxReconnects = 3

// isConnectionError reports an error of the connection rather than of
// Redis or of the context.
func isConnectionError(err error) bool {
	if err == nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return false
	}
	_, redisErr := rueidis.IsRedisErr(err)
	return !redisErr
}

func (sc script) evalSHA(c rueidis.Client, keys, args []string) rueidis.Completed {
	return c.B().Evalsha().Sha1(sc.sha).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build()
}

func (sc script) eval(c rueidis.Client, keys, args []string) rueidis.Completed {
	return c.B().Eval().Script(sc.source).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build()
}

func isNoScript(err error) bool {
	rerr, ok := rueidis.IsRedisErr(err)
	return ok && rerr.IsNoScript()
}

// load sends SCRIPT LOAD for every script to every node of the client.
func load(ctx context.Context, c rueidis.Client, scripts ...script) error {
	for _, node := range c.Nodes() {
		for _, sc := range scripts {
			if err := node.Do(ctx, node.B().ScriptLoad().Script(sc.source).Build()).Error(); err != nil {
				return err
			}
		}
	}
	return nil
}

// Script returns the Lua source of the script that Apply runs for checks
// that all use algorithm kind, and its SHA1 digest, the name EVALSHA uses.
// An operator can check it with SCRIPT EXISTS or measure Redis alone with
// redis-benchmark. Its header documents KEYS, ARGV and the
// reply.
func Script(kind algorithm.Kind) (source, sha string) {
	sc := scriptFor(kind, false)
	return sc.source, sc.sha
}
