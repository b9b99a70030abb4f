-- Theoretical arrival time (TAT) helpers shared by calm_gcra (and so the
-- buckets) and calm_leaky_queue: the Lua twin of the arrival type in Go.
-- LuaSource puts this file once, after common.lua, whose locals it uses.
--
-- A TAT is ta + tb/q µs with 0 <= tb < q.

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

-- arrival_reset_after returns ceil(TAT - now) for TAT >= now.
local function arrival_reset_after(ta, tb, now)
  if tb > 0 then
    return ta - now + 1
  end
  return ta - now
end

-- remaining_units returns how many requests of cost 1 conform after this one.
local function remaining_units(ta, tb, now, q, w, cap)
  local room = cap * w - tb
  local ahead = ta - now
  if room < 0 or ahead > tdiv(room, q) then
    return 0
  end
  return tdiv(room - ahead * q, w)
end
