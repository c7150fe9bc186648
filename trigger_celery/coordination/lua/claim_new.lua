-- Give a run that is not queued yet (being triggered) a slot at once, but only when it
-- would be the very next run its queue starts: no ready entry of the queue is waiting,
-- and every limit has room. Otherwise nothing changes and the caller queues the run.
-- Keys: {p}env, {p}held, {p}hatt, {p}entry, {p}leases, {p}paused, {p}known, {p}conf:<q>,
--   {p}rate:<q>, {p}rpend, {p}heads:<q>, {p}hs:<sq>, {p}hq:<q>, and through refresh() those of
--   touch_sq/touch_queue
-- ARGV: prefix, run_id, queue, concurrency key ('' = none), attempt, lease expiry
--   (absolute, or '+<lease seconds>' from TIME), now ('' = this server's TIME)
-- Returns {run_id, sub-queue id, attempt} when the slot was taken, {} when not, or
--   {'!unconfigured'} when {p}env is missing (see claim.lua).
if redis.call('EXISTS', p .. 'env') == 0 then return {'!unconfigured'} end
local run_id, q, attempt = ARGV[2], ARGV[3], ARGV[5]
local sq = q .. SEP .. ARGV[4]
local expiry = lease_expiry(ARGV[6])
local now = ARGV[7] == '' and server_time() or tonumber(ARGV[7])

-- Known to the store already (queued or holding): it follows the ordinary path.
if redis.call('HEXISTS', p .. 'held', run_id) == 1
    or redis.call('HEXISTS', p .. 'entry', run_id) == 1 then
  return {}
end
local base, env_max = env_limits()
if redis.call('HLEN', p .. 'held') >= env_max then return {} end
if redis.call('SISMEMBER', p .. 'paused', q) == 1 then return {} end
local limit, total, rate_count, rate_period = queue_conf(q)
if redis.call('SCARD', p .. 'hq:' .. q) >= queue_cap(total, base) then return {} end
if limit ~= nil and redis.call('SCARD', p .. 'hs:' .. sq) >= limit then return {} end
-- A ready entry of any of the queue's keys is waiting: it goes first (first come,
-- first served; the keys' round-robin decides between them).
if #redis.call('ZRANGEBYSCORE', p .. 'heads:' .. q, '-inf', now, 'LIMIT', 0, 1) > 0 then
  return {}
end
if rate_count ~= nil and rate_period ~= nil then
  local rate = p .. 'rate:' .. q
  redis.call('ZREMRANGEBYSCORE', rate, '-inf', now - rate_period)
  if redis.call('ZCARD', rate) >= rate_count then return {} end
  hold_rate_place(q, run_id)
end

redis.call('HSET', p .. 'held', run_id, sq)
redis.call('HSET', p .. 'hatt', run_id, attempt)
redis.call('ZADD', p .. 'leases', expiry, run_id)
redis.call('SADD', p .. 'hs:' .. sq, run_id)
redis.call('SADD', p .. 'hq:' .. q, run_id)
redis.call('SADD', p .. 'known', q)
refresh(sq, base)
return {run_id, sq, attempt}
