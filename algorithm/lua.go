package algorithm

import (
	_ "embed"
	"strings"
)

// The Lua files, one per function or group of shared helpers.
var (
	//go:embed lua/common.lua
	luaCommon string
	//go:embed lua/arrival.lua
	luaArrival string
	//go:embed lua/sliding_window.lua
	luaSlidingWindow string
	//go:embed lua/fixed_window.lua
	luaFixedWindow string
	//go:embed lua/token_bucket.lua
	luaTokenBucket string
	//go:embed lua/leaky_bucket.lua
	luaLeakyBucket string
	//go:embed lua/leaky_queue.lua
	luaLeakyQueue string
	//go:embed lua/gcra.lua
	luaGCRA string
)

// luaParts lists, for each Kind, the Lua files its function needs, each
// after the files it uses. The buckets call calm_gcra, as decideBucket
// calls decideGCRA in Go.
var luaParts = [...][]*string{
	SlidingWindow: {&luaCommon, &luaSlidingWindow},
	FixedWindow:   {&luaCommon, &luaFixedWindow},
	TokenBucket:   {&luaCommon, &luaArrival, &luaGCRA, &luaTokenBucket},
	LeakyBucket:   {&luaCommon, &luaArrival, &luaGCRA, &luaLeakyBucket},
	LeakyQueue:    {&luaCommon, &luaArrival, &luaLeakyQueue},
	GCRA:          {&luaCommon, &luaArrival, &luaGCRA},
}

// LuaSource returns Lua 5.1 source for Redis scripts that defines, for each
// of the given kinds, the local function named by LuaFunction(k). It
// returns "" when kinds is empty or holds an unknown Kind. Each function
// computes exactly what Decide(k, …) computes:
//
//	calm_<kind>(a, b, c, now, quota, window, burst, delay, max_wait, cost)
//	  -> a, b, c, allowed, reason, limit, remaining, reset_after, retry_after, wait
//
// All arguments are Lua numbers holding integers: the State fields a, b, c,
// now in Unix microseconds, the Limit fields (window and max_wait in
// microseconds) and the cost. The limit must pass Limit.Validate; then every
// intermediate value stays below 2^53 and the doubles of Lua compute the
// same integers as Go. The results are the next State (the input when
// nothing is charged), allowed as 1 or 0, the Reason as its numeric value,
// and the Decision fields in microseconds. All are integers, so they survive
// the conversion of Lua numbers to Redis integer replies.
//
// The source also defines, once, the local helpers that the functions
// share, and calm_gcra for the bucket kinds, which call it. A script that
// needs several kinds should pass them all to one call: concatenating the
// sources of separate calls also works, because a repeated local
// definition shadows the earlier one, but repeats the helpers. The source
// has no side effects and reads no globals besides math.fmod: reading and
// writing the keys and the clock (TIME) is up to the script. It is safe to
// call LuaSource from several goroutines.
func LuaSource(kinds ...Kind) string {
	var b strings.Builder
	seen := make(map[*string]bool)
	for _, k := range kinds {
		if int(k) >= len(luaParts) {
			return ""
		}
		for _, part := range luaParts[k] {
			if seen[part] {
				continue
			}
			seen[part] = true
			if b.Len() > 0 {
				b.WriteString("\n")
			}
			b.WriteString(*part)
		}
	}
	return b.String()
}

// LuaFunction returns the name of the Lua function that LuaSource(k)
// defines, such as "calm_gcra", or "" for an unknown Kind.
func LuaFunction(k Kind) string {
	if int(k) < len(luaParts) {
		return "calm_" + kindNames[k]
	}
	return ""
}
