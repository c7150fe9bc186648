-- Take a run out of its queue.
-- Keys: {p}entry, {p}due, {p}sq:<sq>, and those of refresh() (see _lib.lua).
-- ARGV: prefix, run_id. Returns 1 if the run was queued.
local sq = unqueue(ARGV[2])
if not sq then return 0 end
refresh(sq, (env_limits()))
return 1
