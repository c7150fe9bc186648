-- Give a run's slot back (idempotent).
-- Keys (from prefix ARGV[1]): {p}held, {p}leases, {p}hs:<sq>, {p}hq:<q>
-- ARGV: prefix, run_id. Returns 1 if the run held a slot.
local p, run_id = ARGV[1], ARGV[2]
local sq = redis.call('HGET', p .. 'held', run_id)
if not sq then return 0 end
local q = string.sub(sq, 1, string.find(sq, '\031', 1, true) - 1)
redis.call('HDEL', p .. 'held', run_id)
redis.call('ZREM', p .. 'leases', run_id)
redis.call('SREM', p .. 'hs:' .. sq, run_id)
redis.call('SREM', p .. 'hq:' .. q, run_id)
return 1
