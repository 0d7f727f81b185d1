-- dynpage's read of a document, or of one field, in one round trip (core/src/store/scripted.rs).
-- It only reads. Nothing here decides what is served: the module chooses the version again
-- from what this returns, and reads anything else it needs the ordinary way.
--
-- Reply {0}: not here (a document or entry over the limits, a key of another type, anything
-- unusual): the module reads the item the ordinary way, which says why it fails.
--
-- ARGV[1] = "field": KEYS[1] the document, ARGV[2] the field, ARGV[3] the largest value read.
--   Reply {1, value or nil}.
-- ARGV[1] = "doc": KEYS[1] the document; KEYS[2], KEYS[3] the rollback and gray hashes (only
--   where they may be read with it: not across a cluster's slots). ARGV[2] the document's name
--   in those hashes, ARGV[3] now (ms), ARGV[4] most fields, ARGV[5] longest field name,
--   ARGV[6] longest rollback / gray entry, ARGV[7] largest value read, ARGV[8] greatest version,
--   ARGV[9] "0" when no value is wanted with the meta (the module holds its versions).
--   Reply {1, pin, gray, field names, guessed field, its value, abVersion's value}: the guess
--   is the production version the rules choose by the module's clock (the pin if it names a
--   version, else the greatest version <= now); abVersion's value comes while the gray share
--   is over 0. Absent things are nil.

local function read(...)
  local r = redis.pcall(...)
  if type(r) == 'table' and r.err then
    return nil
  end
  return r
end

local doc = KEYS[1]

local function value_of(field, largest)
  local n = read('HSTRLEN', doc, field)
  if n == nil or n == 0 or n > largest then
    return false
  end
  return read('HGET', doc, field) or false
end

if ARGV[1] == 'field' then
  local n = read('HSTRLEN', doc, ARGV[2])
  if n == nil or n > tonumber(ARGV[3]) then
    return {0}
  end
  local v = read('HGET', doc, ARGV[2])
  if v == nil then
    return {0}
  end
  return {1, v}
end

local now, most, longest = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local longest_entry, largest, greatest = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local n = read('HLEN', doc)
if n == nil or n > most then
  return {0}
end
local pin, gray = false, false
if #KEYS == 3 then
  pin = read('HGET', KEYS[2], ARGV[2])
  gray = read('HGET', KEYS[3], ARGV[2])
  if pin == nil or gray == nil then
    return {0}
  end
  if (pin and #pin > longest_entry) or (gray and #gray > longest_entry) then
    return {0}
  end
end
if n == 0 then
  return {1, pin, gray, {}, false, false, false}
end
local names = read('HKEYS', doc)
if names == nil then
  return {0}
end

local function version(s)
  if #s > 15 or not (s == '0' or string.find(s, '^[1-9]%d*$')) then
    return nil
  end
  local v = tonumber(s)
  if v > greatest then
    return nil
  end
  return v
end

local guess, best, has_ab = false, -1, false
for _, f in ipairs(names) do
  if #f > longest then
    return {0}
  end
  local v = version(f)
  if v ~= nil and v <= now and v > best then
    best, guess = v, f
  end
  if f == 'abVersion' then
    has_ab = true
  end
end
if pin and version(pin) ~= nil and read('HEXISTS', doc, pin) == 1 then
  guess = pin
end
local wanted = ARGV[9] ~= '0'
local value = false
if guess and wanted then
  value = value_of(guess, largest)
end
local ab = false
if wanted and has_ab and gray and (tonumber(gray) or 0) > 0 then
  ab = value_of('abVersion', largest)
end
return {1, pin, gray, names, guess, value, ab}
