-- The results store's `release_claim` (worker/store/results.py): a document that was not sent, or that the ERP
-- refused, gives up its claim. KEYS: dedup key. ARGV: the claim's value ("claimed|<owner>"), its owner.
-- A claim to create is deleted; a claim to update ("updating|<owner>|<created value>") puts back the created value
-- it started from (the ERP still holds that document, unchanged), with the entry's expiry.
local value = redis.call('GET', KEYS[1])
if value == ARGV[1] then return redis.call('DEL', KEYS[1]) end
local updating = 'updating|' .. ARGV[2] .. '|'
if value and string.sub(value, 1, #updating) == updating then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 then
    redis.call('SET', KEYS[1], string.sub(value, #updating + 1), 'PX', ttl)
  else
    redis.call('SET', KEYS[1], string.sub(value, #updating + 1))
  end
  return 1
end
return 0
