-- JoinGroup: make sure a gateway's consumer group exists on the stream of
-- the current epoch, choosing where it starts in the same step that reads
-- the epoch, so that no epoch can start in between (StartEpoch deletes the
-- stream and sets the epoch key in one script too). A group created at a
-- position of one epoch on another epoch's stream would skip that epoch's
-- first entries without a gap anyone could see (issue 28 item 1).
--
--   - The caller holds a position in the current epoch: the group starts
--     after it (it was reaped; the caller broadcast up to there). An
--     existing group is kept.
--   - Any other epoch, or no position: the group starts at the stream's
--     start. An existing group is kept when the caller holds no position
--     (a restarted instance: its pending entries are its own); when the
--     caller holds a position of another epoch, the group's last-delivered
--     id cannot be this epoch's, so it is set back to the start.
--
-- Not fenced: the gateways are readers; their groups are theirs.
--
-- KEYS[1] stream, KEYS[2] epoch key; ARGV: group, '1' if the caller holds
-- a position (else '0'), that position's epoch, its entry id ('0': none).
-- Returns {epoch ('' when there is none), 'created' | 'kept' | 'reset'}.
local epoch = redis.call('GET', KEYS[2]) or ''
local held = ARGV[2] == '1'
local same = held and epoch == ARGV[3]
local start = '0'
if same then start = ARGV[4] end
local r = redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], start, 'MKSTREAM')
if type(r) == 'table' and r.err then
  if string.sub(r.err, 1, 9) ~= 'BUSYGROUP' then return r end
  if held and not same then
    redis.call('XGROUP', 'SETID', KEYS[1], ARGV[1], '0')
    return {epoch, 'reset'}
  end
  return {epoch, 'kept'}
end
return {epoch, 'created'}
