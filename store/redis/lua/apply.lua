-- apply.lua decides a batch of requests, one after another. Each request
-- has one or more checks and is charged on all of them or on none. The
-- algorithm functions replace the ALGORITHMS marker line. Each is
-- registered as DECIDE[kind] with this signature:
--
--   DECIDE[kind](a, b, c, now, quota, window, burst, delay, max_wait, cost)
--     -> a, b, c, allowed, reason, limit, remaining, reset_after, retry_after, wait
--
-- where (a, b, c) is the state, allowed is 0 or 1 and every time is in
-- microseconds.
--
-- KEYS      the key of every check of every request, in order. A key holds
--           the MessagePack encoding of a b c k, four integers: the State
--           fields and the Kind that wrote them. A state written by another
--           Kind, or a value that is not such an encoding, reads as a fresh
--           one.
-- ARGV[1]   now in Unix microseconds, or "" to read the Redis clock (TIME).
-- ARGV[2]   mode: "0" decides and charges; "1" does the same and appends
--           the state before and after each check to the reply, which a
--           cross-slot refund needs; "2" decides without charging.
-- ARGV[3]   the number L of distinct limits, followed by 7 values for each:
--           kind, quota, window, burst, delay, max_wait and the state
--           horizon in milliseconds (after which a state is as good as
--           absent).
-- Then      the number of requests, followed for each request by its cost,
--           its number of checks n and n limit numbers (1 to L), one per
--           check.
--
-- Reply: {now, then for each request: allowed (0 or 1), then for each
-- check: reason, remaining, reset_after, retry_after, wait, and in mode "1"
-- also a, b, c before and a, b, c after}. A check allowed when its reason
-- is 0; its limit is the quota, or the capacity for the bucket algorithms,
-- which the caller knows.
--
-- A request sees the charges of the requests before it in the batch. Every
-- key is written once, at the end, with a TTL of its horizon or its
-- reset_after, whichever is longer. Numbers stay below 2^53, so the doubles
-- of Lua hold them exactly, and cmsgpack writes such whole numbers as
-- MessagePack integers.

local DECIDE = {}

--{{ALGORITHMS}}

local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[1])
end
local mode = ARGV[2]
local with_state = mode == '1'
local dry_run = mode == '2'

-- The committed state of each key is the state it will be written with,
-- from the requests of the batch charged so far. ca, cb, cc and ck map a
-- key to the fields a, b, c and the kind, and cttl to the TTL in
-- milliseconds. order lists the keys in first-write order. Flat tables
-- keyed by key, rather than a table per key, spare an allocation per check.
local ca, cb, cc, ck, cttl = {}, {}, {}, {}, {}
local order, norder = {}, 0

-- stored maps every key to its value as Redis had it before the call,
-- read with one MGET.
local stored = {}
do
  -- unpack puts its results on the Lua stack, which holds a few thousand
  -- values, so the keys go in slices.
  local first = 1
  while first <= #KEYS do
    local last = math.min(first + 999, #KEYS)
    local values = redis.call('MGET', unpack(KEYS, first, last))
    for i = first, last do
      stored[KEYS[i]] = values[i - first + 1]
    end
    first = last + 1
  end
end

-- load returns the state of key for kind: from an earlier request of the
-- batch, or as Redis had it.
local function load(key, kind)
  local k = ck[key]
  if k then
    if k == kind then
      return ca[key], cb[key], cc[key]
    end
    return 0, 0, 0
  end
  local v = stored[key]
  if v then
    local ok, a, b, c, k = pcall(cmsgpack.unpack, v)
    if ok and k == kind and type(a) == 'number' and type(b) == 'number' and type(c) == 'number' then
      return a, b, c
    end
  end
  return 0, 0, 0
end

-- The distinct limits of the call, each {kind, quota, window, burst, delay,
-- max_wait, horizon}.
local limits = {}
local p = 4
for i = 1, tonumber(ARGV[3]) do
  limits[i] = {tonumber(ARGV[p]), tonumber(ARGV[p + 1]), tonumber(ARGV[p + 2]), tonumber(ARGV[p + 3]),
    tonumber(ARGV[p + 4]), tonumber(ARGV[p + 5]), tonumber(ARGV[p + 6])}
  p = p + 7
end

-- The new states of the request being decided live in slots 1 to np, so
-- that a key listed twice is charged twice, in order, as the memory store
-- does. pkey, pa, pb, pc, pk and pttl are the key, state, kind and TTL of
-- each slot. pslot maps a key to its slot in requests of more than one
-- check. Each request overwrites the slots and empties pslot.
local pslot = {}
local pkey, pa, pb, pc, pk, pttl = {}, {}, {}, {}, {}, {}
local np = 0

-- The key, limit and reply index of each check of the request being
-- decided, so that a denied request can report the budgets it did not
-- charge.
local xkey, xlimit, xr = {}, {}, {}

local reply = {now}
local r = 1 -- the length of reply

-- commit merges the new states of a request into the committed ones.
local function commit()
  for i = 1, np do
    local key, ttl = pkey[i], pttl[i]
    if ck[key] then
      if ttl < cttl[key] then
        ttl = cttl[key]
      end
    else
      norder = norder + 1
      order[norder] = key
    end
    ca[key], cb[key], cc[key], ck[key], cttl[key] = pa[i], pb[i], pc[i], pk[i], ttl
  end
end

-- report_uncharged replaces the decision of each check of a denied request
-- of n checks that allowed with what a request of cost 0 would get: its budget
-- from the state before the request, which is not charged.
local function report_uncharged(n)
  for i = 1, n do
    local j = xr[i]
    if reply[j + 1] == 0 then
      local l = xlimit[i]
      local a, b, c = load(xkey[i], l[1])
      local _, _, _, _, reason, _, remaining, reset_after, retry_after, wait =
        DECIDE[l[1]](a, b, c, now, l[2], l[3], l[4], l[5], l[6], 0)
      reply[j + 1], reply[j + 2], reply[j + 3] = reason, remaining, reset_after
      reply[j + 4], reply[j + 5] = retry_after, wait
    end
  end
end

-- decide_request decides the checks of one request whose arguments start
-- at ARGV[p] and keys at KEYS[k]. It appends to reply and returns the next
-- p and k.
local function decide_request(p, k)
  local cost, n = tonumber(ARGV[p]), tonumber(ARGV[p + 1])
  p = p + 2
  r = r + 1
  local head = r
  reply[head] = 1
  local all = true
  np = 0

  for i = 1, n do
    local l = limits[tonumber(ARGV[p])]
    local kind, horizon = l[1], l[7]
    local key = KEYS[k]
    p, k = p + 1, k + 1

    local a, b, c
    local s = n > 1 and pslot[key]
    if s and pk[s] == kind then
      a, b, c = pa[s], pb[s], pc[s]
    elseif s then
      a, b, c = 0, 0, 0
    else
      a, b, c = load(key, kind)
    end
    local na, nb, nc, allowed, reason, _, remaining, reset_after, retry_after, wait =
      DECIDE[kind](a, b, c, now, l[2], l[3], l[4], l[5], l[6], cost)

    if allowed ~= 1 then
      all = false
    end
    if na ~= a or nb ~= b or nc ~= c then
      local ttl = math.floor(reset_after / 1000) + 1
      if ttl < horizon then
        ttl = horizon
      end
      if s then
        if ttl < pttl[s] then
          ttl = pttl[s]
        end
      else
        np = np + 1
        s = np
        pkey[s] = key
        if n > 1 then
          pslot[key] = s
        end
      end
      pa[s], pb[s], pc[s], pk[s], pttl[s] = na, nb, nc, kind, ttl
    end

    xkey[i], xlimit[i], xr[i] = key, l, r
    reply[r + 1], reply[r + 2], reply[r + 3] = reason, remaining, reset_after
    reply[r + 4], reply[r + 5] = retry_after, wait
    r = r + 5
    if with_state then
      reply[r + 1], reply[r + 2], reply[r + 3] = a, b, c
      reply[r + 4], reply[r + 5], reply[r + 6] = na, nb, nc
      r = r + 6
    end
  end

  if n > 1 then
    for i = 1, np do
      pslot[pkey[i]] = nil
    end
  end
  if not all then
    reply[head] = 0
    report_uncharged(n)
  elseif not dry_run then
    commit()
  end
  return p, k
end

local k = 1
local requests = tonumber(ARGV[p])
p = p + 1
for _ = 1, requests do
  p, k = decide_request(p, k)
end

for i = 1, norder do
  local key = order[i]
  redis.call('SET', key, cmsgpack.pack(ca[key], cb[key], cc[key], ck[key]), 'PX', cttl[key])
end
return reply
