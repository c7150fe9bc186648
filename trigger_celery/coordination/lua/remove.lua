-- Take a run out of its queue.
-- Keys (from prefix ARGV[1]): {p}entry, {p}due, {p}sq:<sq>
-- ARGV: prefix, run_id. Returns 1 if the run was queued.
local p, run_id = ARGV[1], ARGV[2]
local sq = redis.call('HGET', p .. 'entry', run_id)
if not sq then return 0 end
redis.call('ZREM', p .. 'sq:' .. sq, run_id)
redis.call('HDEL', p .. 'entry', run_id)
redis.call('ZREM', p .. 'due', run_id)
return 1
