-- create_pool.lua: create a pool's state unless it already exists.
--
-- KEYS[1]  pool hash      ns:{pool}:pool
-- KEYS[2]  events stream  ns:{pool}:events
-- KEYS[3]  the pool index set the pool's name is added to: ns:pools, or on a Redis Cluster
--          the bucket of the pool's own slot, ns:pools:{<tag>} (keys.py)
-- ARGV[1]  the pool document (JSON)
-- ARGV[2]  approximate maximum length of the events stream
-- ARGV[3]  pub/sub channel to notify
-- ARGV[4]  message to publish (the pool name)
-- ARGV[5]  one JSON event describing the creation, without "at" (stamped here: server_time.lua)
-- ARGV[6]  the document's head, "<interval> <observers> <incarnation>" (commit_pool.lua: head)
--
-- Returns 1 if created (version 1), 0 if the pool already exists (nothing changed), or an
-- error reply "<key> is a <type>, not a <type>" if a key has the wrong type (nothing written).
local wrong = check_key_types({'hash', 'stream', 'set'})
if wrong then
  return wrong
end
redis.call('SADD', KEYS[3], ARGV[4])
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'doc', ARGV[1], 'version', 1, 'round', -1, 'head', '1 ' .. ARGV[6])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'event', stamped(ARGV[5]))
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
