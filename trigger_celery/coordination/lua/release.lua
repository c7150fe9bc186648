-- Give a run's slot back (idempotent: slots are set members, counted by cardinality).
-- Keys: {p}held, {p}leases, {p}hs:<sq>, {p}hq:<q>, and those of refresh() (_lib.lua):
--   the freed sub-queue and queue leave their parking if they now have room.
-- ARGV: prefix, run_id. Returns 1 if the run held a slot.
local sq = unhold(ARGV[2])
if not sq then return 0 end
refresh(sq, (env_limits()))
return 1
