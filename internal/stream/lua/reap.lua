-- Reap: forget a gateway instance whose heartbeat is older than the TTL
-- (or missing), and destroy its consumer group, but only if that still
-- holds now. The reaper reads the heartbeats and the groups first; the
-- instance may beat (and create its group) between that read and this
-- script, and must then keep both (issue 28 item 3.1). Judged by the
-- Redis server's clock, like the heartbeat itself (lua/heartbeat.lua).
--
-- KEYS[1] the gateways' sorted set, KEYS[2] stream; ARGV[1] the instance
-- id, ARGV[2] its group ('' : forget the heartbeat only), ARGV[3] the TTL
-- in milliseconds.
-- Returns -1 when the instance is alive (nothing changed), else the
-- number of groups destroyed (0 or 1).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) >= now - tonumber(ARGV[3]) then return -1 end
local n = 0
if ARGV[2] ~= '' and redis.call('EXISTS', KEYS[2]) == 1 then
  n = redis.call('XGROUP', 'DESTROY', KEYS[2], ARGV[2])
end
if score then redis.call('ZREM', KEYS[1], ARGV[1]) end
return n
