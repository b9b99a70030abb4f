-- calm_leaky_bucket: the leaky bucket (meter) decision of calm's algorithm
-- package, the Lua twin of decideBucket in Go. Both must return the same
-- values for the same inputs, and a differential test replays random traces
-- through both.
--
-- Defines one local function:
--
--   calm_leaky_bucket(a, b, c, now, quota, window, burst, delay, max_wait, cost)
--     -> a, b, c, allowed, reason, limit, remaining, reset_after,
--        retry_after, wait
--
-- Inputs are Lua numbers holding integers, so convert ARGV with tonumber.
-- They are the state a, b, c, then now in Unix microseconds, then the Limit
-- fields quota, window (µs), burst, delay and max_wait (µs), then the cost.
-- The limit must pass Go's Limit.Validate, which keeps every intermediate
-- value below 2^53.
-- State: a = time of the last charge (µs), b = water level at a
-- in unit·µs (units × window; 0 is empty), c = 0. The math is the token
-- bucket's: the level of this bucket is the deficit of that one.
-- Outputs: the next state a, b, c (equal to the input when nothing is
-- charged); allowed 1 or 0; reason 0 allowed, 1 limited, 2 cost above
-- capacity, 3 queue full, 4 negative cost, 5 invalid limit; then limit,
-- remaining, reset_after, retry_after and wait as in Go's Decision (µs).

local calm_leaky_bucket
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

  local function reset_after(at, level, now, q)
    if level == 0 then
      return 0
    end
    return at - now + ceil_div(level, q)
  end

  function calm_leaky_bucket(a, b, c, now, quota, window, burst, delay, max_wait, cost)
    local q, w = quota, window
    if q <= 0 or w <= 0 then
      return a, b, c, 0, 5, 0, 0, 0, 0, 0
    end
    local cap = q
    if burst > 0 then
      cap = burst
    end
    local full = cap * w
    local at, level = a, clamp(b, 0, full)
    if now > at then
      -- Drain since the last charge; elapsed * q is formed only when it
      -- is at most level, so it stays below 2^53.
      local elapsed = now - at
      if elapsed > tdiv(level, q) then
        level = 0
      else
        level = level - elapsed * q
      end
      at = now
    end

    local remaining = tdiv(full - level, w)
    local reset = reset_after(at, level, now, q)
    local reason = cost_reason(cost, cap)
    if reason ~= 0 then
      return a, b, c, 0, reason, cap, remaining, reset, 0, 0
    end
    if cost == 0 then
      return a, b, c, 1, 0, cap, remaining, reset, 0, 0
    end
    local need = cost * w
    if need > full - level then
      local retry = at - now + ceil_div(level - (full - need), q)
      return a, b, c, 0, 1, cap, remaining, reset, retry, 0
    end

    level = level + need
    return at, level, 0, 1, 0, cap, tdiv(full - level, w), reset_after(at, level, now, q), 0, 0
  end
end
