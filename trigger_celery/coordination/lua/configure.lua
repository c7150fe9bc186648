-- Replace a queue's limits and re-index its sub-queues under them.
-- Keys: {p}conf:<q>, {p}known, {p}ratewait, {p}subs:<q>, and those of touch_sq() and
--   touch_queue() (_lib.lua).
-- ARGV: prefix, queue, limit, total, rate_count, rate_period ('' = unbounded)
local q = ARGV[2]
local c = p .. 'conf:' .. q
redis.call('DEL', c)
local names = {'limit', 'total', 'rate_count', 'rate_period'}
for i = 1, 4 do
  if ARGV[i + 2] ~= '' then redis.call('HSET', c, names[i], ARGV[i + 2]) end
end
redis.call('SADD', p .. 'known', q)
-- The rate may have changed: let the next claim judge the window again.
redis.call('ZREM', p .. 'ratewait', q)
local limit = queue_conf(q)
for _, sq in ipairs(redis.call('SMEMBERS', p .. 'subs:' .. q)) do
  touch_sq(q, sq, limit)
end
touch_queue(q, (env_limits()))
return 1
