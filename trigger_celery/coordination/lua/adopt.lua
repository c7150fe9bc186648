-- Hold a slot for a run without checking limits (repair after a flush). Idempotent.
-- Keys: {p}held, {p}hatt, {p}leases, {p}hs:<sq>, {p}hq:<q>, {p}known, and those of refresh().
-- ARGV: prefix, run_id, sub-queue id, lease expiry, attempt ('0' = not known)
local run_id, sq, expiry, attempt = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local base = env_limits()
local old = unhold(run_id, 'keep')  -- a pending start stays pending: its start dates it
if old and old ~= sq then refresh(old, base) end
redis.call('HSET', p .. 'held', run_id, sq)
redis.call('HSET', p .. 'hatt', run_id, attempt)
redis.call('ZADD', p .. 'leases', expiry, run_id)
redis.call('SADD', p .. 'hs:' .. sq, run_id)
redis.call('SADD', p .. 'hq:' .. queue_of(sq), run_id)
redis.call('SADD', p .. 'known', queue_of(sq))
refresh(sq, base)
return 1
