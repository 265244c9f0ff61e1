-- The results store's `mark_created` (worker/store/results.py).
-- ARGV: dedup ttl, the archive stream ('' when the archive is off), the dead-letter hash, their states and the open
-- dead letters by document ({p}:dead:open), now, then (dedup key, value, known-Keys zset, Key, tenant, kind,
-- ExternalId) repeated: the duplicate index learns each created document's Key, and the Key joins the tenant's known
-- Keys (reconciliation's exclusions). With the archive on, the call's entries are appended to the stream too, as one
-- entry (`idxs`: a JSON array of [tenant, kind, ExternalId, value]): the archive keeps a copy of the index
-- (`erpsync archive restore-index` rebuilds it from there). A document with open dead letters resolves them, in
-- the same transaction as its creation: each becomes `resolved` with the Key, number and job that created it.
-- include: dead_letter_functions
local function resolve_dead_letters(value, ids)
  local parts = {}
  for part in string.gmatch(value .. '|', '([^|]*)|') do parts[#parts + 1] = part end
  local owner = parts[2] or ''
  local job = string.match(owner, '^(.*)#%d+$') or owner
  local key = string.gsub(parts[3] or '', '^~', '')
  for _, id in ipairs(ids) do
    if redis.call('HEXISTS', ARGV[3], id) == 1 then
      local state = dead_state(ARGV[4], id)
      state['state'] = 'resolved'
      state['resolved_key'] = key
      state['resolved_number'] = parts[4] or ''
      state['resolved_by'] = job
      state['resolved_at'] = ARGV[6]
      if state['replay_job'] == job then state['replay_outcome'] = 'created' end
      redis.call('HSET', ARGV[4], id, cjson.encode(state))
    end
  end
end

local known, archived = {}, {}
local dead = redis.call('HLEN', ARGV[5]) > 0
for i = 7, #ARGV, 7 do
  redis.call('SET', ARGV[i], ARGV[i + 1], 'EX', ARGV[1])
  if ARGV[i + 2] ~= '' then
    redis.call('ZADD', ARGV[i + 2], ARGV[i + 3], ARGV[i + 3])
    known[ARGV[i + 2]] = true
  end
  if ARGV[2] ~= '' then archived[#archived + 1] = {ARGV[i + 4], ARGV[i + 5], ARGV[i + 6], ARGV[i + 1]} end
  if dead then
    local ids = redis.call('HGET', ARGV[5], ARGV[i])
    if ids then
      resolve_dead_letters(ARGV[i + 1], cjson.decode(ids))
      redis.call('HDEL', ARGV[5], ARGV[i])
    end
  end
end
for zset in pairs(known) do redis.call('EXPIRE', zset, ARGV[1]) end
if #archived > 0 then redis.call('XADD', ARGV[2], '*', 'e', 'idxs', 'd', cjson.encode(archived)) end
return 1
