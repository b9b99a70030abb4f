-- Helpers shared by every algorithm function of calm's algorithm package.
-- LuaSource puts this file once at the top of a composed script, before the
-- functions that use these locals as upvalues. It defines the locals fmod,
-- tdiv, floor_div, floor_mod, ceil_div, clamp and cost_reason, and reads no
-- globals besides math.fmod.

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
