-- Move ready entries into slots, applying every limit in one atomic step.
-- Keys (from prefix ARGV[1]): {p}env, {p}queues, {p}paused, {p}conf:<q>, {p}subs:<q>,
--   {p}sq:<sq>, {p}entry, {p}due, {p}held, {p}leases, {p}hs:<sq>, {p}hq:<q>,
--   {p}rate:<q>, {p}turn
-- ARGV: prefix, now, max_count, lease_seconds, queue ('' = any queue), scan limit
-- Returns a flat list: run_id, sub-queue id, lease expiry, ... for each claim.
local p = ARGV[1]
local now = tonumber(ARGV[2])
local max_count = tonumber(ARGV[3])
local lease = tonumber(ARGV[4])
local only = ARGV[5]
local scan = tonumber(ARGV[6])
local sep = '\031'

local env_limit = tonumber(redis.call('HGET', p .. 'env', 'limit') or '100')
local burst = tonumber(redis.call('HGET', p .. 'env', 'burst') or '1')
local env_max = math.floor(env_limit * burst)
local env_held = redis.call('HLEN', p .. 'held')
local out = {}
if env_held >= env_max then return out end

local queues
if only ~= '' then
  queues = {only}
else
  queues = redis.call('ZRANGEBYSCORE', p .. 'queues', '-inf', now, 'LIMIT', 0, scan)
end

local claimed = 0
for _, q in ipairs(queues) do
  if claimed >= max_count or env_held >= env_max then break end
  if redis.call('SISMEMBER', p .. 'paused', q) == 0 then
    local conf = redis.call('HMGET', p .. 'conf:' .. q, 'limit', 'total', 'rate_count', 'rate_period')
    local limit = tonumber(conf[1])
    local q_cap = env_limit
    if conf[2] then q_cap = math.min(q_cap, tonumber(conf[2])) end
    local q_held = redis.call('SCARD', p .. 'hq:' .. q)
    local rate_left = nil
    if conf[3] then
      redis.call('ZREMRANGEBYSCORE', p .. 'rate:' .. q, '-inf', now - tonumber(conf[4]))
      rate_left = tonumber(conf[3]) - redis.call('ZCARD', p .. 'rate:' .. q)
    end
    local subs = redis.call('ZRANGE', p .. 'subs:' .. q, 0, scan - 1)
    local progress = true
    -- Round robin: each pass takes at most one run per key, keys least recently served
    -- first; passes repeat while some key could still start a run.
    while progress and claimed < max_count and env_held < env_max and q_held < q_cap
        and (rate_left == nil or rate_left > 0) do
      progress = false
      for _, sq in ipairs(subs) do
        if claimed >= max_count or env_held >= env_max or q_held >= q_cap
            or (rate_left ~= nil and rate_left <= 0) then break end
        local sq_key = p .. 'sq:' .. sq
        local head = redis.call('ZRANGE', sq_key, 0, 0, 'WITHSCORES')
        if #head > 0 and tonumber(head[2]) <= now
            and (limit == nil or redis.call('SCARD', p .. 'hs:' .. sq) < limit) then
          local run_id = head[1]
          local expiry = now + lease
          redis.call('ZREM', sq_key, run_id)
          redis.call('HDEL', p .. 'entry', run_id)
          redis.call('ZREM', p .. 'due', run_id)
          redis.call('HSET', p .. 'held', run_id, sq)
          redis.call('ZADD', p .. 'leases', expiry, run_id)
          redis.call('SADD', p .. 'hs:' .. sq, run_id)
          redis.call('SADD', p .. 'hq:' .. q, run_id)
          if rate_left ~= nil then
            redis.call('ZADD', p .. 'rate:' .. q, now, run_id)
            rate_left = rate_left - 1
          end
          redis.call('ZADD', p .. 'subs:' .. q, redis.call('INCR', p .. 'turn'), sq)
          out[#out + 1] = run_id
          out[#out + 1] = sq
          out[#out + 1] = tostring(expiry)
          claimed = claimed + 1
          env_held = env_held + 1
          q_held = q_held + 1
          progress = true
        end
      end
    end
    -- Tidy the queue's index: drop empty keys, re-score the queue by its oldest head.
    local oldest = nil
    for _, sq in ipairs(redis.call('ZRANGE', p .. 'subs:' .. q, 0, scan - 1)) do
      local head = redis.call('ZRANGE', p .. 'sq:' .. sq, 0, 0, 'WITHSCORES')
      if #head == 0 then
        if redis.call('SCARD', p .. 'hs:' .. sq) == 0 then
          redis.call('ZREM', p .. 'subs:' .. q, sq)
        end
      else
        local s = tonumber(head[2])
        if oldest == nil or s < oldest then oldest = s end
      end
    end
    if oldest == nil then
      redis.call('ZREM', p .. 'queues', q)
    else
      redis.call('ZADD', p .. 'queues', oldest, q)
    end
  end
end
return out
