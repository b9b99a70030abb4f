-- undo.lua defines the refund of each algorithm: UNDO[kind] removes the
-- charge of one admitted request from the current state of its key, after
-- other requests may have charged the key too.
--
--   UNDO[kind](a, b, c, a0, b0, c0, a1, b1, c1, now, quota, window, cost)
--     -> a, b, c
--
-- (a, b, c) is the current state, (a0, b0, c0) the state before the charge
-- and (a1, b1, c1) the state the charge wrote; the State layout is the one
-- documented in Go's algorithm.State. The result never holds more budget
-- than the current state would hold had the charge never happened: when
-- time has already used up part of the charge, only the rest comes back.
-- Every value stays an integer below 2^53.

local fmod = math.fmod

local function positive(x)
  if x < 0 then
    return 0
  end
  return x
end

-- Window counters: the charge added cost to the count of window a1, which
-- is the current count (b) while that window lasts and the previous count
-- (c, sliding window only) during the next one.
local function undo_sliding_window(a, b, c, a0, b0, c0, a1, b1, c1, now, quota, window, cost)
  if a == a1 then
    return a, positive(b - cost), c
  elseif a == a1 + window then
    return a, b, positive(c - cost)
  end
  return a, b, c
end

local function undo_fixed_window(a, b, c, a0, b0, c0, a1, b1, c1, now, quota, window, cost)
  if a == a1 then
    return a, positive(b - cost), c
  end
  return a, b, c
end

-- GCRA, the leaky queue and both buckets, which keep GCRA's state: the
-- charge moved the theoretical arrival time a + b/quota µs forward by
-- add = cost*window/quota µs. The part of that interval that now has
-- passed is spent; the part still ahead, min(add, TAT1 - now), comes back.
local function undo_arrival(a, b, c, a0, b0, c0, a1, b1, c1, now, quota, window, cost)
  local add = cost * window
  if a1 < now then
    return a, b, c
  end
  local ahead = (a1 - now) * quota + b1
  local refund = ahead
  if refund > add then
    refund = add
  end
  if refund <= 0 then
    return a, b, c
  end
  local r = fmod(refund, quota)
  a = a - (refund - r) / quota
  b = b - r
  if b < 0 then
    b = b + quota
    a = a - 1
  end
  return a, b, c
end

UNDO[0] = undo_sliding_window
UNDO[1] = undo_fixed_window
UNDO[2] = undo_arrival
UNDO[3] = undo_arrival
UNDO[4] = undo_arrival
UNDO[5] = undo_arrival
