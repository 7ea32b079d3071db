-- Publish appends entries only if the caller's lease term is current, the
-- epoch is still the caller's and the tail is where the caller believes it
-- is, all or nothing. It makes a sequencer that lost its lease unable to
-- interleave with its successor, and a retried batch unable to land twice.
--
-- KEYS[1] stream, KEYS[2] epoch key, KEYS[3] term key.
-- ARGV: term, epoch, expected tail seq, maxlen, then per entry: id, field
-- count, fields...
if not fence(KEYS[3], ARGV[1]) then return redis.error_reply('FENCED') end
local cur = redis.call('GET', KEYS[2])
if cur ~= ARGV[2] then return redis.error_reply('EPOCHGONE') end
local tail = 0
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last > 0 then tail = tonumber(string.match(last[1][1], '^(%d+)')) end
if tail ~= tonumber(ARGV[3]) then return redis.error_reply('TAIL ' .. tail) end
local i = 5
local n = 0
while i <= #ARGV do
  local id = ARGV[i]
  local nf = tonumber(ARGV[i+1])
  local args = {'XADD', KEYS[1], 'MAXLEN', '~', ARGV[4], id}
  for j = 1, nf do args[#args+1] = ARGV[i+1+j] end
  redis.call(unpack(args))
  i = i + 2 + nf
  n = n + 1
end
return n
