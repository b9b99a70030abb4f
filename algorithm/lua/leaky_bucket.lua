-- calm_leaky_bucket: the leaky bucket (meter) decision of calm's algorithm
-- package, the Lua twin of decideBucket in Go. Both must return the same
-- values for the same inputs, and a differential test replays random traces
-- through both. The meter is GCRA with tolerance (capacity - 1) intervals,
-- so this file is calm_gcra under another name.
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
-- State: a = the time at which the bucket is empty again (its theoretical
-- arrival time, TAT) in whole µs, b = the TAT's fraction in units of
-- 1/quota µs (0 <= b < quota), c = 0. The water level at now is
-- (TAT - now) * quota / window units.
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

  -- A theoretical arrival time (TAT) is ta + tb/q µs with 0 <= tb < q.

  -- load_arrival returns max(TAT of the state, now).
  local function load_arrival(a, b, now, q)
    if a < now then
      return now, 0
    end
    return a, clamp(b, 0, q - 1)
  end

  -- add_units returns the TAT advanced by units/q µs.
  local function add_units(ta, tb, units, q)
    ta = ta + tdiv(units, q)
    tb = tb + fmod(units, q)
    if tb >= q then
      ta = ta + 1
      tb = tb - q
    end
    return ta, tb
  end

  -- earliest returns the first whole µs at or after TAT - slack/q.
  local function earliest(ta, tb, slack, q)
    return ta - floor_div(slack - tb, q)
  end

  -- reset_after returns ceil(TAT - now) for TAT >= now.
  local function reset_after(ta, tb, now)
    if tb > 0 then
      return ta - now + 1
    end
    return ta - now
  end

  -- remaining returns how many requests of cost 1 conform after this one.
  local function remaining_units(ta, tb, now, q, w, cap)
    local room = cap * w - tb
    local ahead = ta - now
    if room < 0 or ahead > tdiv(room, q) then
      return 0
    end
    return tdiv(room - ahead * q, w)
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
    local ta, tb = load_arrival(a, b, now, q)

    local remaining = remaining_units(ta, tb, now, q, w, cap)
    local reset = reset_after(ta, tb, now)
    local reason = cost_reason(cost, cap)
    if reason ~= 0 then
      return a, b, c, 0, reason, cap, remaining, reset, 0, 0
    end
    if cost == 0 then
      return a, b, c, 1, 0, cap, remaining, reset, 0, 0
    end
    local first = earliest(ta, tb, (cap - cost) * w, q)
    if now < first then
      return a, b, c, 0, 1, cap, remaining, reset, first - now, 0
    end

    ta, tb = add_units(ta, tb, cost * w, q)
    remaining = remaining_units(ta, tb, now, q, w, cap)
    return ta, tb, 0, 1, 0, cap, remaining, reset_after(ta, tb, now), 0, 0
  end
end
