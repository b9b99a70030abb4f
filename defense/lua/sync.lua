-- sync: ARGV[8] is the number of arrivals to add. Opens the circuit when the
-- sliding window reaches the threshold; exactly one call records the trip.
local add = tonumber(ARGV[8])
local seen = tonumber(ARGV[9]) or -1
local changed = begin()
-- Arrivals counted under an older epoch belong to a state that has ended,
-- for example before an operator's close cleared the window: drop them.
if seen >= 0 and seen ~= r.epoch then
  add = 0
end
r.win_cur = r.win_cur + add
r.arrivals = r.arrivals + add
local count = estimate()
if not r.open and threshold > 0 and count >= threshold then
  trip(count, false, 'threshold')
  changed = true
end
return finish(count, changed)
