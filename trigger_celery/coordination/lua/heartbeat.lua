-- Extend the lease of a held slot.
-- Keys: {p}held, {p}hatt, {p}leases
-- ARGV: prefix, run_id, new expiry (absolute, or '+<seconds>' from TIME), attempt ('0' = any). Returns 1 if the run holds a
--   slot (that belongs to this attempt).
if redis.call('HEXISTS', p .. 'held', ARGV[2]) == 0 then return 0 end
if not holds_for(ARGV[2], ARGV[4]) then return 0 end
redis.call('ZADD', p .. 'leases', lease_expiry(ARGV[3]), ARGV[2])
return 1
