-- A run began to execute: its claim's place in the queue's rate window is scored with
-- this instant (until now it was PENDING), so the window counts from the start itself.
-- Keys: {p}rpend, {p}rate:<q>, {p}ratewait, and those of touch_queue()
-- ARGV: prefix, run_id, now ('' = this server's TIME)
-- Returns 1 if a pending place was scored, 0 if the run had none (its queue has no rate
-- limit, or the start was already counted).
local q, member = take_rate_place(ARGV[2])
if not q then return 0 end
local now = ARGV[3] == '' and server_time() or tonumber(ARGV[3])
redis.call('ZADD', p .. 'rate:' .. q, 'XX', now, member)
rewake(q)
return 1
