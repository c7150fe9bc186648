-- Set the environment limits; every queue's cap depends on the base, so re-index all.
-- Keys: {p}env, {p}known, and those of touch_queue() (_lib.lua) for every known queue.
-- ARGV: prefix, base limit, burst factor, '1' to change them only if they are set (a
--   store without them is being restored: setting them would let claims start early)
if ARGV[4] == '1' and redis.call('EXISTS', p .. 'env') == 0 then return 0 end
redis.call('HSET', p .. 'env', 'limit', ARGV[2], 'burst', ARGV[3])
local base = env_limits()
for _, q in ipairs(redis.call('SMEMBERS', p .. 'known')) do
  touch_queue(q, base)
end
return 1
