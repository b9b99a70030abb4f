-- sync: ARGV[8] is the number of arrivals to add. Opens the circuit when the
-- sliding window reaches the threshold; exactly one call records the trip.
local add = tonumber(ARGV[8])
local changed = begin()
r.win_cur = r.win_cur + add
r.arrivals = r.arrivals + add
local count = estimate()
if not r.open and threshold > 0 and count >= threshold then
  trip(count, false, 'threshold')
  changed = true
end
return finish(count, changed)
