-- Which of the given runs the store knows, read in one step: a run holding a slot, or a
-- queued run whose sub-queue still has its entry. (Read in two steps, a claim between
-- them moved a queued run into a slot unseen, and the reconciler queued it again.)
-- Keys: {p}held, {p}entry, {p}known, {p}eatt, {p}due, {p}sq:<sq>, and through refresh() (_lib.lua)
--   the indexes of those sub-queues and their queues.
-- ARGV: prefix, then run ids. Returns the known ones.
--
-- A Redis that evicts keys (maxmemory with allkeys-lru) may drop a sub-queue, or its
-- ring, heads or {p}queues, and keep {p}entry. A run listed in {p}entry that its
-- sub-queue lost is not known (its listing goes, so the caller queues it again whole,
-- even if it also holds a slot); the sub-queues of the entries found are re-indexed, so
-- an index evicted from under them comes back.
local base = env_limits()
local known, indexed = {}, {}
for i = 2, #ARGV do
  local run_id = ARGV[i]
  local sq = redis.call('HGET', p .. 'entry', run_id)
  if sq then
    if redis.call('ZSCORE', p .. 'sq:' .. sq, run_id) then
      known[#known + 1] = run_id
      if not indexed[sq] then
        indexed[sq] = true
        redis.call('SADD', p .. 'known', queue_of(sq))
        refresh(sq, base)
      end
    else
      redis.call('HDEL', p .. 'entry', run_id)
      redis.call('HDEL', p .. 'eatt', run_id)
      redis.call('ZREM', p .. 'due', run_id)
    end
  elseif redis.call('HEXISTS', p .. 'held', run_id) == 1 then
    known[#known + 1] = run_id
  end
end
return known
