-- The results store's `claim_update` (worker/store/results.py): a document of an "upsert" job claims a created
-- entry of the duplicate index to send its update. KEYS: dedup key. ARGV: the value read (the created entry), the
-- owner (job#position). Only while the entry is still that value: another job's update or re-creation in between
-- makes this one look again. Keeps the entry's expiry. Returns 1 when claimed.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local ttl = redis.call('PTTL', KEYS[1])
local value = 'updating|' .. ARGV[2] .. '|' .. ARGV[1]
if ttl > 0 then
  redis.call('SET', KEYS[1], value, 'PX', ttl)
else
  redis.call('SET', KEYS[1], value)
end
return 1
