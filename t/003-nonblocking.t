# The event loop never waits on Redis: a miss is suspended while hits on the same worker are
# answered at once; a frozen source ends the miss with 503 after dynpage_redis_timeout.
use t::TestDynpage;

# A Redis that TEST 5 can stop (the suite's own Redis can only be frozen).
sources(redis => { down => [] });

plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: with Redis frozen, a cached page is answered at once while a miss waits; the miss ends with 503 after the timeout
--- http_config
dynpage_redis_timeout 300ms;
--- redis
HSET dynpage:page:/p/cached 1000 '{"template":"cached"}'
--- config
dynpage_cache_ttl 60s;
location /p/ { dynpage_page $uri; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- timeout: 10
--- pipelined_requests eval
["GET /p/cached", "GET /ctl/freeze", "GET /ctl/race?slow=/p/missing&fast=/p/cached&limit=300", "GET /ctl/thaw"]
--- response_body_like eval
["^cached\$", "frozen", "^fast=200 slow=503 fast-first slow_ms=([3-9]\\d\\d|[1-9]\\d{3}) ", "thawed"]
--- error_log eval
qr/dynpage: redis "redis:\/\/127.0.0.1:\d+" failed while fetching page "\/p\/missing": timed out/



=== TEST 2: a page fetched from Redis is then served from the worker cache
--- redis
HSET dynpage:page:/a 1000 '{"template":"a"}'
--- config
dynpage_cache_ttl 60s;
dynpage_debug_header on;
location / { dynpage_page $uri; }
--- request eval
["GET /a", "GET /a"]
--- response_headers eval
["X-Dynpage: variant=production; version=1000; source=redis",
 "X-Dynpage: variant=production; version=1000; source=l1"]



=== TEST 3: dynpage_cache_ttl 0 resolves on every request: a new version is seen at once
--- redis
HSET dynpage:page:/a 1000 '{"template":"one"}'
--- config
dynpage_cache_ttl 0;
location / { dynpage_page $uri; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- request eval
["GET /a", "POST /ctl/redis\nHSET dynpage:page:/a 2000 '{\"template\":\"two\"}'", "GET /a"]
--- response_body_like eval
["^one\$", "^1\n\$", "^two\$"]



=== TEST 4: within the TTL the resolved version is kept; a not-found answer is cached too
--- redis
HSET dynpage:page:/a 1000 '{"template":"one"}'
--- config
dynpage_cache_ttl 60s;
location / { dynpage_page $uri; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- request eval
["GET /a", "GET /b", "POST /ctl/redis\nHSET dynpage:page:/a 2000 '{\"template\":\"two\"}'\nHSET dynpage:page:/b 1000 '{\"template\":\"b\"}'", "GET /a", "GET /b"]
--- error_code eval
[200, 404, 200, 200, 404]
--- response_body_like eval
["^one\$", "404 Not Found", "^1\n1\n\$", "^one\$", "404 Not Found"]



=== TEST 5: Redis down: the miss is a 503 with one log line, a cached page still works
--- http_config
dynpage_redis redis://127.0.0.1:$TEST_NGINX_REDIS_DOWN_PORT;
--- redis_down
HSET dynpage:page:/cached 1000 '{"template":"cached"}'
--- config
dynpage_cache_ttl 60s;
location / { dynpage_page $uri; }
location /src/ { proxy_pass http://127.0.0.1:$TEST_NGINX_SOURCES_PORT/; }
--- pipelined_requests eval
["GET /cached", "GET /src/stop/down", "GET /a", "GET /cached"]
--- error_code eval
[200, 200, 503, 200]
--- response_body_like eval
["^cached\$", "^stop down\n\$", "503 Service", "^cached\$"]
--- grep_error_log eval
qr/dynpage: redis "redis:\/\/127.0.0.1:\d+" failed while fetching [^:]*:/
--- grep_error_log_out eval
qr/\Adynpage: redis "redis:\/\/127.0.0.1:\d+" failed while fetching page "\/a":\n\z/
