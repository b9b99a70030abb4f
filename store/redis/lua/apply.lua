-- apply.lua decides every check of one request and charges all of them or
-- none. The algorithm functions are inserted where the ALGORITHMS marker
-- stands; each is registered as DECIDE[kind] with this signature:
--
--   DECIDE[kind](a, b, c, now, quota, window, burst, delay, max_wait, cost)
--     -> a, b, c, allowed, reason, limit, remaining, reset_after, retry_after, wait
--
-- where (a, b, c) is the state, allowed is 0 or 1 and every time is in
-- microseconds.
--
-- KEYS[i]   state of check i: a hash with the integer fields a, b and c of
--           the State and k, the Kind that wrote them. A state written by
--           another Kind reads as a fresh one.
-- ARGV[1]   now in Unix microseconds, or "" to read the Redis clock (TIME).
-- ARGV[2]   cost of the request.
-- ARGV[3]   "0" to decide and charge; "1" to do the same and append the
--           state before and after each check to the reply, which a
--           cross-slot refund needs; "2" to decide without charging (the
--           first phase of a two-phase cross-slot request).
-- ARGV[4 + 7(i-1) ...] for check i: kind, quota, window, burst, delay,
--           max_wait, and the state horizon in milliseconds (the time after
--           which the state of a key is as good as absent).
--
-- Reply: {allowed, now, then for each check: allowed, reason, limit,
-- remaining, reset_after, retry_after, wait, and with ARGV[3] = "1" also
-- a, b, c before and a, b, c after}.
--
-- Numbers stay below 2^53, so the doubles of Lua hold them exactly. They are
-- written with %.0f because tostring would switch to exponent notation.

local DECIDE = {}

--{{ALGORITHMS}}

local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[1])
end
local cost = tonumber(ARGV[2])
local with_state = ARGV[3] == '1'
local dry_run = ARGV[3] == '2'

local reply = {1, now}
-- pending holds the new state of each key decided so far, so that a key
-- listed twice is charged twice, in order, as the memory store does.
local pending = {}
local order = {}
local all = true

for i = 1, #KEYS do
  local p = 4 + 7 * (i - 1)
  local kind = tonumber(ARGV[p])
  local quota, window = tonumber(ARGV[p + 1]), tonumber(ARGV[p + 2])
  local burst, delay, max_wait = tonumber(ARGV[p + 3]), tonumber(ARGV[p + 4]), tonumber(ARGV[p + 5])
  local horizon = tonumber(ARGV[p + 6])

  local key = KEYS[i]
  local a, b, c
  local prev = pending[key]
  if prev and prev[5] == kind then
    a, b, c = prev[1], prev[2], prev[3]
  elseif prev then
    a, b, c = 0, 0, 0
  else
    local old = redis.call('HMGET', key, 'a', 'b', 'c', 'k')
    if tonumber(old[4]) == kind then
      a, b, c = tonumber(old[1]) or 0, tonumber(old[2]) or 0, tonumber(old[3]) or 0
    else
      -- A new key, or one another algorithm wrote: its state means
      -- nothing to this algorithm.
      a, b, c = 0, 0, 0
    end
  end
  local na, nb, nc, allowed, reason, limit, remaining, reset_after, retry_after, wait =
    DECIDE[kind](a, b, c, now, quota, window, burst, delay, max_wait, cost)

  if allowed ~= 1 then
    all = false
  end
  if na ~= a or nb ~= b or nc ~= c then
    local ttl = math.floor(reset_after / 1000) + 1
    if ttl < horizon then
      ttl = horizon
    end
    if prev then
      prev[1], prev[2], prev[3], prev[5] = na, nb, nc, kind
      if ttl > prev[4] then
        prev[4] = ttl
      end
    else
      pending[key] = {na, nb, nc, ttl, kind}
      order[#order + 1] = key
    end
  end

  local n = #reply
  reply[n + 1], reply[n + 2], reply[n + 3] = allowed, reason, limit
  reply[n + 4], reply[n + 5], reply[n + 6] = remaining, reset_after, retry_after
  reply[n + 7] = wait
  if with_state then
    reply[n + 8], reply[n + 9], reply[n + 10] = a, b, c
    reply[n + 11], reply[n + 12], reply[n + 13] = na, nb, nc
  end
end

if not all then
  reply[1] = 0
  return reply
end
if dry_run then
  return reply
end

for _, key in ipairs(order) do
  local w = pending[key]
  redis.call('HSET', key, 'a', string.format('%.0f', w[1]),
    'b', string.format('%.0f', w[2]), 'c', string.format('%.0f', w[3]), 'k', w[5])
  redis.call('PEXPIRE', key, w[4])
end
return reply
