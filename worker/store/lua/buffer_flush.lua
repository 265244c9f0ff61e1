-- The coalescing buffer's `flush_one` (worker/store/buffer.py, CoalescingBuffer.flush_one).
-- KEYS: buffer list, its bytes counter, open-batches set.
-- ARGV: prefix, batch id, max docs, max bytes, max wait (s), now, ttl, tenant, kind, high water, now ISO, target.
-- Makes batch ARGV[2] from the buffer's head if the buffer holds a full batch or its oldest document has waited
-- long enough. Returns {status, size, extra}: {'created', documents taken, documents left}; {'exists', its size, '0'}
-- (made by an earlier run of this flush); {'young', documents waiting, seconds the oldest may still wait};
-- {'empty', '0', '0'}.
-- include: store_batch
local bk = ARGV[1] .. ':batch:' .. ARGV[2]
if redis.call('EXISTS', bk) == 1 then return {'exists', redis.call('HGET', bk, 'size') or '0', '0'} end
local first = redis.call('LINDEX', KEYS[1], 0)
if not first then return {'empty', '0', '0'} end
local max_docs, max_bytes = tonumber(ARGV[3]), tonumber(ARGV[4])
local len = redis.call('LLEN', KEYS[1])
local bytes_waiting = tonumber(redis.call('GET', KEYS[2]) or '0') + len + 1
if len < max_docs and bytes_waiting < max_bytes then
  local age = tonumber(ARGV[6]) - cjson.decode(first).t
  if age < tonumber(ARGV[5]) then return {'young', tostring(len), tostring(tonumber(ARGV[5]) - age)} end
end
local members, xids, docs = {}, {}, {}
local bytes = 1
while #docs < max_docs do
  local raw = redis.call('LINDEX', KEYS[1], 0)
  if not raw then break end
  local item = cjson.decode(raw)
  local size = #item.d + 1
  if #docs > 0 and bytes + size > max_bytes then break end
  redis.call('LPOP', KEYS[1])
  redis.call('DECRBY', KEYS[2], #item.d + 1)
  bytes = bytes + size
  members[#members + 1] = {item.j, item.p}
  xids[#xids + 1] = item.x
  docs[#docs + 1] = item.d
  redis.call('HSET', ARGV[1] .. ':job:' .. item.j .. ':assigned', tostring(item.p), ARGV[2])
end
store_batch(bk, KEYS[3], ARGV[2], ARGV[7], ARGV[8], ARGV[9], ARGV[12], cjson.encode(members), cjson.encode(xids),
            '[' .. table.concat(docs, ',') .. ']', #docs, ARGV[10], ARGV[11])
return {'created', tostring(#docs), tostring(redis.call('LLEN', KEYS[1]))}
