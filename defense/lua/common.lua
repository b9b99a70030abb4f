-- Shared part of the circuit breaker scripts. Each script is this file
-- followed by its own body; defense/record.go is the Go twin of the math.
--
-- KEYS[1]  the state hash, such as development:ratelimit:v1:circuit:state
-- ARGV[1]  now in Unix ms, or "" to use the Redis server clock (TIME)
-- ARGV[2]  threshold: arrivals per window that open the circuit; 0 never opens
-- ARGV[3]  window in ms
-- ARGV[4]  recovery time in ms
-- ARGV[5]  TTL in ms of the hash while closed or opened automatically
-- ARGV[6]  TTL in ms of the hash while forced open
-- ARGV[7]  channel that receives an event on every change of is_open
-- ARGV[8]  script argument (sync: arrivals to add; settle: epoch; force: 1 or 0)
-- ARGV[9]  sync only: epoch the caller saw while counting the arrivals, or -1
--
-- Returns {is_open, forced, epoch, gen, trip_time, count, trip_count, now,
-- changed, cause}: integers, except cause, a string.
--
-- An operator may set is_open to 1 or 0 with HSET. Every script compares it
-- with the recorded state field first and turns a difference into a manual
-- open or close, so the change is published and logged like any other.

local key = KEYS[1]
local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local threshold = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local recovery = tonumber(ARGV[4])
local ttl_auto = tonumber(ARGV[5])
local ttl_forced = tonumber(ARGV[6])
local channel = ARGV[7]

local names = {'is_open', 'state', 'forced', 'epoch', 'gen', 'trip_time',
  'last_trip_time', 'win_start', 'win_cur', 'win_prev', 'arrivals',
  'trip_arrivals', 'trip_count', 'cause', 'changed_at'}
local raw = redis.call('HMGET', key, unpack(names))
local r = {}
for i, name in ipairs(names) do
  r[name] = raw[i]
end
local function num(v)
  return tonumber(v) or 0
end
for _, name in ipairs({'epoch', 'gen', 'trip_time', 'last_trip_time',
    'win_start', 'win_cur', 'win_prev', 'arrivals', 'trip_arrivals',
    'trip_count', 'changed_at'}) do
  r[name] = num(r[name])
end
r.open = r.state == 'open'
r.forced = r.forced == '1' or r.forced == 'true'
r.cause = r.cause or ''

local function roll()
  if r.win_start == 0 or now >= r.win_start + 2 * window then
    r.win_start, r.win_cur, r.win_prev = now, 0, 0
  elseif now >= r.win_start + window then
    r.win_start, r.win_prev, r.win_cur = r.win_start + window, r.win_cur, 0
  end
end

local function estimate()
  local elapsed = now - r.win_start
  if elapsed < 0 then elapsed = 0 end
  if elapsed > window then elapsed = window end
  return r.win_cur + math.floor(r.win_prev * (window - elapsed) / window)
end

local function trip(count, forced, cause)
  r.open, r.forced = true, forced
  r.trip_time, r.trip_arrivals, r.trip_count = now, r.arrivals, count
  r.cause, r.changed_at = cause, now
  r.epoch = r.epoch + 1
end

local function close(prev, cause)
  r.open, r.forced = false, false
  if r.trip_time ~= 0 then r.last_trip_time = r.trip_time end
  r.trip_time = 0
  r.win_start, r.win_cur, r.win_prev = now, 0, prev
  r.cause, r.changed_at = cause, now
  r.epoch = r.epoch + 1
end

-- begin creates the record when it is new, applies an operator's HSET of
-- is_open and rolls the window. It returns true when is_open changed the
-- state.
local function begin()
  if r.gen == 0 then r.gen = now end
  roll()
  local wish = r.is_open
  if wish == '1' or wish == 'true' or wish == 'yes' or wish == 'on' then
    wish = true
  elseif wish == '0' or wish == 'false' or wish == 'no' or wish == 'off' then
    wish = false
  else
    wish = r.open -- missing or unreadable: keep the recorded state
  end
  if wish and not r.open then
    trip(estimate(), true, 'manual')
    return true
  elseif r.open and not wish then
    close(0, 'manual')
    return true
  end
  return false
end

local function fmt(n)
  return string.format('%d', n)
end

local function flag(b)
  if b then return 1 end
  return 0
end

-- finish writes the record back, sets its TTL, publishes an event when the
-- state changed and returns the snapshot.
local function finish(count, changed)
  local state = 'closed'
  if r.open then state = 'open' end
  redis.call('HSET', key,
    'is_open', fmt(flag(r.open)), 'state', state, 'forced', fmt(flag(r.forced)),
    'epoch', fmt(r.epoch), 'gen', fmt(r.gen), 'trip_time', fmt(r.trip_time),
    'last_trip_time', fmt(r.last_trip_time), 'win_start', fmt(r.win_start),
    'win_cur', fmt(r.win_cur), 'win_prev', fmt(r.win_prev),
    'arrivals', fmt(r.arrivals), 'trip_arrivals', fmt(r.trip_arrivals),
    'trip_count', fmt(r.trip_count), 'failure_count', fmt(count),
    'cause', r.cause, 'changed_at', fmt(r.changed_at))
  if r.open and r.forced then
    redis.call('PEXPIRE', key, ttl_forced)
  else
    redis.call('PEXPIRE', key, ttl_auto)
  end
  local out = {flag(r.open), flag(r.forced), r.epoch, r.gen, r.trip_time,
    count, r.trip_count, now, flag(changed), r.cause}
  if changed then
    redis.call('PUBLISH', channel, table.concat({
      fmt(out[1]), fmt(out[2]), fmt(out[3]), fmt(out[4]), fmt(out[5]),
      fmt(out[6]), fmt(out[7]), fmt(out[8]), fmt(out[9]), r.cause}, ' '))
  end
  return out
end

