-- Move up to max_count ready entries into slots, applying every limit in one step.
-- Keys: {p}env, {p}queues, {p}ratewait, {p}paused, {p}conf:<q>, {p}rate:<q>,
--   {p}ring:<q>, {p}heads:<q>, {p}subs:<q>, {p}sq:<sq>, {p}entry, {p}due, {p}held,
--   {p}leases, {p}hs:<sq>, {p}hq:<q>, {p}turn, {p}rpend
-- ARGV: prefix, now ('' = this server's TIME), max_count, lease expiry (absolute, or
--   '+<lease seconds>' from TIME), queue ('' = any),
--   budget (most queue/key visits this call may make: bounds the work)
-- Returns a flat list: run_id, sub-queue id, attempt, ... for each claim, in claim order; or
--   {'!unconfigured'} when {p}env is missing (the store was flushed or restarted): no
--   limit is known then, so nothing may start until the engine has restored them.
--
-- Order: each claim takes the queue whose oldest eligible head is oldest ({p}queues),
-- and inside it the next key of the round-robin ring whose head is ready; the key
-- served goes to the back. Queues and keys that cannot start anything are parked (see
-- keys.py), so a call only looks at candidates that can actually be served.
local now = ARGV[2] == '' and server_time() or tonumber(ARGV[2])
local max_count = tonumber(ARGV[3])
local expiry = lease_expiry(ARGV[4])
local only = ARGV[5]
local budget = tonumber(ARGV[6])
-- Ring members looked at per pick before falling back to the oldest ready head.
local RING_SCAN = 8

if redis.call('EXISTS', p .. 'env') == 0 then return {'!unconfigured'} end
local base, env_max = env_limits()
local env_held = redis.call('HLEN', p .. 'held')
local out = {}
if env_held >= env_max then return out end

-- Queues whose rate window has passed may start again: un-park them.
for _, q in ipairs(redis.call('ZRANGEBYSCORE', p .. 'ratewait', '-inf', now, 'LIMIT', 0, budget)) do
  redis.call('ZREM', p .. 'ratewait', q)
  touch_queue(q, base)
end

local claimed = 0
while claimed < max_count and env_held < env_max and budget > 0 do
  local q
  if only ~= '' then
    local s = redis.call('ZSCORE', p .. 'queues', only)
    if not s or tonumber(s) > now then break end
    q = only
  else
    local top = redis.call('ZRANGEBYSCORE', p .. 'queues', '-inf', now, 'LIMIT', 0, 1)
    if #top == 0 then break end
    q = top[1]
  end
  budget = budget - 1

  local limit, total, rate_count, rate_period = queue_conf(q)
  local blocked = redis.call('SISMEMBER', p .. 'paused', q) == 1
    or redis.call('SCARD', p .. 'hq:' .. q) >= queue_cap(total, base)
  if not blocked and rate_count ~= nil and rate_period ~= nil then
    local rate = p .. 'rate:' .. q
    -- A start at t counts while t > now - period.
    redis.call('ZREMRANGEBYSCORE', rate, '-inf', now - rate_period)
    if redis.call('ZCARD', rate) >= rate_count then
      local oldest = redis.call('ZRANGE', rate, 0, 0, 'WITHSCORES')
      redis.call('ZADD', p .. 'ratewait', tonumber(oldest[2]) + rate_period, q)
      blocked = true
    end
  end

  if blocked then
    -- Normally parked already; this also covers a cap reached through adopt().
    redis.call('ZREM', p .. 'queues', q)
  else
    local ring, heads = p .. 'ring:' .. q, p .. 'heads:' .. q
    local chosen = nil
    for _, sq in ipairs(redis.call('ZRANGE', ring, 0, RING_SCAN - 1)) do
      local h = redis.call('ZSCORE', heads, sq)
      if h and tonumber(h) <= now
          and (limit == nil or redis.call('SCARD', p .. 'hs:' .. sq) < limit) then
        chosen = sq
        break
      end
      -- Nothing it can start now: to the back, so the ring keeps turning.
      redis.call('ZADD', ring, next_turn(), sq)
      budget = budget - 1
    end
    if chosen == nil then
      -- The ring's front held only keys that are not ready: take the oldest ready head.
      local r = redis.call('ZRANGEBYSCORE', heads, '-inf', now, 'LIMIT', 0, 1)
      chosen = r[1]
      if chosen ~= nil and limit ~= nil
          and redis.call('SCARD', p .. 'hs:' .. chosen) >= limit then
        touch_sq(q, chosen, limit)
        chosen = nil
      end
    end
    local run_id = chosen and redis.call('ZRANGE', p .. 'sq:' .. chosen, 0, 0)[1]
    if chosen ~= nil and not run_id then
      -- Indexed with no entry: Redis evicted the sub-queue and kept its ring and heads
      -- (maxmemory, allkeys-lru). The index goes; the reconciler queues its runs again.
      touch_sq(q, chosen, limit)
      touch_queue(q, base)
    elseif chosen == nil then
      touch_queue(q, base)
    else
      local attempt = redis.call('HGET', p .. 'eatt', run_id) or '0'
      unqueue(run_id)
      -- A run queued again while holding keeps one slot; an undated place of the
      -- claim before is dated (it may have started), and this claim holds a new one.
      local prev = unhold(run_id, 'date')
      if prev and prev ~= chosen then refresh(prev, base) end
      redis.call('HSET', p .. 'held', run_id, chosen)
      redis.call('HSET', p .. 'hatt', run_id, attempt)  -- the slot is this attempt's
      redis.call('ZADD', p .. 'leases', expiry, run_id)
      redis.call('SADD', p .. 'hs:' .. chosen, run_id)
      redis.call('SADD', p .. 'hq:' .. q, run_id)
      if rate_count ~= nil and rate_period ~= nil then hold_rate_place(q, run_id) end
      redis.call('ZADD', ring, next_turn(), chosen)  -- served: to the back
      touch_sq(q, chosen, limit)
      touch_queue(q, base)
      out[#out + 1] = run_id
      out[#out + 1] = chosen
      out[#out + 1] = attempt
      claimed = claimed + 1
      env_held = redis.call('HLEN', p .. 'held')
    end
  end
end
return out
