# P events cost what they touch: an event finds its document's or data key's entries through an
# index, an unknown key costs a hash lookup, and a rollback/gray change or a resync expires
# every meta at once without visiting them. (On the code before the index, each message parsed
# every cache key: 20,000 entries and 50,000 messages held the worker for many seconds.)
use t::TestDynpage;

plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: 50,000 events with 20,000 cached entries: a cached page is still answered at once, and events still work
--- redis
HSET dynpage:page:/hot 1000 '{"template":"hot"}'
--- config
dynpage_cache_ttl 60s;
location / { dynpage_page $uri; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; proxy_read_timeout 120s; }
--- timeout: 120
--- request eval
["GET /hot",
 "GET /ctl/burst?prefix=/m/&count=20000&rounds=1",
 "POST /ctl/redis\nEVAL \"for i=1,50000 do redis.call('PUBLISH', KEYS[1], 'dynpage:page:/m/' .. (i % 25000)) end return 1\" 1 dynpage:events",
 "GET /ctl/race?slow=/hot&fast=/hot&limit=300",
 "POST /ctl/redis\nHSET dynpage:page:/hot 2000 '{\"template\":\"hot again\"}'\nPUBLISH dynpage:events dynpage:page:/hot",
 "GET /ctl/sleep/200",
 "GET /hot"]
--- response_body_like eval
["^hot\$", "^404=20000\n\$", "^1\n\$", "^fast=200 slow=200 fast-first ", "^1\n", "^slept\n\$", "^hot again\$"]
--- no_error_log
[error]



=== TEST 2: a rollback change expires every meta at once: the pinned version is served on the next request
--- redis
HSET dynpage:page:/a 1000 '{"template":"one"}'
HSET dynpage:page:/a 2000 '{"template":"two"}'
HSET dynpage:page:/b 1000 '{"template":"b one"}'
HSET dynpage:page:/b 2000 '{"template":"b two"}'
--- config
dynpage_cache_ttl 60s;
location / { dynpage_page $uri; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- request eval
["GET /a", "GET /b",
 "POST /ctl/redis\nHSET dynpage:rollback page:/a 1000\nHSET dynpage:rollback page:/b 1000\nPUBLISH dynpage:events dynpage:rollback",
 "GET /ctl/sleep/200", "GET /a", "GET /b"]
--- response_body_like eval
["^two\$", "^b two\$", "^1\n1\n\\d+\n", "^slept\n\$", "^one\$", "^b one\$"]
