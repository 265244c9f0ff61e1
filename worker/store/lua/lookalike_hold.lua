-- The look-alike holds' `hold` (worker/store/lookalikes.py).
-- KEYS: the tenant's hold hash (signature -> batch id), the batch hash, the tenant's known-Keys zset.
-- ARGV: key prefix, batch id, attempt, ttl seconds, 'all' or 'some', then the batch's signatures (distinct).
-- The attempt holding the batch (request "<attempt>:unsent") takes every signature no other open batch holds (one
-- held by a batch that is done or gone is free); with 'all', none unless it can take them all (a batch that waits
-- for the rest must hold nothing meanwhile: two such could wait for each other). On its first hold the batch's `high_water` becomes the highest
-- Key known now: anything the ERP saves for it comes later. Returns {'ok', conflicting signatures...}, or {'lost'}
-- when the attempt no longer holds the batch (then nothing is taken).
local hold, bk = KEYS[1], KEYS[2]
local prefix, batch_id, attempt = ARGV[1], ARGV[2], ARGV[3]
if redis.call('HGET', bk, 'state') ~= 'sending' or redis.call('HGET', bk, 'request') ~= attempt .. ':unsent' then
  return {'lost'}
end
local out, taken = {'ok'}, {}
for i = 6, #ARGV do
  local sig = ARGV[i]
  local holder = redis.call('HGET', hold, sig)
  local busy = false
  if holder and holder ~= batch_id then
    local state = redis.call('HGET', prefix .. ':batch:' .. holder, 'state')
    busy = state ~= false and state ~= 'done'
  end
  if busy then
    out[#out + 1] = sig
  else
    taken[#taken + 1] = sig
  end
end
if ARGV[5] == 'all' and #out > 1 then taken = {} end
for _, sig in ipairs(taken) do
  redis.call('HSET', hold, sig, batch_id)
end
if #taken > 0 then
  redis.call('HSET', bk, 'lookalikes', table.concat(taken, ' '))
  redis.call('EXPIRE', hold, tonumber(ARGV[4]))
  if not redis.call('HGET', bk, 'held_at') then
    local top = redis.call('ZREVRANGE', KEYS[3], 0, 0, 'WITHSCORES')
    local known = tonumber(top[2] or '0')
    local planned = tonumber(redis.call('HGET', bk, 'high_water') or '0') or 0
    if known > planned then
      redis.call('HSET', bk, 'high_water', string.format('%d', known))
    end
    redis.call('HSET', bk, 'held_at', attempt)
  end
end
return out
