-- The intake queue's take (worker/store/intake.py, IntakeQueue.take).
-- KEYS: intake list, the holder's list. ARGV: max documents, ttl. Returns the holder's items: those it
-- already held (a redelivered task), else items moved from the intake until about max documents.
local held = redis.call('LRANGE', KEYS[2], 0, -1)
if #held > 0 then return held end
local docs, budget = 0, tonumber(ARGV[1])
while docs < budget do
  local item = redis.call('LPOP', KEYS[1])
  if not item then break end
  redis.call('RPUSH', KEYS[2], item)
  local s, e = string.match(item, '|(%d+)|(%d+)$')
  docs = docs + (tonumber(e) - tonumber(s))
  held[#held + 1] = item
end
if #held > 0 then redis.call('EXPIRE', KEYS[2], ARGV[2]) end
return held
