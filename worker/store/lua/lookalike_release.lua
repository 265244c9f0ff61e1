-- The results store's `complete_batch` (worker/store/results.py): a batch that ends lets go of its look-alike holds
-- (worker/store/lookalikes.py). KEYS: the batch hash. ARGV: key prefix, batch id. Each signature the batch lists is
-- freed where the batch still holds it. A batch that held none costs one HMGET.
local fields = redis.call('HMGET', KEYS[1], 'lookalikes', 'tenant', 'kind')
if not fields[1] or fields[1] == '' then return 0 end
local hold = ARGV[1] .. ':lookalike:' .. fields[2] .. ':' .. fields[3]
local freed = 0
for sig in string.gmatch(fields[1], '%S+') do
  if redis.call('HGET', hold, sig) == ARGV[2] then
    redis.call('HDEL', hold, sig)
    freed = freed + 1
  end
end
return freed
