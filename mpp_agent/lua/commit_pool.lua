-- commit_pool.lua: write a pool's new state if nobody else wrote it first (compare-and-set).
--
-- KEYS[1]  pool hash      ns:{pool}:pool     (fields doc, version, round, head)
-- KEYS[2]  events stream  ns:{pool}:events
-- ARGV[1]  expected version (the version the writer read)
-- ARGV[2]  round of this tick; "" for an admin change (the round is left as it is); "=<n>"
--          for an admin change that re-numbers the rounds (a new interval): round set to n
-- ARGV[3]  the new pool document (JSON)
-- ARGV[4]  approximate maximum length of the events stream
-- ARGV[5]  pub/sub channel to notify
-- ARGV[6]  message to publish (the pool name)
-- ARGV[7]  the new document's head, "<interval> <observers> <incarnation>": stored as field
--          head after the version written, so that a reader that needs no more of the pool
--          need not read the document (a head whose version is not the hash's was written
--          by something else: the document decides)
-- ARGV[8]  number of events N, then ARGV[9 .. 8+N]: one JSON event each, without "at": the
--          script stamps them with its own TIME (the pool's shard's clock; server_time.lua)
-- ARGV[9+N] optional: the least version to write (a writer restoring a state that Redis lost
--          in a failover sets it above the versions already seen, so that every reader adopts
--          the restored state at once)
--
-- Returns {1, new_version} on success,
--         {0, "missing"} if the pool does not exist,
--         {0, "version", current_version} if the version moved,
--         {0, "round", last_round} if the round is not newer than the last committed one;
--         an error reply "<key> is a <type>, not a <type>" if a key has the wrong type
--         (check_key_types, before anything is written: a commit is never half-written).
local wrong = check_key_types({'hash', 'stream'})
if wrong then
  return wrong
end
local current = redis.call('HGET', KEYS[1], 'version')
if not current then
  return {0, 'missing'}
end
if current ~= ARGV[1] then
  return {0, 'version', current}
end
if string.sub(ARGV[2], 1, 1) == '=' then
  redis.call('HSET', KEYS[1], 'round', string.sub(ARGV[2], 2))
elseif ARGV[2] ~= '' then
  local last = tonumber(redis.call('HGET', KEYS[1], 'round') or '-1')
  if tonumber(ARGV[2]) <= last then
    return {0, 'round', tostring(last)}
  end
  redis.call('HSET', KEYS[1], 'round', ARGV[2])
end
local n = tonumber(ARGV[8])
local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
local floor = tonumber(ARGV[9 + n] or '')
if floor and floor > version then
  version = floor
  redis.call('HSET', KEYS[1], 'version', version)
end
redis.call('HSET', KEYS[1], 'doc', ARGV[3], 'head', version .. ' ' .. ARGV[7])
for i = 1, n do
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'event', stamped(ARGV[8 + i]))
end
redis.call('PUBLISH', ARGV[5], ARGV[6])
return {1, version}
