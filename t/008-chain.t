# The source chain: the local replica, then the primary, then the CMS; what happens when each
# fails, freezes or comes back. Each block gets its own running, flushed redis-servers and an
# answering stub CMS (see t/TestDynpage.pm).
use t::TestDynpage;

sources(redis => { replica => [], primary => ['--requirepass', 's3cret'] }, cms => 1);

plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: the replica answers first; a miss there goes on to the primary (password, db 3); not found at both is a 404
--- http_config
dynpage_redis redis://127.0.0.1:$TEST_NGINX_REDIS_REPLICA_PORT;
dynpage_redis redis://default:s3cret@127.0.0.1:$TEST_NGINX_REDIS_PRIMARY_PORT/3;
dynpage_cms http://127.0.0.1:$TEST_NGINX_CMS_PORT/snapshot;
--- redis_replica
HSET dynpage:page:/a 1000 '{"template":"replica a"}'
--- redis_primary
SELECT 3
HSET dynpage:page:/a 1000 '{"template":"primary a"}'
HSET dynpage:page:/b 1000 '{"template":"primary b"}'
--- config
dynpage_debug_header on;
location / { dynpage_page $uri; }
location /src/ { proxy_pass http://127.0.0.1:$TEST_NGINX_SOURCES_PORT/; }
--- request eval
["GET /a", "GET /b", "GET /c", "GET /src/cms-count"]
--- error_code eval
[200, 200, 404, 200]
--- response_body_like eval
["^replica a\$", "^primary b\$", "404 Not Found", "^cms-count=0\n\$"]
--- response_headers eval
["X-Dynpage: variant=production; version=1000; source=redis",
 "X-Dynpage: variant=production; version=1000; source=redis", "", ""]
--- no_error_log
[error]



=== TEST 2: the replica down: the primary answers; one line names the replica (no password in logs)
--- http_config
dynpage_redis redis://127.0.0.1:$TEST_NGINX_REDIS_REPLICA_PORT;
dynpage_redis redis://default:s3cret@127.0.0.1:$TEST_NGINX_REDIS_PRIMARY_PORT/3;
--- redis_primary
SELECT 3
HSET dynpage:page:/a 1000 '{"template":"primary a"}'
HSET dynpage:page:/b 1000 '{"template":"primary b"}'
--- config
location / { dynpage_page $uri; }
location /src/ { proxy_pass http://127.0.0.1:$TEST_NGINX_SOURCES_PORT/; }
--- pipelined_requests eval
["GET /src/stop/replica", "GET /a", "GET /b"]
--- response_body_like eval
["^stop replica\n\$", "^primary a\$", "^primary b\$"]
--- grep_error_log eval
qr/\[\w+\] .*?dynpage: (?:redis|cms) "[^"]*" failed while fetching .*?; skipping it for \d+ms/
--- grep_error_log_out eval
qr/\A\[error\] [^\n]*dynpage: redis "redis:\/\/127.0.0.1:\d+" failed while fetching page "\/a": [^\n]*; skipping it for 1000ms\n\z/
--- no_error_log
s3cret



=== TEST 3: both Redis down: the CMS answers (source=cms); its 404 is a 404
--- http_config
dynpage_redis redis://127.0.0.1:$TEST_NGINX_REDIS_REPLICA_PORT;
dynpage_redis redis://default:s3cret@127.0.0.1:$TEST_NGINX_REDIS_PRIMARY_PORT/3;
dynpage_cms http://127.0.0.1:$TEST_NGINX_CMS_PORT/snapshot?site=1;
--- config
dynpage_debug_header on;
location / { dynpage_page $uri; }
location /src/ { proxy_pass http://127.0.0.1:$TEST_NGINX_SOURCES_PORT/; }
--- pipelined_requests eval
["GET /src/stop/replica", "GET /src/stop/primary", "GET /from/cms", "GET /missing/page",
 "GET /src/cms-count"]
--- error_code eval
[200, 200, 200, 404, 200]
--- response_body_like eval
["^stop replica\n\$", "^stop primary\n\$", "^cms:/from/cms\$", "404 Not Found", "^cms-count=2\n\$"]
--- response_headers_like eval
["", "", "X-Dynpage: variant=production; version=\\d+; source=cms", "", ""]
--- error_log eval
[qr/redis "redis:\/\/default:\*\*\*\@127.0.0.1:\d+\/3" failed while fetching page "\/from\/cms"/,
 qr/redis "redis:\/\/127.0.0.1:\d+" failed while fetching page "\/from\/cms"/]



=== TEST 4: everything down, the page cached: it is served stale; the CMS answering garbage is logged once
--- http_config
dynpage_redis redis://127.0.0.1:$TEST_NGINX_REDIS_REPLICA_PORT;
dynpage_redis redis://default:s3cret@127.0.0.1:$TEST_NGINX_REDIS_PRIMARY_PORT/3;
dynpage_cms http://127.0.0.1:$TEST_NGINX_CMS_PORT/snapshot;
--- redis_replica
HSET dynpage:page:/a 1000 '{"template":"replica a"}'
--- config
dynpage_cache_ttl 100ms;
dynpage_debug_header on;
location / { dynpage_page $uri; }
location /src/ { proxy_pass http://127.0.0.1:$TEST_NGINX_SOURCES_PORT/; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- pipelined_requests eval
["GET /a", "GET /src/stop/replica", "GET /src/stop/primary", "GET /src/cms/garbage",
 "GET /ctl/sleep/200", "GET /a", "GET /a"]
--- response_body_like eval
["^replica a\$", "^stop replica\n\$", "^stop primary\n\$", "^cms garbage\n\$", "^slept\n\$", "^replica a\$",
 "^replica a\$"]
--- response_headers eval
["X-Dynpage: variant=production; version=1000; source=redis", "", "", "", "",
 "X-Dynpage: variant=production; version=1000; source=stale",
 "X-Dynpage: variant=production; version=1000; source=stale"]
--- grep_error_log eval
qr/cms "[^"]*" failed while fetching .*?(?=; skipping)/
--- grep_error_log_out eval
qr/\Acms "http:\/\/127.0.0.1:\d+\/snapshot" failed while fetching page "\/a": answered something that is not a snapshot[^\n]*\n\z/



=== TEST 5: everything down and nothing cached: 503; a CMS error status or a hanging CMS is a 503 within the timeout
--- http_config
dynpage_redis redis://127.0.0.1:$TEST_NGINX_REDIS_REPLICA_PORT;
dynpage_redis redis://default:s3cret@127.0.0.1:$TEST_NGINX_REDIS_PRIMARY_PORT/3;
dynpage_redis_timeout 300ms;
dynpage_cms http://127.0.0.1:$TEST_NGINX_CMS_PORT/snapshot;
--- config
location / { dynpage_page $uri; }
location /src/ { proxy_pass http://127.0.0.1:$TEST_NGINX_SOURCES_PORT/; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- timeout: 10
--- pipelined_requests eval
["GET /src/stop/replica", "GET /src/stop/primary", "GET /src/cms/error", "GET /x",
 "GET /ctl/sleep/1100", "GET /src/cms/hang", "GET /ctl/race?slow=/y&fast=/src/cms-count&limit=300"]
--- error_code eval
[200, 200, 200, 503, 200, 200, 200]
--- response_body_like eval
["^stop replica\n\$", "^stop primary\n\$", "^cms error\n\$", "503 Service", "^slept\n\$", "^cms hang\n\$",
 "^fast=200 slow=503 fast-first slow_ms=([3-6]\\d\\d) "]
--- error_log eval
[qr/cms "http:\/\/127.0.0.1:\d+\/snapshot" failed while fetching page "\/x": answered status 500/,
 qr/cms "http:\/\/127.0.0.1:\d+\/snapshot" failed while fetching page "\/y": timed out/]



=== TEST 6: a frozen replica: hits are not held up, a miss ends within the timeout from the primary, then the replica is skipped
--- http_config
dynpage_redis redis://127.0.0.1:$TEST_NGINX_REDIS_REPLICA_PORT;
dynpage_redis redis://default:s3cret@127.0.0.1:$TEST_NGINX_REDIS_PRIMARY_PORT/3;
dynpage_redis_timeout 300ms;
--- redis_replica
HSET dynpage:page:/cached 1000 '{"template":"cached"}'
--- redis_primary
SELECT 3
HSET dynpage:page:/cached 1000 '{"template":"cached"}'
HSET dynpage:page:/m1 1000 '{"template":"m1"}'
HSET dynpage:page:/m2 1000 '{"template":"m2"}'
--- config
dynpage_cache_ttl 60s;
location / { dynpage_page $uri; }
location /src/ { proxy_pass http://127.0.0.1:$TEST_NGINX_SOURCES_PORT/; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- timeout: 10
--- pipelined_requests eval
["GET /cached", "GET /src/freeze/replica", "GET /ctl/race?slow=/m1&fast=/cached&limit=300",
 "GET /ctl/race?slow=/m2&fast=/cached&limit=300", "GET /src/thaw/replica"]
--- response_body_like eval
["^cached\$", "freeze replica", "^fast=200 slow=200 fast-first slow_ms=([3-5]\\d\\d) ",
 "^fast=200 slow=200 \\S+ slow_ms=(\\d|[1-9]\\d|1\\d\\d) ", "thaw replica"]
--- error_log eval
qr/redis "redis:\/\/127.0.0.1:\d+" failed while fetching page "\/m1": timed out; skipping it for 1000ms/



=== TEST 7: Redis restarted: pages come back without a reload
--- http_config
dynpage_redis redis://default:s3cret@127.0.0.1:$TEST_NGINX_REDIS_PRIMARY_PORT/3;
--- config
location / { dynpage_page $uri; }
location /src/ { proxy_pass http://127.0.0.1:$TEST_NGINX_SOURCES_PORT/; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- request eval
["GET /src/stop/primary", "GET /a", "GET /src/start/primary",
 "POST /src/cli/primary\nSELECT 3\nHSET dynpage:page:/a 1000 '{\"template\":\"back\"}'\n",
 "GET /ctl/sleep/1100", "GET /a"]
--- error_code eval
[200, 503, 200, 200, 200, 200]
--- response_body_like eval
["^stop primary\n\$", "503 Service", "^start primary\n\$", "^OK\n1\n\$", "^slept\n\$", "^back\$"]



=== TEST 8: connections kept from before a Redis restarted are replaced, not taken for a failing source (misses right after the restart answer 404, nothing logged)
--- http_config
dynpage_redis redis://127.0.0.1:$TEST_NGINX_REDIS_REPLICA_PORT;
dynpage_redis redis://default:s3cret@127.0.0.1:$TEST_NGINX_REDIS_PRIMARY_PORT/3;
--- config
location / { dynpage_page $uri; dynpage_cache_ttl 0; }
location /src/ { proxy_pass http://127.0.0.1:$TEST_NGINX_SOURCES_PORT/; }
--- request eval
["GET /m1", "GET /m2", "GET /m3", "GET /m4", "GET /m5", "GET /m6", "GET /m7", "GET /m8",
 "GET /src/stop/primary", "GET /src/start/primary", "GET /src/stop/replica", "GET /src/start/replica",
 "GET /n1", "GET /n2", "GET /n3", "GET /n4", "GET /n5", "GET /n6", "GET /n7", "GET /n8"]
--- error_code eval
[404, 404, 404, 404, 404, 404, 404, 404, 200, 200, 200, 200,
 404, 404, 404, 404, 404, 404, 404, 404]
--- no_error_log
failed while fetching



=== TEST 9: a snapshot the CMS gave is kept whole once its output is kept (it is not in Redis to fetch again): with the output evicted, the page renders from it without asking the CMS again
--- http_config
dynpage_redis redis://127.0.0.1:$TEST_NGINX_REDIS_REPLICA_PORT;
dynpage_redis redis://default:s3cret@127.0.0.1:$TEST_NGINX_REDIS_PRIMARY_PORT/3;
dynpage_cms http://127.0.0.1:$TEST_NGINX_CMS_PORT/snapshot;
dynpage_output_cache_size 150;
--- config
dynpage_cache_ttl 60s;
dynpage_debug_header on;
location / { dynpage_page $uri; }
location /src/ { proxy_pass http://127.0.0.1:$TEST_NGINX_SOURCES_PORT/; }
--- log_level: debug
--- pipelined_requests eval
["GET /src/stop/replica", "GET /src/stop/primary", "GET /from/a", "GET /from/b", "GET /from/a",
 "GET /src/cms-count"]
--- response_body_like eval
["^stop replica\n\$", "^stop primary\n\$", "^cms:/from/a\$", "^cms:/from/b\$", "^cms:/from/a\$",
 "^cms-count=2\n\$"]
--- response_headers_like eval
["", "", "X-Dynpage: variant=production; version=\\d+; source=cms",
 "X-Dynpage: variant=production; version=\\d+; source=cms",
 "X-Dynpage: variant=production; version=\\d+; source=\\w+", ""]
--- grep_error_log eval
qr/rendered "\/from\/\w+"|served the kept output/
--- grep_error_log_out
rendered "/from/a"
rendered "/from/b"
rendered "/from/a"
