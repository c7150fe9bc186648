-- Extend the lease of a held slot.
-- Keys: {p}held, {p}leases
-- ARGV: prefix, run_id, new expiry. Returns 1 if the run holds a slot.
if redis.call('HEXISTS', p .. 'held', ARGV[2]) == 0 then return 0 end
redis.call('ZADD', p .. 'leases', ARGV[3], ARGV[2])
return 1
