-- A tenant's shared ERP access token: `forget` (worker/store/tokens.py, TokenStore.forget).
-- KEYS: the token key. ARGV: the token the caller found refused. Deletes it unless another worker has already
-- replaced it. Returns 1 when deleted, else 0.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
