-- The results store's `job_functions` (worker/store/results.py).
-- Lua functions shared by the scripts below. A job's keys derive from the prefix and job id (the same as
-- Keys.job in worker/store/keys.py), so one script call can update documents of many jobs.
-- The outbox streams (worker/store/outbox.py). `flags` holds 'a' when the archive is on: every outcome and every
-- job's final summary is appended to {p}:archive in the same script that records it, so the archiver
-- (worker/archive/) can never miss one; 'w' when some tenant has a webhook: a final job is appended to
-- {p}:events:jobs (capped: a webhook sender that is not running loses the oldest, never the pipeline's time).
local function archive_job(prefix, flags, jk, job_id, now)
  if string.find(flags, 'a', 1, true) then
    local flat = redis.call('HGETALL', jk)
    local job = {}
    for n = 1, #flat, 2 do job[flat[n]] = flat[n + 1] end
    redis.call('XADD', prefix .. ':archive', '*', 'e', 'job', 'j', job_id, 'at', now, 'd', cjson.encode(job))
  end
  if string.find(flags, 'w', 1, true) then
    local meta = redis.call('HMGET', jk, 'tenant', 'status')
    redis.call('XADD', prefix .. ':events:jobs', 'MAXLEN', '~', '100000', '*',
      'j', job_id, 't', meta[1] or '', 's', meta[2] or '', 'at', now)
  end
end

local function finish_if_done(prefix, jk, now, job_id, flags)
  local pending = tonumber(redis.call('HGET', jk, 'n_pending') or '0')
  if pending > 0 then return false end
  local total = tonumber(redis.call('HGET', jk, 'total') or '0')
  local ok = tonumber(redis.call('HGET', jk, 'n_created') or '0')
           + tonumber(redis.call('HGET', jk, 'n_duplicate') or '0')
           + tonumber(redis.call('HGET', jk, 'n_updated') or '0')
  local status = 'partial'
  if ok == total then status = 'succeeded' elseif ok == 0 then status = 'failed' end
  -- A job whose source broke part-way (`source_error`, worker/store/jobs.py) is `incomplete` whatever its
  -- documents' outcomes: it does not hold the whole source. Its counters still say what became of each document.
  if redis.call('HEXISTS', jk, 'source_error') == 1 then status = 'incomplete' end
  redis.call('HSET', jk, 'status', status, 'finished_at', now)
  redis.call('SREM', prefix .. ':open_jobs', job_id)
  if flags ~= '' then archive_job(prefix, flags, jk, job_id, now) end
  return true
end

-- created/duplicate/changed/updated are final: a late or repeated message can never undo them. `changed` is not success:
-- a job with one is `partial` (or `failed`). A job that expired is not
-- brought back as a husk without TTL (-1). The job's status always follows its counters, except while the
-- producer is still streaming its documents in (`receiving`): it cannot be finished before it is whole.
--
-- Sets the records of ARGV[i], ARGV[i + 4], ... while they are of the same job (a batch's documents mostly
-- are): per document only its status is read and its record and status written; the job's counters, metric,
-- updated_at and status are written once for the run, from what its documents changed. Appends each one's
-- result to `out` and returns the index after the run. With the archive on, every record set with an outcome
-- (not `pending`) is appended to {p}:archive, the run's records in one entry (`docs`: a JSON array of
-- {"p": position, "s": status, "r": record}) with their job's tenant, target and kind: one entry per call rather
-- than per document keeps the stream's cost to Redis and the archiver small.
local function set_records_of_job(prefix, argv, i, now, ttl, out, flags)
  local job_id = argv[i]
  local jk = prefix .. ':job:' .. job_id
  local alive = redis.call('EXISTS', jk) == 1
  local delta, entered, changed = {}, {}, false
  local archive = alive and string.find(flags, 'a', 1, true)
  local archived = {}
  while i <= #argv and argv[i] == job_id do
    if not alive then
      out[#out + 1] = -1
    else
      local pos, status = argv[i + 1], argv[i + 2]
      local old = redis.call('HGET', jk .. ':status', pos) or 'pending'
      if old == 'created' or old == 'duplicate' or old == 'changed' or old == 'updated' then
        out[#out + 1] = 0
      else
        redis.call('HSET', jk .. ':records', pos, argv[i + 3])
        if archive and status ~= 'pending' then
          -- the record is JSON already: it goes in as it is; position and status are a number and a word
          archived[#archived + 1] = '{"p":' .. tonumber(pos) .. ',"s":"' .. status .. '","r":' .. argv[i + 3] .. '}'
        end
        if old ~= status then
          redis.call('HSET', jk .. ':status', pos, status)
          delta[old] = (delta[old] or 0) - 1
          delta[status] = (delta[status] or 0) + 1
          entered[status] = (entered[status] or 0) + 1
          changed = true
        end
        out[#out + 1] = 1
      end
    end
    i = i + 4
  end
  if #archived > 0 then
    local where = redis.call('HMGET', jk, 'tenant', 'target', 'kind')
    redis.call('XADD', prefix .. ':archive', '*', 'e', 'docs', 'j', job_id, 't', where[1] or '',
      'g', where[2] or 'softone', 'k', where[3] or '', 'd', '[' .. table.concat(archived, ',') .. ']')
  end
  if not changed then return i end
  redis.call('EXPIRE', jk .. ':status', ttl)
  for status, n in pairs(delta) do
    if n ~= 0 then redis.call('HINCRBY', jk, 'n_' .. status, n) end
  end
  -- erpsync_documents_total (worker/observability/metrics.py): counted here, where a status really changes, so that a
  -- redelivered message never counts twice; pcall: a metric never aborts the script.
  local meta = redis.call('HMGET', jk, 'tenant', 'target', 'kind')
  local settled = 0
  for status, n in pairs(entered) do
    if status ~= 'pending' then
      redis.pcall('HINCRBY', prefix .. ':metrics:erpsync_documents_total',
        (meta[1] or '') .. '|' .. (meta[2] or 'softone') .. '|' .. (meta[3] or '') .. '|' .. status, n)
      settled = settled + n
    end
  end
  -- Throughput (worker/store/counters.py, `throughput`): documents settled per 10-second bucket of Redis's clock, per
  -- tenant and per job, kept two minutes: `erpsync status` reads the last minute's rate and ETA from it.
  if settled > 0 then
    local bucket = prefix .. ':throughput:' .. math.floor(tonumber(redis.call('TIME')[1]) / 10)
    redis.pcall('HINCRBY', bucket, 't|' .. (meta[1] or ''), settled)
    redis.pcall('HINCRBY', bucket, 'j|' .. job_id, settled)
    redis.pcall('EXPIRE', bucket, 130)
  end
  redis.call('HSET', jk, 'updated_at', now)
  local current = redis.call('HGET', jk, 'status')
  if current == 'receiving' then return i end
  if not finish_if_done(prefix, jk, now, job_id, flags) and current ~= 'running' then
    redis.call('HSET', jk, 'status', 'running')
    redis.call('HDEL', jk, 'finished_at')
  end
  return i
end
