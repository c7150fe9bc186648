-- Add (or move) entries to their sub-queues.
-- KEYS: none declared dynamically; every key is built from ARGV[1] (the prefix, which
--       carries the hash tag): {p}entry, {p}due, {p}known, {p}queues, {p}subs:<q>, {p}sq:<sq>
-- ARGV: prefix, then groups of 4: run_id, queue, concurrency_key ('' for none), score
local p = ARGV[1]
local sep = '\031'
for i = 2, #ARGV, 4 do
  local run_id, q, ck, score = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  local sq = q .. sep .. ck
  local old = redis.call('HGET', p .. 'entry', run_id)
  if old and old ~= sq then
    redis.call('ZREM', p .. 'sq:' .. old, run_id)
  end
  redis.call('ZADD', p .. 'sq:' .. sq, score, run_id)
  redis.call('HSET', p .. 'entry', run_id, sq)
  redis.call('ZADD', p .. 'due', score, run_id)
  redis.call('SADD', p .. 'known', q)
  redis.call('ZADD', p .. 'subs:' .. q, 'NX', 0, sq)
  redis.call('ZADD', p .. 'queues', 'LT', score, q)
end
return 1
