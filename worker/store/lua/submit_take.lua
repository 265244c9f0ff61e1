-- Take the oldest job message of a raw producer (worker/store/submissions.py, SubmissionQueue.take).
-- KEYS: the submit list, the held key for the new id, the held set. ARGV: the new id. Moves the oldest
-- message (producers LPUSH, so RPOP is first in, first out) and returns its size; the content never
-- leaves Redis here. False (None) when no message waits.
local message = redis.call('RPOP', KEYS[1])
if not message then return false end
redis.call('SET', KEYS[2], message)
redis.call('SADD', KEYS[3], ARGV[1])
return string.len(message)
