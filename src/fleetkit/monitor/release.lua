-- Release the cleanup lease if (and only if) owner still holds it. KEYS[1] lease; ARGV: owner
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
