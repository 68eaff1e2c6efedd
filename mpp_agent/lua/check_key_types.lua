-- check_key_types.lua: not a script of its own. The store prepends it to every script, which
-- calls it before writing anything, so that a key of the wrong type refuses the whole script
-- instead of failing it half-way (Lua does not roll back what it already wrote).
--
-- check_key_types(types): types[i] is the Redis type KEYS[i] must have (a missing key is
-- fine; false: any type, e.g. a key the script only deletes). Returns nil, or an error reply
-- "<key> is a <type>, not a <type>" to return at once.
local function check_key_types(types)
  for i, want in ipairs(types) do
    if want and KEYS[i] then -- an optional key the caller did not pass is not checked
      local t = redis.call('TYPE', KEYS[i]).ok
      if t ~= want and t ~= 'none' then
        return redis.error_reply(KEYS[i] .. ' is a ' .. t .. ', not a ' .. want)
      end
    end
  end
  return nil
end

