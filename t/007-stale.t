# When Redis fails: the last good inputs are served for dynpage_stale_ttl (source=stale), a
# failed source is skipped for a while instead of costing every request its timeout, and it is
# used again by itself once it answers.
use t::TestDynpage;

plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: Redis frozen after the TTL: the cached page is served stale, then fresh again once Redis is back
--- http_config
dynpage_redis_timeout 200ms;
--- redis
HSET dynpage:page:/a 1000 '{"template":"one"}'
--- config
dynpage_cache_ttl 100ms;
dynpage_debug_header on;
location / { dynpage_page $uri; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- timeout: 10
--- pipelined_requests eval
["GET /a", "GET /ctl/freeze", "GET /ctl/sleep/300", "GET /a", "GET /a", "GET /ctl/thaw",
 "GET /ctl/sleep/1200", "GET /a"]
--- response_body_like eval
["^one\$", "frozen", "slept", "^one\$", "^one\$", "thawed", "slept", "^one\$"]
--- response_headers eval
["X-Dynpage: variant=production; version=1000; source=redis", "", "",
 "X-Dynpage: variant=production; version=1000; source=stale",
 "X-Dynpage: variant=production; version=1000; source=stale", "", "",
 "X-Dynpage: variant=production; version=1000; source=redis"]
--- error_log eval
qr/redis "redis:\/\/127.0.0.1:\d+" failed while fetching page "\/a": timed out; skipping it for 1000ms/



=== TEST 2: while the source is skipped, a miss with nothing stale is a 503 at once, not after the timeout
--- http_config
dynpage_redis_timeout 400ms;
--- redis
HSET dynpage:page:/p/cached 1000 '{"template":"cached"}'
--- config
dynpage_cache_ttl 100ms;
location /p/ { dynpage_page $uri; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- request eval
["GET /p/cached", "GET /ctl/freeze", "GET /p/first-miss", "GET /ctl/race?slow=/p/second-miss&fast=/p/cached&limit=400", "GET /ctl/thaw"]
--- error_code eval
[200, 200, 503, 200, 200]
--- response_body_like eval
["^cached\$", "frozen", "503 Service", "^fast=200 slow=503 fast-first slow_ms=(\\d|[1-9]\\d|[1-2]\\d\\d) ", "thawed"]



=== TEST 3: past dynpage_stale_ttl nothing stale is served: 503
--- http_config
dynpage_redis_timeout 200ms;
--- redis
HSET dynpage:page:/a 1000 '{"template":"one"}'
--- config
dynpage_cache_ttl 100ms;
dynpage_stale_ttl 300ms;
location / { dynpage_page $uri; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- request eval
["GET /a", "GET /ctl/freeze", "GET /ctl/sleep/500", "GET /a", "GET /ctl/thaw"]
--- error_code eval
[200, 200, 200, 503, 200]



=== TEST 4: Redis down from the start: a miss is a 503, with one line naming the source
--- http_config
dynpage_redis redis://127.0.0.1:1/;
--- config
location / { dynpage_page $uri; }
--- request eval
["GET /a", "GET /b"]
--- error_code eval
[503, 503]
--- grep_error_log eval
qr/dynpage: redis "[^"]*" failed while fetching .*?; skipping it for \d+ms/
--- grep_error_log_out eval
qr/\Adynpage: redis "redis:\/\/127.0.0.1:1\/" failed while fetching page "\/a": [^\n]*; skipping it for 1000ms\n\z/



=== TEST 5: dynpage_stale_ttl needs a time
--- config
location / { dynpage_page $uri; dynpage_stale_ttl forever; }
--- must_die
--- suppress_stderr
--- error_log eval
qr{\[emerg\] .*\Q"dynpage_stale_ttl" directive has invalid value "forever"\E}



=== TEST 6: 1,000 distinct missing keys, asked twice within the TTL, cost one meta fetch each (INFO commandstats: one HLEN each, in the read script or not)
--- config
dynpage_cache_ttl 60s;
location /m/ { dynpage_page $uri; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- timeout: 30
--- request eval
["POST /ctl/redis\nCONFIG RESETSTAT", "GET /ctl/burst?prefix=/m/&count=1000&rounds=2",
 "POST /ctl/redis\nINFO commandstats"]
--- response_body_like eval
["^OK\n\$", "^404=2000\n\$", "cmdstat_hlen:calls=1000,"]
