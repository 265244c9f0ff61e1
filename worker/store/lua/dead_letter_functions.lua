-- The results store's `dead_letter_functions` (worker/store/results.py): shared by the dead-letter scripts.
-- A dead letter's entry ({p}:dead) is never rewritten by a script (cjson would turn its document's empty lists into
-- objects); its state lives beside it in {p}:dead:state as a flat JSON object of strings: `state` (`replayed` or
-- `resolved`; no state = open), `replay_job`, `replayed_at`, `replay_outcome`, `resolved_key`, `resolved_number`,
-- `resolved_by` (the job that created the document), `resolved_at`. {p}:dead:open maps a document's duplicate-index
-- key to the JSON array of its unresolved dead letters' ids.
local function dead_state(state_key, id)
  local raw = redis.call('HGET', state_key, id)
  if raw then return cjson.decode(raw) end
  return {}
end

local function dead_open_ids(open_key, field)
  local raw = redis.call('HGET', open_key, field)
  if raw then return cjson.decode(raw) end
  return {}
end

-- Store `ids` (a Lua list) as the unresolved dead letters of the document `field`; none: the field goes.
local function set_dead_open_ids(open_key, field, ids)
  if #ids == 0 then
    redis.call('HDEL', open_key, field)
  else
    redis.call('HSET', open_key, field, cjson.encode(ids))
  end
end
