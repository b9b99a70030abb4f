-- calm_token_bucket: the token bucket decision of calm's algorithm package,
-- the Lua twin of decideBucket in Go. Both must return the same values for
-- the same inputs, and a differential test replays random traces through
-- both. The bucket is GCRA with tolerance (capacity - 1) intervals, so this
-- function calls calm_gcra.
--
-- Defines one local function, after calm_gcra (gcra.lua) and its helpers:
--
--   calm_token_bucket(a, b, c, now, quota, window, burst, delay, max_wait, cost)
--     -> a, b, c, allowed, reason, limit, remaining, reset_after,
--        retry_after, wait
--
-- Inputs are Lua numbers holding integers, so convert ARGV with tonumber.
-- They are the state a, b, c, then now in Unix microseconds, then the Limit
-- fields quota, window (µs), burst, delay and max_wait (µs), then the cost.
-- The limit must pass Go's Limit.Validate, which keeps every intermediate
-- value below 2^53.
-- State: a = the time at which the bucket is full again (its theoretical
-- arrival time, TAT) in whole µs, b = the TAT's fraction in units of
-- 1/quota µs (0 <= b < quota), c = 0. The token deficit at now is
-- (TAT - now) * quota / window tokens.
-- Outputs: the next state a, b, c (equal to the input when nothing is
-- charged); allowed 1 or 0; reason 0 allowed, 1 limited, 2 cost above
-- capacity, 3 queue full, 4 negative cost, 5 invalid limit; then limit,
-- remaining, reset_after, retry_after and wait as in Go's Decision (µs).

local function calm_token_bucket(a, b, c, now, quota, window, burst, delay, max_wait, cost)
  return calm_gcra(a, b, c, now, quota, window, burst, delay, max_wait, cost)
end
