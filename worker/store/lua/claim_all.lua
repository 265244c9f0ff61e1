-- The results store's `claim_all` (worker/store/results.py).
-- ARGV: ttl, the duplicate index's epoch key ('' when the archive is off), then (duplicate-index key, owner)
-- repeated. Claims each free key; returns, per key, "" where the claim is ours now, else what the index holds. One
-- call for a whole intake run, atomic: a claim cannot be released between the try and the read. With the archive
-- on, a missing epoch means Redis has lost the index (worker/store/outbox.py): nothing is claimed, an error says so.
if ARGV[2] ~= '' and redis.call('EXISTS', ARGV[2]) == 0 then
  return redis.error_reply('INDEXLOST the duplicate index epoch is missing')
end
local out = {}
for i = 3, #ARGV, 2 do
  if redis.call('SET', ARGV[i], 'claimed|' .. ARGV[i + 1], 'NX', 'EX', ARGV[1]) then
    out[#out + 1] = ''
  else
    out[#out + 1] = redis.call('GET', ARGV[i]) or ''
  end
end
return out
