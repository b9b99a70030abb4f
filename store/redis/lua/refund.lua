-- refund.lua gives back the charge of a request that one Redis Cluster slot
-- admitted while another slot denied it. The undo functions are inserted
-- where the UNDO marker stands; each is registered as UNDO[kind] with this
-- signature:
--
--   UNDO[kind](a, b, c, a0, b0, c0, a1, b1, c1, quota, window, burst, cost)
--     -> a, b, c
--
-- where (a, b, c) is the current state, (a0, b0, c0) the state before the
-- charge and (a1, b1, c1) the state the charge wrote. It returns the current
-- state without the charge, never with more budget than that.
--
-- KEYS[i]   state of check i, charged by apply.lua for this request.
-- ARGV[1]   cost of the request.
-- ARGV[2 + 11(i-1) ...] for check i: kind, quota, window, burst, horizon in
--           milliseconds, a0, b0, c0, a1, b1, c1.
--
-- Reply: the number of keys refunded.

local UNDO = {}

--{{UNDO}}

local function fmt(x)
  return string.format('%.0f', x)
end

local cost = tonumber(ARGV[1])
local refunded = 0
for i = 1, #KEYS do
  local p = 2 + 11 * (i - 1)
  local kind = tonumber(ARGV[p])
  local quota, window, burst = tonumber(ARGV[p + 1]), tonumber(ARGV[p + 2]), tonumber(ARGV[p + 3])
  local horizon = tonumber(ARGV[p + 4])
  local a0, b0, c0 = tonumber(ARGV[p + 5]), tonumber(ARGV[p + 6]), tonumber(ARGV[p + 7])
  local a1, b1, c1 = tonumber(ARGV[p + 8]), tonumber(ARGV[p + 9]), tonumber(ARGV[p + 10])

  local cur = redis.call('HMGET', KEYS[i], 'a', 'b', 'c')
  if cur[1] then
    local a, b, c = tonumber(cur[1]), tonumber(cur[2]) or 0, tonumber(cur[3]) or 0
    if a == a1 and b == b1 and c == c1 then
      -- Nothing wrote the key since the charge: put the old state back.
      if a0 == 0 and b0 == 0 and c0 == 0 then
        redis.call('DEL', KEYS[i])
      else
        redis.call('HSET', KEYS[i], 'a', fmt(a0), 'b', fmt(b0), 'c', fmt(c0))
        redis.call('PEXPIRE', KEYS[i], horizon)
      end
      refunded = refunded + 1
    else
      local na, nb, nc = UNDO[kind](a, b, c, a0, b0, c0, a1, b1, c1, quota, window, burst, cost)
      if na ~= a or nb ~= b or nc ~= c then
        -- HSET keeps the TTL of the key.
        redis.call('HSET', KEYS[i], 'a', fmt(na), 'b', fmt(nb), 'c', fmt(nc))
        refunded = refunded + 1
      end
    end
  end
end
return refunded
