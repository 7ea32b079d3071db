-- Fence: refuse a sequencer whose lease term is older than the newest term
-- Redis has seen, and record the caller's term when it is newer. Every
-- script that mutates the stream starts with these lines, so a deposed
-- leader that wakes after its successor touched Redis can change nothing.
--
-- KEYS[3] term key; ARGV[1] the caller's term.
local function fence(termKey, term)
  local seen = tonumber(redis.call('GET', termKey) or '0')
  term = tonumber(term)
  if term < seen then return false end
  if term > seen then redis.call('SET', termKey, term) end
  return true
end
