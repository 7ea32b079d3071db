-- Clock returns the Redis server's time in milliseconds, read on the node
-- that holds the canvas's keys. It is the clock Heartbeat writes by, so the
-- reaper judges liveness by the very clock that stamped it: on a Redis
-- Cluster a bare TIME goes to any node, whose clock may be another host's.
--
-- KEYS[1] the gateways' sorted set (not read: it routes the call to the
-- node of the canvas's slot).
local t = redis.call('TIME')
return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
