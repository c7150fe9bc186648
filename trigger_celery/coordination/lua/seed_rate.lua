-- A restored store learns a rate-limited queue's window from the database: the starts of
-- the last period, dated as they happened, and the runs claimed but not started yet,
-- pending (their start dates them). Idempotent: several processes may restore at once.
-- Keys: {p}rate:<q>, {p}rpend, {p}turn, {p}ratewait, and those of touch_queue()
-- ARGV: prefix, queue, n, then n pairs (member, start time), then pending run ids.
local q, n = ARGV[2], tonumber(ARGV[3])
local rate = p .. 'rate:' .. q
for i = 0, n - 1 do
  redis.call('ZADD', rate, 'NX', tonumber(ARGV[5 + 2 * i]), ARGV[4 + 2 * i])
end
for i = 4 + 2 * n, #ARGV do
  if not redis.call('HGET', p .. 'rpend', ARGV[i]) then hold_rate_place(q, ARGV[i]) end
end
rewake(q)
return 1
