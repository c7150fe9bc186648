-- Add entries to their sub-queues; a run already queued is moved/re-scored (idempotent).
-- Keys: {p}entry, {p}eatt, {p}due, {p}known, {p}sq:<sq> (old and new), and through refresh():
--   {p}subs:<q>, {p}ring:<q>, {p}heads:<q>, {p}queues, {p}conf:<q>, {p}env, {p}paused,
--   {p}ratewait, {p}hs:<sq>, {p}hq:<q>, {p}turn
-- ARGV: prefix, then groups of 5: run_id, queue, concurrency key ('' = none), score,
--   the attempt the entry is for ('0' = not known); kept in {p}eatt
local base = env_limits()
for i = 2, #ARGV, 5 do
  local run_id, q, score, attempt = ARGV[i], ARGV[i + 1], ARGV[i + 3], ARGV[i + 4]
  local sq = q .. SEP .. ARGV[i + 2]
  local old = unqueue(run_id)
  if old and old ~= sq then refresh(old, base) end
  redis.call('ZADD', p .. 'sq:' .. sq, score, run_id)
  redis.call('HSET', p .. 'entry', run_id, sq)
  redis.call('HSET', p .. 'eatt', run_id, attempt)
  redis.call('ZADD', p .. 'due', score, run_id)
  redis.call('SADD', p .. 'known', q)
  refresh(sq, base)
end
return 1
