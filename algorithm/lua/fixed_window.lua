-- calm_fixed_window: the fixed window decision of calm's algorithm package,
-- the Lua twin of decideFixedWindow in Go. Both must return the same values
-- for the same inputs, and a differential test replays random traces through
-- both.
--
-- Defines one local function, after the helpers of common.lua:
--
--   calm_fixed_window(a, b, c, now, quota, window, burst, delay, max_wait, cost)
--     -> a, b, c, allowed, reason, limit, remaining, reset_after,
--        retry_after, wait
--
-- Inputs are Lua numbers holding integers, so convert ARGV with tonumber.
-- They are the state a, b, c, then now in Unix microseconds, then the Limit
-- fields quota, window (µs), burst, delay and max_wait (µs), then the cost.
-- The limit must pass Go's Limit.Validate, which keeps every intermediate
-- value below 2^53.
-- State: a = window start (a multiple of window), b = units used, c = 0.
-- Outputs: the next state a, b, c (equal to the input when nothing is
-- charged); allowed 1 or 0; reason 0 allowed, 1 limited, 2 cost above
-- capacity, 3 queue full, 4 negative cost, 5 invalid limit; then limit,
-- remaining, reset_after, retry_after and wait as in Go's Decision (µs).

local function calm_fixed_window(a, b, c, now, quota, window, burst, delay, max_wait, cost)
  local q, w = quota, window
  if q <= 0 or w <= 0 then
    return a, b, c, 0, 5, 0, 0, 0, 0, 0
  end
  local start = now - floor_mod(now, w)
  local used = 0
  if a >= start then
    -- The stored window, or a later one after the clock stepped back.
    start = a
    used = clamp(b, 0, q)
  end

  local remaining, reset_after = q - used, start + w - now
  local reason = cost_reason(cost, q)
  if reason ~= 0 then
    return a, b, c, 0, reason, q, remaining, reset_after, 0, 0
  end
  if cost == 0 then
    return a, b, c, 1, 0, q, remaining, reset_after, 0, 0
  end
  if cost > q - used then
    return a, b, c, 0, 1, q, remaining, reset_after, reset_after, 0
  end
  return start, used + cost, 0, 1, 0, q, remaining - cost, reset_after, 0, 0
end
