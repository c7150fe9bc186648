-- Extend the lease of a held slot.
-- Keys (from prefix ARGV[1]): {p}held, {p}leases
-- ARGV: prefix, run_id, new expiry. Returns 1 if the run holds a slot.
local p, run_id, expiry = ARGV[1], ARGV[2], tonumber(ARGV[3])
if redis.call('HEXISTS', p .. 'held', run_id) == 0 then return 0 end
redis.call('ZADD', p .. 'leases', expiry, run_id)
return 1
