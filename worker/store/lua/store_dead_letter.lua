-- The results store's `store_dead_letter` (worker/store/results.py).
-- KEYS: dead-letter hash, its index, the documents metric, the open dead letters by document ({p}:dead:open).
-- ARGV: id, entry JSON, time, metric field, the archive stream ('' when the archive is off), the entry as archived
-- (without the document), the document's duplicate-index key. An id stored for the first time counts as a `dead`
-- document, is archived, and joins its document's open dead letters (a repeated transaction does none again).
-- include: dead_letter_functions
if redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.pcall('HINCRBY', KEYS[3], ARGV[4], 1)
  if ARGV[5] ~= '' then
    redis.call('XADD', ARGV[5], '*', 'e', 'dead', 'id', ARGV[1], 'd', ARGV[6])
  end
  local ids = dead_open_ids(KEYS[4], ARGV[7])
  ids[#ids + 1] = ARGV[1]
  set_dead_open_ids(KEYS[4], ARGV[7], ids)
end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 1
