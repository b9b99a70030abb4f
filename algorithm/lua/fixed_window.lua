-- calm_fixed_window: the fixed window decision of calm's algorithm package,
-- the Lua twin of decideFixedWindow in Go. Both must return the same values
-- for the same inputs, and a differential test replays random traces through
-- both.
--
-- Defines one local function:
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

local calm_fixed_window
do
  -- Integer helpers on doubles. Every operand is an integer below 2^53, so
  -- math.fmod (C fmod, always exact) and the division of an exact multiple
  -- are exact too. They truncate toward zero as Go's / and % do.
  local fmod = math.fmod

  local function tdiv(x, y)
    return (x - fmod(x, y)) / y
  end

  local function floor_div(x, y) -- y > 0
    local r = fmod(x, y)
    local q = (x - r) / y
    if r < 0 then
      q = q - 1
    end
    return q
  end

  local function floor_mod(x, y) -- y > 0; result in [0, y)
    local r = fmod(x, y)
    if r < 0 then
      r = r + y
    end
    return r
  end

  local function ceil_div(x, y) -- x >= 0, y > 0
    local r = fmod(x, y)
    local q = (x - r) / y
    if r ~= 0 then
      q = q + 1
    end
    return q
  end

  local function clamp(v, lo, hi)
    if v < lo then
      return lo
    elseif v > hi then
      return hi
    end
    return v
  end

  -- cost_reason returns 4 (invalid cost) for a negative cost, 2 (cost too
  -- large) above the capacity, else 0.
  local function cost_reason(cost, capacity)
    if cost < 0 then
      return 4
    elseif cost > capacity then
      return 2
    end
    return 0
  end

  function calm_fixed_window(a, b, c, now, quota, window, burst, delay, max_wait, cost)
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
end
