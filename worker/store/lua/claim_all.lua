-- The results store's `claim_all` (worker/store/results.py).
-- ARGV: ttl, then (duplicate-index key, owner) repeated. Claims each free key; returns, per key, "" where the
-- claim is ours now, else what the index holds. One call for a whole intake run, atomic: a claim cannot be
-- released between the try and the read.
local out = {}
for i = 2, #ARGV, 2 do
  if redis.call('SET', ARGV[i], 'claimed|' .. ARGV[i + 1], 'NX', 'EX', ARGV[1]) then
    out[#out + 1] = ''
  else
    out[#out + 1] = redis.call('GET', ARGV[i]) or ''
  end
end
return out
