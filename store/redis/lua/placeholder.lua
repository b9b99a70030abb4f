-- placeholder.lua is the Lua twin of the placeholder fixed window that
-- algorithm.Decide applies to every kind until each algorithm has its own
-- Lua function.
local function placeholder_fixed_window(a, b, c, now, quota, window, burst, delay, max_wait, cost)
  local start = now - now % window
  if start < a then
    start = a
  end
  local used = 0
  if a == start then
    used = b
  end
  local reset_after = start + window - now
  local remaining = quota - used
  if remaining < 0 then
    remaining = 0
  end
  if cost < 0 then
    return a, b, c, 0, 4, quota, remaining, reset_after, 0, 0
  end
  if cost > quota then
    return a, b, c, 0, 2, quota, remaining, reset_after, 0, 0
  end
  if used + cost > quota then
    return a, b, c, 0, 1, quota, remaining, reset_after, reset_after, 0
  end
  return start, used + cost, 0, 1, 0, quota, quota - used - cost, reset_after, 0, 0
end
for kind = 0, 5 do
  DECIDE[kind] = placeholder_fixed_window
end
