-- undo_placeholder.lua takes a charge back from the state of the
-- placeholder fixed window: (a, b) is (window start, count).
local function undo_placeholder(a, b, c, a0, b0, c0, a1, b1, c1, quota, window, burst, cost)
  if a ~= a1 then
    -- The window of the charge has ended; its count no longer matters.
    return a, b, c
  end
  local charged = b1 - b0
  if a0 ~= a1 then
    charged = b1
  end
  local nb = b - charged
  if nb < 0 then
    nb = 0
  end
  return a, nb, c
end
for kind = 0, 5 do
  UNDO[kind] = undo_placeholder
end
