-- ClaimTerm records the caller's lease term, so that from now on every
-- mutation by an older term is refused.
--
-- KEYS[3] term key (KEYS[1], KEYS[2] unused, passed for the cluster slot);
-- ARGV[1] term.
if not fence(KEYS[3], ARGV[1]) then return redis.error_reply('FENCED') end
return 1
