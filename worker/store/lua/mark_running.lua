-- The results store's `mark_running` (worker/store/results.py), also queued by `intake_state`.
-- KEYS: job hash. ARGV: now ISO. A queued job becomes running and gets its `started_at` (once); a finished one keeps
-- its status (a redelivery), and a job that is gone is not brought back as a husk. Returns 0 if gone, else 1.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSETNX', KEYS[1], 'started_at', ARGV[1])
if redis.call('HGET', KEYS[1], 'status') == 'queued' then redis.call('HSET', KEYS[1], 'status', 'running') end
return 1
