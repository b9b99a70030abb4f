-- settle: ARGV[8] is the epoch of the open to end. After the recovery time,
-- closes the circuit when the arrival rate since the trip, scaled to one
-- window, is under the threshold, and reopens it otherwise. Does nothing for
-- a forced open, a closed circuit or another epoch.
local epoch = tonumber(ARGV[8])
local changed = begin()
if changed or not r.open or r.forced or r.epoch ~= epoch
    or now < r.trip_time + recovery then
  return finish(estimate(), changed)
end
local elapsed = now - r.trip_time
if elapsed < 1 then elapsed = 1 end
local rate = math.floor((r.arrivals - r.trip_arrivals) * window / elapsed)
if rate < threshold or threshold == 0 then
  close(rate, 'recovered')
else
  trip(estimate(), false, 'reopened')
end
return finish(estimate(), true)
