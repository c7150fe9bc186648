-- Give a run's slot back (idempotent: slots are set members, counted by cardinality).
-- Keys: {p}held, {p}hatt, {p}leases, {p}hs:<sq>, {p}hq:<q>, and those of refresh()
--   (_lib.lua): the freed sub-queue and queue leave their parking if they now have room.
-- ARGV: prefix, run_id, attempt ('0' = whichever attempt holds it), '0' if the run never
--   started (its undated place in a rate window goes back; otherwise it is dated now).
--   A slot that belongs to another attempt of the run is left alone. Returns 1 if a
--   slot was released.
if not holds_for(ARGV[2], ARGV[3]) then return 0 end
local sq = unhold(ARGV[2], ARGV[4] == '0' and 'give' or 'date')
if not sq then return 0 end
refresh(sq, (env_limits()))
return 1
