package algorithm

import _ "embed"

var (
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

var luaSources = [...]string{
	SlidingWindow: luaSlidingWindow,
	FixedWindow:   luaFixedWindow,
	TokenBucket:   luaTokenBucket,
	LeakyBucket:   luaLeakyBucket,
	LeakyQueue:    luaLeakyQueue,
	GCRA:          luaGCRA,
}

// LuaSource returns the Lua 5.1 source of algorithm k for Redis scripts, or
// "" for an unknown Kind. The source defines one local function, named by
// LuaFunction(k), that computes exactly what Decide(k, …) computes:
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
// The source has no side effects and reads no globals besides math.fmod, so
// a script may concatenate the sources of several kinds, or the same
// source twice, and then call the functions: reading and writing the keys
// and the clock (TIME) is up to the script. It is safe to call LuaSource
// from several goroutines.
func LuaSource(k Kind) string {
	if int(k) < len(luaSources) {
		return luaSources[k]
	}
	return ""
}

// LuaFunction returns the name of the Lua function that LuaSource(k)
// defines, such as "calm_gcra", or "" for an unknown Kind.
func LuaFunction(k Kind) string {
	if int(k) < len(luaSources) {
		return "calm_" + kindNames[k]
	}
	return ""
}
