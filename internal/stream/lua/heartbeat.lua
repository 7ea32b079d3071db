-- Heartbeat records that a gateway instance is alive at the Redis server's
-- own clock (milliseconds) and returns that time. Writing and judging
-- liveness by the same clock makes the reaper immune to skew between hosts.
--
-- KEYS[1] the gateways' sorted set; ARGV[1] the instance id.
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], ms, ARGV[1])
return ms
