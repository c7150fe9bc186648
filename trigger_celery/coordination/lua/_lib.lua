-- Shared helpers, prepended to every other script when it is loaded (not run alone).
-- Keys (built from the prefix ARGV[1]; see keys.py): {p}env, {p}conf:<q>, {p}paused,
--   {p}sq:<sq>, {p}subs:<q>, {p}ring:<q>, {p}heads:<q>, {p}queues, {p}ratewait,
--   {p}entry, {p}due, {p}held, {p}leases, {p}hs:<sq>, {p}hq:<q>, {p}turn, {p}rate:<q>,
--   {p}rpend
-- ARGV[1] is always the prefix; the including script reads the rest.
local p = ARGV[1]
local SEP = '\031'

-- This Redis server's clock, in seconds: the one clock every lease is measured by.
local function server_time()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

-- A lease expiry argument: '+<seconds>' counts from server_time(); anything else is an
-- absolute instant (tests drive the store with their own).
local function lease_expiry(arg)
  if string.sub(arg, 1, 1) == '+' then
    return server_time() + tonumber(string.sub(arg, 2))
  end
  return tonumber(arg)
end

local function queue_of(sq)
  return string.sub(sq, 1, string.find(sq, SEP, 1, true) - 1)
end

-- The environment's base limit and its burst cap floor(base * burst).
local function env_limits()
  local v = redis.call('HMGET', p .. 'env', 'limit', 'burst')
  local base = tonumber(v[1]) or 100
  local burst = tonumber(v[2]) or 2  -- BURST_FACTOR's default
  -- The small epsilon keeps e.g. 2 * 1.5 from flooring to 2 on a rounding error.
  return base, math.floor(base * burst + 1e-9)
end

-- limit (per sub-queue), total, rate_count, rate_period of a queue; nil = unbounded.
local function queue_conf(q)
  local c = redis.call('HMGET', p .. 'conf:' .. q, 'limit', 'total', 'rate_count', 'rate_period')
  return tonumber(c[1]), tonumber(c[2]), tonumber(c[3]), tonumber(c[4])
end

-- A queue (all its keys) never holds more than its total nor the env base limit.
local function queue_cap(total, base)
  if total ~= nil and total < base then return total end
  return base
end

local function next_turn()
  return redis.call('INCR', p .. 'turn')
end

-- Make sub-queue sq's place in q's ring/heads match its entries and held slots: in the
-- ring (keeping its turn) when it has entries and room, parked otherwise; forgotten
-- when it has neither entries nor slots.
local function touch_sq(q, sq, limit)
  local ring, heads = p .. 'ring:' .. q, p .. 'heads:' .. q
  local head = redis.call('ZRANGE', p .. 'sq:' .. sq, 0, 0, 'WITHSCORES')
  if #head == 0 then
    redis.call('ZREM', ring, sq)
    redis.call('ZREM', heads, sq)
    if redis.call('SCARD', p .. 'hs:' .. sq) == 0 then
      redis.call('SREM', p .. 'subs:' .. q, sq)
    else
      redis.call('SADD', p .. 'subs:' .. q, sq)
    end
    return
  end
  redis.call('SADD', p .. 'subs:' .. q, sq)
  if limit ~= nil and redis.call('SCARD', p .. 'hs:' .. sq) >= limit then
    redis.call('ZREM', ring, sq)
    redis.call('ZREM', heads, sq)
    return
  end
  redis.call('ZADD', heads, head[2], sq)
  if not redis.call('ZSCORE', ring, sq) then
    -- A key (re)joining the ring queues up behind every key already in it.
    redis.call('ZADD', ring, next_turn(), sq)
  end
end

-- Make queue q's place in {p}queues match its state: scored by its oldest eligible
-- head when it could start a run, parked otherwise.
local function touch_queue(q, base)
  local _, total = queue_conf(q)
  if redis.call('SISMEMBER', p .. 'paused', q) == 1
      or redis.call('SCARD', p .. 'hq:' .. q) >= queue_cap(total, base)
      or redis.call('ZSCORE', p .. 'ratewait', q) then
    redis.call('ZREM', p .. 'queues', q)
    return
  end
  local h = redis.call('ZRANGE', p .. 'heads:' .. q, 0, 0, 'WITHSCORES')
  if #h == 0 then
    redis.call('ZREM', p .. 'queues', q)
  else
    redis.call('ZADD', p .. 'queues', h[2], q)
  end
end

-- A claim's place in its queue's rate window ({p}rate:<q>) is scored PENDING until the
-- run starts (started.lua scores it with that instant); {p}rpend maps the run to
-- "<q> SEP <turn>", the member being "<run_id> SEP <turn>". A pending start never leaves
-- the window by age, so starts, not dispatches, are what the rate limits.
local PENDING = 1e15

local function hold_rate_place(q, run_id)
  local turn = next_turn()
  redis.call('ZADD', p .. 'rate:' .. q, PENDING, run_id .. SEP .. turn)
  redis.call('HSET', p .. 'rpend', run_id, q .. SEP .. turn)
end

-- q's rate window changed: a parked q waits for its oldest start to age out, or no longer.
local function rewake(q)
  if not redis.call('ZSCORE', p .. 'ratewait', q) then return end
  local _, _, count, period = queue_conf(q)
  local rate = p .. 'rate:' .. q
  if count ~= nil and period ~= nil and redis.call('ZCARD', rate) >= count then
    local oldest = redis.call('ZRANGE', rate, 0, 0, 'WITHSCORES')
    redis.call('ZADD', p .. 'ratewait', tonumber(oldest[2]) + period, q)
    return
  end
  redis.call('ZREM', p .. 'ratewait', q)
  touch_queue(q, (env_limits()))
end

-- run_id's pending place in a rate window, taken out ({p}rpend cleared): returns its
-- queue and member, or nil.
local function take_rate_place(run_id)
  local pend = redis.call('HGET', p .. 'rpend', run_id)
  if not pend then return nil end
  redis.call('HDEL', p .. 'rpend', run_id)
  local q = queue_of(pend)
  return q, run_id .. SEP .. string.sub(pend, #q + 2)
end

-- Drop run_id from the slot sets it holds (if any); returns its sub-queue or nil.
-- `rate` says what becomes of a place in a rate window that no start has dated:
--   'give' - the run never started: the place goes back;
--   'date' - it may have started (its worker could not say): dated now, so the window
--            counts it from a moment no earlier than its start (never over the limit);
--   'keep' - left pending as it is (a slot adopted again: its start dates it).
local function unhold(run_id, rate)
  if rate ~= 'keep' then
    local rq, member = take_rate_place(run_id)
    if rq then
      if rate == 'give' then
        redis.call('ZREM', p .. 'rate:' .. rq, member)
      else
        redis.call('ZADD', p .. 'rate:' .. rq, 'XX', server_time(), member)
      end
      rewake(rq)
    end
  end
  local sq = redis.call('HGET', p .. 'held', run_id)
  if not sq then return nil end
  redis.call('HDEL', p .. 'held', run_id)
  redis.call('HDEL', p .. 'hatt', run_id)
  redis.call('ZREM', p .. 'leases', run_id)
  redis.call('SREM', p .. 'hs:' .. sq, run_id)
  redis.call('SREM', p .. 'hq:' .. queue_of(sq), run_id)
  return sq
end

-- Take run_id out of its sub-queue (if queued), without touching indexes; returns sq.
local function unqueue(run_id)
  local sq = redis.call('HGET', p .. 'entry', run_id)
  if not sq then return nil end
  redis.call('ZREM', p .. 'sq:' .. sq, run_id)
  redis.call('HDEL', p .. 'entry', run_id)
  redis.call('HDEL', p .. 'eatt', run_id)
  redis.call('ZREM', p .. 'due', run_id)
  return sq
end

-- True when the slot run_id holds belongs to `attempt` ('0': any attempt will do).
local function holds_for(run_id, attempt)
  if attempt == '0' then return true end
  local held = redis.call('HGET', p .. 'hatt', run_id)
  return held == false or held == '0' or held == attempt
end

-- Re-index a sub-queue and its queue after a change.
local function refresh(sq, base)
  local q = queue_of(sq)
  local limit = queue_conf(q)
  touch_sq(q, sq, limit)
  touch_queue(q, base)
end
