-- Shared function (`-- include: apply_metrics`): apply metric increments given as (key, field, amount) triples
-- from argv[first] on (worker/store/counters.py, lua_args). An amount with a '.' or an exponent is a float
-- (HINCRBYFLOAT), else an integer (HINCRBY). pcall: a metric never aborts the script it rides on.
local function apply_metrics(argv, first)
  for i = first, #argv, 3 do
    if string.find(argv[i + 2], '[%.eE]') then
      redis.pcall('HINCRBYFLOAT', argv[i], argv[i + 1], argv[i + 2])
    else
      redis.pcall('HINCRBY', argv[i], argv[i + 1], argv[i + 2])
    end
  end
end
