-- remove_pool.lua: delete a pool's state if its version is still the one the remover read.
--
-- KEYS[1]  pool hash      ns:{pool}:pool
-- KEYS[2]  events stream  ns:{pool}:events
-- KEYS[3]  metrics hash   ns:{pool}:metrics
-- KEYS[4]  pollers zset   ns:{pool}:pollers
-- KEYS[5]  the pool index set the pool's name leaves: ns:pools, or on a Redis Cluster the
--          bucket of the pool's own slot, ns:pools:{<tag>} (keys.py)
-- ARGV[1]  expected version
-- ARGV[2]  pub/sub channel to notify
-- ARGV[3]  message to publish (the pool name)
--
-- Returns 1 if removed, 0 if the pool does not exist, -1 if its version moved; an error reply
-- "<key> is a <type>, not a <type>" if the pool hash or the index set has the wrong type
-- (nothing deleted; the other keys are deleted whatever they hold).
local wrong = check_key_types({'hash', false, false, false, 'set'})
if wrong then
  return wrong
end
local current = redis.call('HGET', KEYS[1], 'version')
if not current then
  return 0
end
if current ~= ARGV[1] then
  return -1
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
redis.call('SREM', KEYS[5], ARGV[3])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
