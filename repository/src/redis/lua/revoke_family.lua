-- Revoke one family (a session) of a subject.
-- KEYS: index; ARGV: token key prefix of the subject, family.
-- Returns the number of tokens deleted.
local revoked = revoke_family(KEYS[1], ARGV[1], ARGV[2])
touch(KEYS[1])
return revoked
