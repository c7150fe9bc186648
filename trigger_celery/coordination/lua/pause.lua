-- Pause or resume a queue (a paused queue is parked out of {p}queues).
-- Keys: {p}paused, {p}known, and those of touch_queue() (_lib.lua).
-- ARGV: prefix, queue, '1' to pause or '0' to resume
local q = ARGV[2]
if ARGV[3] == '1' then
  redis.call('SADD', p .. 'paused', q)
else
  redis.call('SREM', p .. 'paused', q)
end
redis.call('SADD', p .. 'known', q)
touch_queue(q, (env_limits()))
return 1
