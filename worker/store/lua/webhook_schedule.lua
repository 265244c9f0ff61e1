-- Webhooks' `schedule` (worker/store/webhooks.py, WebhookStore.schedule).
-- KEYS: the job-events stream, the due zset. ARGV: the consumer group, the deliveries' key prefix
-- ({p}:webhooks:delivery:), now (epoch seconds), then (entry id, delivery id, tenant, job id, status, at, body)
-- repeated; body '' for an event that no webhook is for. Each event still in the stream becomes a due delivery
-- (or nothing) and leaves the stream (XACK, XDEL) in this one call: none is lost, none is scheduled twice. An
-- event gone from the stream was scheduled already (by a sender that took it over): it is only acknowledged.
-- Returns how many deliveries were made.
local made = 0
for i = 4, #ARGV, 7 do
  local id = ARGV[i]
  if #redis.call('XRANGE', KEYS[1], id, id) > 0 then
    if ARGV[i + 6] ~= '' then
      redis.call('HSET', ARGV[2] .. ARGV[i + 1], 'tenant', ARGV[i + 2], 'job', ARGV[i + 3], 'status', ARGV[i + 4],
        'at', ARGV[i + 5], 'body', ARGV[i + 6], 'attempts', 0, 'created', ARGV[3])
      redis.call('ZADD', KEYS[2], 'NX', ARGV[3], ARGV[i + 1])
      made = made + 1
    end
    redis.call('XDEL', KEYS[1], id)
  end
  redis.call('XACK', KEYS[1], ARGV[1], id)
end
return made
