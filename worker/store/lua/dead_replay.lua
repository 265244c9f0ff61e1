-- The results store's `record_replay` (worker/store/results.py).
-- KEYS: dead-letter hash, dead-letter states. ARGV: id, the replay's job id, now.
-- The dead letter is `replayed` by that job, its outcome `pending` until the job settles the document; one resolved
-- already stays resolved (the replay is recorded all the same). Returns 0 for a dead letter that is gone.
-- include: dead_letter_functions
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
local state = dead_state(KEYS[2], ARGV[1])
if state['state'] ~= 'resolved' then state['state'] = 'replayed' end
state['replay_job'] = ARGV[2]
state['replayed_at'] = ARGV[3]
state['replay_outcome'] = 'pending'
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(state))
return 1
