-- calm_sliding_window: the sliding window counter decision of calm's
-- algorithm package, the Lua twin of decideSlidingWindow in Go. Both must
-- return the same values for the same inputs, and a differential test
-- replays random traces through both.
--
-- Defines one local function, after the helpers of common.lua:
--
--   calm_sliding_window(a, b, c, now, quota, window, burst, delay, max_wait, cost)
--     -> a, b, c, allowed, reason, limit, remaining, reset_after,
--        retry_after, wait
--
-- Inputs are Lua numbers holding integers, so convert ARGV with tonumber.
-- They are the state a, b, c, then now in Unix microseconds, then the Limit
-- fields quota, window (µs), burst, delay and max_wait (µs), then the cost.
-- The limit must pass Go's Limit.Validate, which keeps every intermediate
-- value below 2^53.
-- State: a = current window start (a multiple of window),
-- b = units used in it, c = units used in the previous window.
-- Outputs: the next state a, b, c (equal to the input when nothing is
-- charged); allowed 1 or 0; reason 0 allowed, 1 limited, 2 cost above
-- capacity, 3 queue full, 4 negative cost, 5 invalid limit; then limit,
-- remaining, reset_after, retry_after and wait as in Go's Decision (µs).

local calm_sliding_window
do
  -- reset_after returns the time from now until the estimate is zero.
  local function reset_after(start, now, current, prev, w)
    if current > 0 then
      return start + 2 * w - now
    elseif prev > 0 then
      return start + w - now
    end
    return 0
  end

  -- retry_after returns the time from now until a request of the given
  -- cost (0 < cost <= q) passes.
  local function retry_after(start, now, current, prev, q, w, cost)
    local room = q - cost - current
    if room >= 0 then
      return start + w - tdiv(room * w, prev) - now
    end
    room = q - cost
    if room >= current then
      return start + w - now
    end
    return start + 2 * w - tdiv(room * w, current) - now
  end

  function calm_sliding_window(a, b, c, now, quota, window, burst, delay, max_wait, cost)
    local q, w = quota, window
    if q <= 0 or w <= 0 then
      return a, b, c, 0, 5, 0, 0, 0, 0, 0
    end
    local start = now - floor_mod(now, w)
    local current, prev = 0, 0
    if a >= start then
      -- Same window, or the clock stepped back: stay in the stored window.
      start = a
      current = clamp(b, 0, q)
      prev = clamp(c, 0, q)
    elseif a == start - w then
      prev = clamp(b, 0, q)
    end
    local elapsed = now - start
    if elapsed < 0 then
      elapsed = 0
    end
    local used = ceil_div(prev * (w - elapsed), w) + current

    local remaining = q - used
    if remaining < 0 then
      remaining = 0
    end
    local reset = reset_after(start, now, current, prev, w)
    local reason = cost_reason(cost, q)
    if reason ~= 0 then
      return a, b, c, 0, reason, q, remaining, reset, 0, 0
    end
    if cost == 0 then
      return a, b, c, 1, 0, q, remaining, reset, 0, 0
    end
    if cost > q - used then
      local retry = retry_after(start, now, current, prev, q, w, cost)
      return a, b, c, 0, 1, q, remaining, reset, retry, 0
    end

    current = current + cost
    reset = reset_after(start, now, current, prev, w)
    return start, current, prev, 1, 0, q, q - used - cost, reset, 0, 0
  end
end
