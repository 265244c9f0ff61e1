-- The results store's `set_records` (worker/store/results.py).
-- ARGV: prefix, now, ttl, outbox flags (job_functions: 'a' archive, 'w' job events, or ''), then (job id, position,
-- status, record JSON) repeated. Returns each one's result: 1 set, 0 refused (already final), -1 job gone.
-- include: job_functions
local out, i = {}, 5
while i <= #ARGV do
  i = set_records_of_job(ARGV[1], ARGV, i, ARGV[2], ARGV[3], out, ARGV[4])
end
return out
