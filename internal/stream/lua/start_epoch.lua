-- StartEpoch empties the stream and makes ARGV[2] its epoch, fenced by the
-- lease term. Idempotent: when the epoch is already ARGV[2] nothing changes
-- (a relay resuming an epoch change must not wipe what its own epoch holds,
-- nor make the gateways resync twice).
--
-- KEYS[1] stream, KEYS[2] epoch key, KEYS[3] term key; ARGV: term, epoch.
if not fence(KEYS[3], ARGV[1]) then return redis.error_reply('FENCED') end
if redis.call('GET', KEYS[2]) == ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], ARGV[2])
return 1
