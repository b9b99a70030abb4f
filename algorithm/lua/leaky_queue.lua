-- calm_leaky_queue: the leaky bucket as a queue (nginx limit_req) decision
-- of calm's algorithm package, the Lua twin of decideLeakyQueue in Go. Both
-- must return the same values for the same inputs, and a differential test
-- replays random traces through both.
--
-- Defines one local function, after the helpers of common.lua and arrival.lua:
--
--   calm_leaky_queue(a, b, c, now, quota, window, burst, delay, max_wait, cost)
--     -> a, b, c, allowed, reason, limit, remaining, reset_after,
--        retry_after, wait
--
-- Inputs are Lua numbers holding integers, so convert ARGV with tonumber.
-- They are the state a, b, c, then now in Unix microseconds, then the Limit
-- fields quota, window (µs), burst, delay and max_wait (µs), then the cost.
-- The limit must pass Go's Limit.Validate, which keeps every intermediate
-- value below 2^53.
-- State: a = theoretical arrival time (TAT) in whole µs, b = its
-- fraction in units of 1/quota µs (0 <= b < quota), c = 0.
-- Outputs: the next state a, b, c (equal to the input when nothing is
-- charged); allowed 1 or 0; reason 0 allowed, 1 limited, 2 cost above
-- capacity, 3 queue full, 4 negative cost, 5 invalid limit; then limit,
-- remaining, reset_after, retry_after and wait as in Go's Decision (µs).

local calm_leaky_queue
do
  -- queue_remaining bounds remaining_units by max_wait; see queueRemaining
  -- in Go for the derivation of the split g = hi * w + lo.
  local function queue_remaining(ta, tb, now, q, w, cap, delay, max_wait)
    local k = remaining_units(ta, tb, now, q, w, cap)
    if max_wait <= 0 then
      return k
    end
    local g = now + max_wait - ta
    local g_max = tdiv(cap * w, q) + 2 * w
    if g >= g_max then
      return k
    elseif g <= -g_max then
      return 0
    end
    local hi, lo = floor_div(g, w), floor_mod(g, w)
    local by_wait = clamp(delay, 0, cap) + 1 + hi * q + floor_div(lo * q - tb, w)
    if by_wait < k then
      k = by_wait
    end
    return clamp(k, 0, cap)
  end

  function calm_leaky_queue(a, b, c, now, quota, window, burst, delay, max_wait, cost)
    local q, w = quota, window
    if q <= 0 or w <= 0 then
      return a, b, c, 0, 5, 0, 0, 0, 0, 0
    end
    local cap = q
    if burst > 0 then
      cap = burst
    end
    local delay_units = clamp(delay, 0, cap) * w
    local ta, tb = load_arrival(a, b, now, q)

    local remaining = queue_remaining(ta, tb, now, q, w, cap, delay, max_wait)
    local reset = arrival_reset_after(ta, tb, now)
    local reason = cost_reason(cost, cap)
    if reason ~= 0 then
      return a, b, c, 0, reason, cap, remaining, reset, 0, 0
    end
    if cost == 0 then
      return a, b, c, 1, 0, cap, remaining, reset, 0, 0
    end
    local first = earliest(ta, tb, (cap - cost) * w, q)
    local start = earliest(ta, tb, delay_units, q)
    if max_wait > 0 and start - max_wait > first then
      first = start - max_wait
    end
    if now < first then
      return a, b, c, 0, 3, cap, remaining, reset, first - now, 0
    end

    local wait = start - now
    if wait < 0 then
      wait = 0
    end
    ta, tb = add_units(ta, tb, cost * w, q)
    remaining = queue_remaining(ta, tb, now, q, w, cap, delay, max_wait)
    return ta, tb, 0, 1, 0, cap, remaining, arrival_reset_after(ta, tb, now), 0, wait
  end
end
