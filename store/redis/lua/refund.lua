-- refund.lua gives back the charge of a request that one Redis Cluster slot
-- admitted while another slot denied it. The undo functions of undo.lua
-- replace the UNDO marker line.
--
-- KEYS[i]   state of check i, charged by apply.lua for this request.
-- ARGV[1]   now in Unix microseconds, or "" to read the Redis clock (TIME).
-- ARGV[2]   cost of the request.
-- ARGV[3 + 10(i-1) ...] for check i: kind, quota, window, horizon in
--           milliseconds, the state before the charge (a0, b0, c0) and the
--           state the charge wrote (a1, b1, c1).
--
-- Reply: the number of keys refunded.

local UNDO = {}

--{{UNDO}}

local function encode(a, b, c, kind)
  return cmsgpack.pack(a, b, c, kind)
end

local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[1])
end
local cost = tonumber(ARGV[2])
local refunded = 0
-- Newest charge first, so that a key charged twice is restored step by step.
for i = #KEYS, 1, -1 do
  local p = 3 + 10 * (i - 1)
  local kind = tonumber(ARGV[p])
  local quota, window, horizon = tonumber(ARGV[p + 1]), tonumber(ARGV[p + 2]), tonumber(ARGV[p + 3])
  local a0, b0, c0 = tonumber(ARGV[p + 4]), tonumber(ARGV[p + 5]), tonumber(ARGV[p + 6])
  local a1, b1, c1 = tonumber(ARGV[p + 7]), tonumber(ARGV[p + 8]), tonumber(ARGV[p + 9])

  local v = redis.call('GET', KEYS[i])
  local ok, a, b, c, k = false
  if v then
    ok, a, b, c, k = pcall(cmsgpack.unpack, v)
  end
  if ok and k == kind and type(a) == 'number' and type(b) == 'number' and type(c) == 'number' then
    if a == a1 and b == b1 and c == c1 then
      -- Nothing wrote the key since the charge: put the old state back.
      if a0 == 0 and b0 == 0 and c0 == 0 then
        redis.call('DEL', KEYS[i])
      else
        redis.call('SET', KEYS[i], encode(a0, b0, c0, kind), 'PX', horizon)
      end
      refunded = refunded + 1
    else
      local na, nb, nc = UNDO[kind](a, b, c, a0, b0, c0, a1, b1, c1, now, quota, window, cost)
      if na ~= a or nb ~= b or nc ~= c then
        redis.call('SET', KEYS[i], encode(na, nb, nc, kind), 'KEEPTTL')
        refunded = refunded + 1
      end
    end
  end
end
return refunded
