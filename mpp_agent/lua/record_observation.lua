-- record_observation.lua: record one poller's observations of a pool for one round,
-- refresh its heartbeat for that pool, and say whether the round is now complete and
-- whether it is already committed.
--
-- KEYS[1]  observations hash  ns:{pool}:obs:<round>
-- KEYS[2]  pollers zset       ns:{pool}:pollers
-- KEYS[3]  metrics hash       ns:{pool}:metrics
-- KEYS[4]  pool hash          ns:{pool}:pool (only read)
-- ARGV[1]  poller id
-- ARGV[2]  its observations of the round (JSON)
-- ARGV[3]  TTL of the observations and metrics, in ms
-- ARGV[4]  how long this poller's heartbeat for the pool lasts, in ms: it expires that long
--          after this script's own TIME (the pool's shard's clock, never the poller's)
-- ARGV[5]  number of metrics fields N, then ARGV[6 ..]: node, metrics JSON, node, ...
-- ARGV[6+2N]  number of the pool's assigned observers M (by this poller's view), then their
--          ids; 0: every live poller of this pool (those whose pool heartbeat is unexpired)
--
-- Returns {expected, reported, committed}: how many pollers the round waits for (the assigned
-- observers, or the live pollers of this pool), how many of them have recorded it, and the
-- pool's last committed round (-1: none, or no pool). The round is complete when
-- reported == expected; it needs no commit when committed is not below it (another observer,
-- or a deadline, got there first). An error reply
-- "<key> is a <type>, not a <type>" if a key has the wrong type (checked by
-- check_key_types before anything is written).
local wrong = check_key_types({'hash', 'zset', 'hash', 'hash'})
if wrong then
  return wrong
end
local now = now_ms()
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. now)
local n = tonumber(ARGV[5])
if n > 0 then
  -- One HSET per 500 nodes rather than one per node (unpack's stack is bounded).
  local chunk = {}
  for i = 0, n - 1 do
    chunk[#chunk + 1] = ARGV[6 + 2 * i]
    chunk[#chunk + 1] = ARGV[7 + 2 * i]
    if #chunk >= 1000 or i == n - 1 then
      redis.call('HSET', KEYS[3], unpack(chunk))
      chunk = {}
    end
  end
  redis.call('PEXPIRE', KEYS[3], ARGV[3])
end
local m = tonumber(ARGV[6 + 2 * n] or '0')
local live = {}
if m > 0 then
  for i = 1, m do
    live[i] = ARGV[6 + 2 * n + i]
  end
else
  live = redis.call('ZRANGEBYSCORE', KEYS[2], now, '+inf')
end
local reported = 0
for _, id in ipairs(live) do
  reported = reported + redis.call('HEXISTS', KEYS[1], id)
end
local committed = tonumber(redis.call('HGET', KEYS[4], 'round') or '-1') or -1
return {#live, reported, committed}
