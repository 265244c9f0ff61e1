-- The results store's `mark_created` (worker/store/results.py).
-- ARGV: dedup ttl, the archive stream ('' when the archive is off), then (dedup key, value, known-Keys zset, Key,
-- tenant, kind, ExternalId) repeated: the duplicate index learns each created document's Key, and the Key joins
-- the tenant's known Keys (reconciliation's exclusions). With the archive on, the call's entries are appended to
-- the stream too, as one entry (`idxs`: a JSON array of [tenant, kind, ExternalId, value]): the archive keeps a copy
-- of the index (`erpsync archive restore-index` rebuilds it from there).
local known, archived = {}, {}
for i = 3, #ARGV, 7 do
  redis.call('SET', ARGV[i], ARGV[i + 1], 'EX', ARGV[1])
  if ARGV[i + 2] ~= '' then
    redis.call('ZADD', ARGV[i + 2], ARGV[i + 3], ARGV[i + 3])
    known[ARGV[i + 2]] = true
  end
  if ARGV[2] ~= '' then archived[#archived + 1] = {ARGV[i + 4], ARGV[i + 5], ARGV[i + 6], ARGV[i + 1]} end
end
for zset in pairs(known) do redis.call('EXPIRE', zset, ARGV[1]) end
if #archived > 0 then redis.call('XADD', ARGV[2], '*', 'e', 'idxs', 'd', cjson.encode(archived)) end
return 1
