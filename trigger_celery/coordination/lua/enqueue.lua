-- Add entries to their sub-queues; a run already queued is moved/re-scored (idempotent).
-- Keys: {p}entry, {p}eatt, {p}due, {p}known, {p}sq:<sq> (old and new), and through refresh():
--   {p}subs:<q>, {p}ring:<q>, {p}heads:<q>, {p}queues, {p}conf:<q>, {p}env, {p}paused,
--   {p}ratewait, {p}hs:<sq>, {p}hq:<q>, {p}turn
-- ARGV: prefix, then groups of entries that share their queue, concurrency key ('' =
--   none), score and attempt ('0' = not known; kept in {p}eatt): the group's size n,
--   the queue, the key, the score, the attempt, then its n run ids. A batch of siblings
--   is one group.
-- Every sub-queue touched (the entries' own, and those a moved run left) is refreshed
-- once, after every entry is in, in the order it was first touched.
local base = env_limits()
local touched, order = {}, {}
local function touch(sq)
  if not touched[sq] then
    touched[sq] = true
    order[#order + 1] = sq
  end
end
local i = 2
while i <= #ARGV do
  local n, q, score, attempt = tonumber(ARGV[i]), ARGV[i + 1], ARGV[i + 3], ARGV[i + 4]
  local sq = q .. SEP .. ARGV[i + 2]
  redis.call('SADD', p .. 'known', q)
  for j = i + 5, i + 4 + n do
    local run_id = ARGV[j]
    local old = unqueue(run_id)
    if old and old ~= sq then touch(old) end
    redis.call('ZADD', p .. 'sq:' .. sq, score, run_id)
    redis.call('HSET', p .. 'entry', run_id, sq)
    redis.call('HSET', p .. 'eatt', run_id, attempt)
    redis.call('ZADD', p .. 'due', score, run_id)
  end
  touch(sq)
  i = i + 5 + n
end
for _, sq in ipairs(order) do refresh(sq, base) end
return 1
