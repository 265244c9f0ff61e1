-- Shared function (`-- include: store_batch`) of the coalescing buffer (worker/store/buffer.py): the one writer of a
-- new batch's hash, shared by the flush (buffer_flush.lua) and by intake's whole batches (make_batch.lua): the
-- layout tasks/send.py reads, `queued`, listed in the open batches. `members` and `xids` are JSON arrays and `body`
-- the JSON array of the documents, already encoded (by the flush here, by make_batch in Python).
local function store_batch(bk, open_batches, batch_id, ttl, tenant, kind, target, members, xids, body, size, high_water,
                           now)
  redis.call('HSET', bk, 'state', 'queued', 'tenant', tenant, 'kind', kind, 'target', target,
             'members', members, 'external_ids', xids, 'body', body, 'attempts', '0', 'size', tostring(size),
             'created_at', now, 'high_water', high_water)
  redis.call('EXPIRE', bk, ttl)
  redis.call('SADD', open_batches, batch_id)
end
