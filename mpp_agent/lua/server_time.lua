-- server_time.lua: not a script of its own. The store prepends it to every script, as
-- check_key_types.lua: the clock of the Redis that runs the script (on a Redis Cluster the
-- shard holding the pool), so that every time a pool's keys hold comes from that one clock,
-- whichever poller or mpp-admin writes (TIME is allowed in scripts: Redis 7 replicates their
-- effects, not the script).
--
-- now_ms(): Redis time in whole milliseconds.
-- stamped(event): an event as the store passes it (a JSON object without "at") with "at" =
-- Redis time in seconds (to the microsecond) added.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function stamped(event)
  local t = redis.call('TIME')
  local at = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
  return string.sub(event, 1, -2) .. ',"at":' .. at .. '}'
end

