-- force: ARGV[8] is 1 to open or 0 to close. A forced open stays until a
-- forced close and keeps the trip time of an open already in force; a forced
-- close clears the window count.
begin()
if ARGV[8] == '1' then
  local trip_time = r.trip_time
  trip(estimate(), true, 'manual')
  if trip_time ~= 0 then r.trip_time = trip_time end
else
  close(0, 'manual')
end
return finish(estimate(), true)
