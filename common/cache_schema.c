#include "cache_schema.h"

#include "err.h"
#include "mem.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

/*
 * The store: read the old record, write the new one and move the tenant's
 * counts by the difference, in one script so that two workers storing the
 * same tenant cannot interleave between the read and the adjustment. See
 * cache_schema.h for the keys and arguments; status letters are P F E S and
 * '-'.
 */
const char cg_cache_store_lua[] =
    "local P, T, S = ARGV[1], ARGV[2], ARGV[3]\n"
    "local scan, ttl = tonumber(ARGV[4]), tonumber(ARGV[5])\n"
    "local job, codes, n = ARGV[6], ARGV[9], tonumber(ARGV[10])\n"
    "local names = { P = 'PASS', F = 'FAIL', E = 'ERROR', S = 'SKIPPED' }\n"
    "local letter = { PASS = 'P', FAIL = 'F', ERROR = 'E', SKIPPED = 'S' }\n"
    "local rules = {}\n"
    "for i = 1, n do rules[i] = ARGV[10 + i] end\n"
    "local function adjust(counts, old, new)\n"
    "  for i = 1, n do\n"
    "    local o, w = string.sub(old, i, i), string.sub(new, i, i)\n"
    "    if o ~= w then\n"
    "      if names[o] then\n"
    "        redis.call('HINCRBY', counts, rules[i] .. ':' .. names[o], -1)\n"
    "      end\n"
    "      if names[w] then\n"
    "        redis.call('HINCRBY', counts, rules[i] .. ':' .. names[w], 1)\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "local function forget(t, s)\n"
    "  local tk = P .. 'tenant:' .. t\n"
    "  local old = redis.call('HGET', tk .. ':last', s)\n"
    "  if old then adjust(tk .. ':counts', old, '') end\n"
    "  redis.call('HDEL', tk .. ':last', s)\n"
    "  redis.call('SREM', tk .. ':failing', s)\n"
    "  redis.call('SREM', tk .. ':changed', s)\n"
    "  redis.call('ZREM', tk .. ':scanned', s)\n"
    "end\n"
    "local fields = { 'tenant', 'scan_ms', 'job_id' }\n"
    "for i = 1, n do\n"
    "  fields[3 + i] = 'status:' .. rules[i]\n"
    "  fields[3 + n + i] = 'previous:' .. rules[i]\n"
    "end\n"
    "local cur = redis.call('HMGET', KEYS[1], unpack(fields))\n"
    "local function letters(from)\n"
    "  local s = ''\n"
    "  for i = 1, n do s = s .. (letter[cur[from + i]] or '-') end\n"
    "  return s\n"
    "end\n"
    "if cur[2] and tonumber(cur[2]) > scan then return 0 end\n"
    "if cur[1] and cur[1] ~= T then forget(cur[1], S) end\n"
    /* A redelivered job keeps the statuses from before its first attempt,
     * or every transition would be lost on redelivery. */
    "local prev\n"
    "if cur[1] and cur[3] == job then prev = letters(3 + n)\n"
    "elseif cur[1] then prev = letters(3)\n"
    "else prev = redis.call('HGET', KEYS[2], S) or string.rep('-', n) end\n"
    "adjust(KEYS[3], redis.call('HGET', KEYS[2], S) or '', codes)\n"
    "redis.call('HSET', KEYS[2], S, codes)\n"
    "redis.call('DEL', KEYS[1])\n"
    "local h = { 'tenant', T, 'job_id', job, 'scan_ms', ARGV[4],\n"
    "            'hash', ARGV[7], 'api_version', ARGV[8] }\n"
    "local changed = false\n"
    "for i = 1, n do\n"
    "  local c, p = string.sub(codes, i, i), string.sub(prev, i, i)\n"
    "  if names[c] then\n"
    "    h[#h + 1] = 'status:' .. rules[i]; h[#h + 1] = names[c]\n"
    "  end\n"
    "  if names[p] then\n"
    "    h[#h + 1] = 'previous:' .. rules[i]; h[#h + 1] = names[p]\n"
    "    if names[c] and p ~= c then changed = true end\n"
    "  end\n"
    "  local f = ARGV[10 + n + i]\n"
    "  if f ~= '' then h[#h + 1] = 'finding:' .. rules[i]; h[#h + 1] = f end\n"
    "end\n"
    "redis.call('HSET', KEYS[1], unpack(h))\n"
    "redis.call('EXPIRE', KEYS[1], ttl)\n"
    "if changed then redis.call('SADD', KEYS[7], S)\n"
    "else redis.call('SREM', KEYS[7], S) end\n"
    "if string.find(codes, 'F', 1, true) then redis.call('SADD', KEYS[4], S)\n"
    "else redis.call('SREM', KEYS[4], S) end\n"
    "redis.call('SADD', KEYS[5], S)\n"
    "redis.call('ZADD', KEYS[8], scan, S)\n"
    /* Subscriptions not scanned within the TTL leave the counts with their
     * records, a bounded number per store. */
    "local horizon = scan - ttl * 1000\n"
    "local gone = redis.call('ZRANGEBYSCORE', KEYS[8], '-inf',\n"
    "                        '(' .. horizon, 'LIMIT', 0, 100)\n"
    "for _, s in ipairs(gone) do\n"
    "  forget(T, s)\n"
    "  redis.call('DEL', P .. 'sub:' .. s)\n"
    "end\n"
    "local ts = tonumber(redis.call('ZSCORE', KEYS[6], T) or '0')\n"
    "if scan > ts then redis.call('ZADD', KEYS[6], scan, T) end\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', '(' .. horizon)\n"
    "for _, k in ipairs({ KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[7],\n"
    "                     KEYS[8] }) do\n"
    "  redis.call('EXPIRE', k, ttl)\n"
    "end\n"
    "return 1\n";

/* Release only a lock we still hold: after an expiry another owner may
 * have taken it, and a plain DEL would remove theirs. */
const char cg_cache_unlock_lua[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
    "  return redis.call('DEL', KEYS[1])\n"
    "end\n"
    "return 0\n";

void cg_cache_script_sha(const char *script, char out[CG_CACHE_SHA_HEX])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_Digest(script, strlen(script), md, &n, EVP_sha1(), NULL);
    for (unsigned int i = 0; i < n && i < 20; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

int cg_cache_id_norm(const char *id, char out[CG_CACHE_ID_MAX + 1])
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > CG_CACHE_ID_MAX)
        return CG_EINVAL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)id[i];
        if (!isalnum(c) && c != '.' && c != '_' && c != ':' && c != '-')
            return CG_EINVAL;
        out[i] = (char)tolower(c);
    }
    out[n] = '\0';
    return 0;
}

char cg_cache_status_letter(enum cg_status s)
{
    switch (s) {
    case CG_STATUS_PASS:
        return 'P';
    case CG_STATUS_FAIL:
        return 'F';
    case CG_STATUS_ERROR:
        return 'E';
    case CG_STATUS_SKIPPED:
        return 'S';
    default:
        return '-';
    }
}

int cg_cache_prefix_check(const char *prefix, char *errbuf, size_t errsz)
{
    if (strlen(prefix) > CG_CACHE_PREFIX_MAX)
        return cg_err_set(errbuf, errsz, CG_ECONF,
                          "redis.prefix is longer than %d bytes",
                          CG_CACHE_PREFIX_MAX);
    return 0;
}
