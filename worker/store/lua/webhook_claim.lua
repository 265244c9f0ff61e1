-- Webhooks' `claim_due` (worker/store/webhooks.py, WebhookStore.claim_due).
-- KEYS: the due zset. ARGV: the deliveries' key prefix ({p}:webhooks:delivery:), now, lease end, how many to claim
-- at most, how many due ones to look at, the per-tenant cap (0: none), when a skipped one comes back, then
-- (tenant, deliveries in flight) repeated: what this sender has in flight already.
-- A claimed delivery's score moves to the lease's end: no other sender takes it while this one sends it, and it
-- is due again if this one dies. A due delivery of a tenant at its cap is moved to ARGV[7] (a moment later), so
-- that one endpoint's backlog never hides the others' deliveries behind it. A member whose hash is gone is
-- dropped. Returns (id, tenant, job id, status, attempts, body) repeated.
local busy = {}
for i = 8, #ARGV, 2 do busy[ARGV[i]] = tonumber(ARGV[i + 1]) end
local limit, cap = tonumber(ARGV[4]), tonumber(ARGV[6])
local out, taken = {}, 0
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[5]))
for _, id in ipairs(ids) do
  if taken >= limit then break end
  local d = redis.call('HMGET', ARGV[1] .. id, 'tenant', 'job', 'status', 'attempts', 'body')
  if not d[1] then
    redis.call('ZREM', KEYS[1], id)
  else
    local n = busy[d[1]] or 0
    if cap > 0 and n >= cap then
      redis.call('ZADD', KEYS[1], 'XX', ARGV[7], id)
    else
      busy[d[1]] = n + 1
      taken = taken + 1
      redis.call('ZADD', KEYS[1], 'XX', ARGV[3], id)
      for _, v in ipairs({id, d[1], d[2] or '', d[3] or '', d[4] or '0', d[5] or ''}) do out[#out + 1] = v end
    end
  end
end
return out
