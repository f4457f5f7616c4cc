-- Move one pending entry to the dead-letter stream: XADD there first, then XACK, atomically
-- (both keys share the shard's hash tag). Returns 0 when the entry is no longer in the stream.
-- KEYS[1] stream, KEYS[2] dead-letter stream; ARGV[1] group, ARGV[2] entry id,
-- ARGV[3] delivery count, ARGV[4] reason, ARGV[5] dead-letter MAXLEN (approximate)
local entry = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
local fields = {'origin_id', ARGV[2], 'deliveries', ARGV[3], 'reason', ARGV[4]}
if entry[1] then
  for _, v in ipairs(entry[1][2]) do table.insert(fields, v) end
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', unpack(fields))
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if entry[1] then return 1 end
return 0
