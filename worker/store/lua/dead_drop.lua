-- The results store's `drop_dead_letter` (worker/store/results.py).
-- KEYS: dead-letter hash, its index, dead-letter states, open dead letters by document. ARGV: id, the document's
-- duplicate-index key. Returns 1 if there was such a dead letter.
-- include: dead_letter_functions
local removed = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
local kept = {}
for _, id in ipairs(dead_open_ids(KEYS[4], ARGV[2])) do
  if id ~= ARGV[1] then kept[#kept + 1] = id end
end
set_dead_open_ids(KEYS[4], ARGV[2], kept)
return removed
