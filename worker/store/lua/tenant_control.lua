-- Tenant controls (worker/store/tenants.py, TenantControls): a tenant's state, changed in one step.
-- KEYS: the tenant's hash ({p}:tenant:{tenant}). ARGV: what happened, now (epoch s), then
--   'refused', reason, started (epoch s): its ERP refused the authorisation a request started at `started` used. Its
--       health becomes `refused` and, unless it is paused already (an operator's pause stays), it is paused by
--       `auth` with the reason. Nothing changes when new credentials were given after `started` (`credentials_at`):
--       the refusal was of the old ones. Returns 1 when recorded, 0 when not.
--   'reauthorised': an operator gave new credentials: noted (`credentials_at`), the health is `unknown` until a
--       renewal works, and a pause by `auth` ends (an operator's stays). Returns 1 when that ended a pause, else 0.
local key, what, now = KEYS[1], ARGV[1], ARGV[2]
local by = redis.call('HGET', key, 'paused_by')
if what == 'refused' then
  local given = tonumber(redis.call('HGET', key, 'credentials_at') or '0')
  if given > tonumber(ARGV[4]) then return 0 end
  redis.call('HSET', key, 'auth', 'refused', 'auth_at', now)
  if not by then redis.call('HSET', key, 'paused_by', 'auth', 'reason', ARGV[3], 'since', now) end
  return 1
end
redis.call('HSET', key, 'credentials_at', now, 'auth', 'unknown', 'auth_at', now)
if by == 'auth' then
  redis.call('HDEL', key, 'paused_by', 'reason', 'since')
  return 1
end
return 0
