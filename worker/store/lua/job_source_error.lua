-- worker/store/jobs.py's `close_job` of a job whose source broke part-way, queued just before close_job.lua in the
-- same MULTI. ARGV: prefix, job id, reason, line ('' when unknown). Only a job still `receiving` is marked: one that
-- is closed already (a repeated call) keeps what it says. `finish_if_done` (job_functions.lua) then finishes the
-- job `incomplete` instead of succeeded/partial/failed, once every stored document has its outcome.
local jk = ARGV[1] .. ':job:' .. ARGV[2]
if redis.call('HGET', jk, 'status') ~= 'receiving' then return 0 end
redis.call('HSET', jk, 'source_error', ARGV[3])
if ARGV[4] ~= '' then redis.call('HSET', jk, 'source_error_line', ARGV[4]) end
return 1
