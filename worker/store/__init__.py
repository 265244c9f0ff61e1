"""The only owner of Redis state: every key (keys.py), every Lua script (lua/), every read and write.

keys.py         every key family, in one place
client.py       one Redis client per process (`RedisClient`, its type for the layers above)
errors.py       what the store raises when Redis fails, named for callers that do not import redis
scripts.py      the Lua scripts of lua/, loaded once
records.py      the types the store hands out: statuses and states as enums, records, plans
results.py      jobs, documents, records, the duplicate index, batches and their leases, dead letters
jobs.py         a job's documents stored a chunk at a time, with the chunk's intake item
intake.py       the intake queue: job ranges waiting to be validated, per tenant and lane, taken fairly
buffer.py       the coalescing buffer: documents of many jobs per (tenant, kind), cut into batches
dispatch.py     batches waiting to be sent, per tenant and lane; handed out fairly, within each tenant's limits
ratelimit.py    a tenant's requests per time window (Fortnox)
submissions.py  raw producers' submit list and held messages, each settled in one transaction
counters.py     metric counters
tokens.py       ERP access tokens shared by every worker, and a tenant's Retry-After pause
views.py        read-only views for operators (worker/ops/overview.py)
outbox.py       the stream every recorded outcome is appended to (the archive's input), the index's epoch
webhooks.py     job events taken for webhooks, deliveries due, retried and given up

Outside it, redis is imported only by the module tests/unit/test_layers.py lists (the local stack, which starts a
redis-server); the others name Redis's errors and client through errors.py and client.py.
"""
