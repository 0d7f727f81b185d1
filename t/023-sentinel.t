# A Redis behind Sentinel as a source (redis+sentinel://): a primary, a replica and three
# sentinels on loopback (see t/TestTopology.pm). The sentinels are asked where the master (or
# a replica) is; a failover is followed without a reload; events and dynpagectl go through the
# master the sentinels name.
use t::TestDynpage;
use t::TestTopology;

topology('sentinel');

plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: pages from the master the sentinels name (database 2); a missing page is a 404
--- http_config
dynpage_redis redis+sentinel://127.0.0.1:$TEST_NGINX_SENTINEL_PORT1,127.0.0.1:$TEST_NGINX_SENTINEL_PORT2/mymaster/2;
--- sentinel
SELECT 2
HSET dynpage:page:/a 1000 '{"template":"page a"}'
HSET dynpage:page:/b 1000 '{"template":{"name":"t"},"data":{"x":"b"}}'
HSET dynpage:tpl:t 1000 'tpl {{ x }}'
--- config
dynpage_debug_header on;
location / { dynpage_page $uri; }
--- request eval
["GET /a", "GET /b", "GET /none"]
--- error_code eval
[200, 200, 404]
--- response_body_like eval
["^page a\$", "^tpl b\$", "404 Not Found"]
--- response_headers eval
["X-Dynpage: variant=production; version=1000; source=redis",
 "X-Dynpage: variant=production; version=1000; source=redis", ""]
--- no_error_log
[error]
[warn]



=== TEST 2: role=replica: pages come from the replica
--- http_config
dynpage_redis redis+sentinel://127.0.0.1:$TEST_NGINX_SENTINEL_PORT3/mymaster?role=replica;
--- sentinel
HSET dynpage:page:/a 1000 '{"template":"page a"}'
--- config
location / { dynpage_page $uri; }
location /topo/ { proxy_pass http://127.0.0.1:$TEST_NGINX_TOPOLOGY_PORT/; }
--- request eval
["GET /a", "GET /topo/replica-reads"]
--- response_body_like eval
["^page a\$", "^replicas=1 readonly=0\n\$"]
--- no_error_log
[error]
[warn]



=== TEST 3: no sentinel answers: the next source answers at once; one line names the source
--- http_config
dynpage_redis redis+sentinel://127.0.0.1:$TEST_NGINX_EXTRA_PORT/mymaster;
dynpage_redis redis://127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- redis
HSET dynpage:page:/a 1000 '{"template":"standalone a"}'
--- config
location / { dynpage_page $uri; }
--- request
GET /a
--- response_body chomp
standalone a
--- grep_error_log eval
qr/\[\w+\] .*?dynpage: redis "[^"]*" failed while fetching .*?; skipping it for \d+ms/
--- grep_error_log_out eval
qr/\A\[error\] [^\n]*dynpage: redis "redis\+sentinel:\/\/127.0.0.1:\d+\/mymaster" failed while fetching page "\/a": no sentinel gave the address of "mymaster" \(sentinel 127.0.0.1:\d+: [^\n]*\); skipping it for 1000ms\n\z/



=== TEST 4: events through the master: dynpagectl writes and publishes through the sentinels; nginx (60 s TTL) sees it at once
--- http_config
dynpage_redis redis+sentinel://127.0.0.1:$TEST_NGINX_SENTINEL_PORT1/mymaster;
--- sentinel
HSET dynpage:page:/a 1000 '{"template":"page a"}'
--- config
dynpage_cache_ttl 60s;
location / { dynpage_page $uri; }
location /topo/ { proxy_pass http://127.0.0.1:$TEST_NGINX_TOPOLOGY_PORT/; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- request eval
["GET /a",
 "POST /topo/dynpagectl\npage\nput\n/a\n--data\nfile:{}\n--template-file\nfile:page a, second",
 "GET /ctl/sleep/200", "GET /a"]
--- response_body_like eval
["^page a\$", "^exit=0\n", "^slept\n\$", "^page a, second\$"]
--- no_error_log
[error]
[warn]



=== TEST 5: the master killed: a replica is promoted; cached pages are served all along, misses again within 2 s; then events and dynpagectl go through the new master
--- http_config
dynpage_redis redis+sentinel://127.0.0.1:$TEST_NGINX_SENTINEL_PORT1,127.0.0.1:$TEST_NGINX_SENTINEL_PORT2,127.0.0.1:$TEST_NGINX_SENTINEL_PORT3/mymaster;
--- sentinel
HSET dynpage:page:/a 1000 '{"template":"page a"}'
HSET dynpage:page:/b 1000 '{"template":"page b"}'
EVAL "for i = 0, 999 do redis.call('HSET', 'dynpage:page:/m/' .. i, '1000', '{\"template\":\"miss\"}') end return 1" 0
--- config
dynpage_cache_ttl 60s;
location / { dynpage_page $uri; }
location /m { dynpage_page "/m/$arg_i"; }
location /topo/ { proxy_pass http://127.0.0.1:$TEST_NGINX_TOPOLOGY_PORT/; proxy_read_timeout 30s; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- timeout: 30
--- request eval
["GET /topo/failover?key=x&cached=/a,/b&miss=/m?i=",
 "GET /ctl/sleep/1500",
 "POST /topo/dynpagectl\npage\nput\n/a\n--data\nfile:{}\n--template-file\nfile:page a, after the failover",
 "GET /ctl/sleep/200", "GET /a"]
--- response_body_like eval
["^killed=\\d+ promoted_ms=\\d+ cached=200=\\d+ misses_back_ms=\\d+ late_5xx=0 verdict=ok\n\$",
 "^slept\n\$", "^exit=0\n", "^slept\n\$", "^page a, after the failover\$"]
--- no_error_log
[alert]
[crit]



=== TEST 6: a sentinel that does not know the master name: the next source answers at once; one line says so
--- http_config
dynpage_redis redis+sentinel://127.0.0.1:$TEST_NGINX_SENTINEL_PORT1/nosuchmaster;
dynpage_redis redis://127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- redis
HSET dynpage:page:/a 1000 '{"template":"standalone a"}'
--- config
location / { dynpage_page $uri; }
--- request
GET /a
--- response_body chomp
standalone a
--- grep_error_log eval
qr/\[\w+\] .*?dynpage: redis "[^"]*" failed while fetching .*?; skipping it for \d+ms/
--- grep_error_log_out eval
qr/\A\[error\] [^\n]*dynpage: redis "redis\+sentinel:\/\/127.0.0.1:\d+\/nosuchmaster" failed while fetching page "\/a": [^\n]*does not know master "nosuchmaster"[^\n]*; skipping it for 1000ms\n\z/
