-- The results store's `close_job` (worker/store/results.py).
-- ARGV: prefix, now, job id, outbox flags (job_functions). The producer has stored every document: the job leaves `receiving`, and is
-- finished at once if every document already has its outcome (a small job may be processed before this).
-- include: job_functions
local jk = ARGV[1] .. ':job:' .. ARGV[3]
if redis.call('HGET', jk, 'status') ~= 'receiving' then return 0 end
redis.call('HSET', jk, 'received_at', ARGV[2])
if not finish_if_done(ARGV[1], jk, ARGV[2], ARGV[3], ARGV[4]) then
  if redis.call('HEXISTS', jk, 'started_at') == 1 then
    redis.call('HSET', jk, 'status', 'running')
  else
    redis.call('HSET', jk, 'status', 'queued')
  end
end
return 1
