# A Redis Cluster as a source (redis+cluster://): 3 primaries and 3 replicas on loopback (see
# t/TestTopology.pm). Keys of one page live in different slots and nodes; slots move while
# pages are asked for (MOVED, ASK); a primary is killed and its replica takes over; events and
# dynpagectl go through the cluster.
use t::TestDynpage;
use t::TestTopology;

topology('cluster');

plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: pages and a dimension page whose keys live on three nodes; a missing page is a 404
--- http_config
dynpage_redis redis+cluster://127.0.0.1:$TEST_NGINX_CLUSTER_PORT1,127.0.0.1:$TEST_NGINX_CLUSTER_PORT2/;
--- cluster
HSET dynpage:page:/a 1000 '{"template":"page a"}'
HSET dynpage:page:/b 1000 '{"template":"page b"}'
HSET dynpage:page:/c 1000 '{"template":{"name":"card"},"data":{"x":"c"}}'
HSET dynpage:tpl:card 1000 'card {{ x }}'
HSET dynpage:tpl:item 1000 '{{ base.name }} at {{ shop.name }}'
SET item:1:base '{"name":"pen"}'
SET shop:9 '{"name":"corner"}'
--- config
dynpage_debug_header on;
location / { dynpage_page $uri; }
location /item {
    dynpage_template item;
    dynpage_data base item:$arg_id:base required;
    dynpage_data shop shop:$arg_shop;
}
location /topo/ { proxy_pass http://127.0.0.1:$TEST_NGINX_TOPOLOGY_PORT/; }
--- request eval
["GET /a", "GET /b", "GET /c", "GET /item?id=1&shop=9", "GET /none",
 "GET /topo/owners?keys=dynpage:page:/a,dynpage:page:/b,dynpage:page:/c,item:1:base,dynpage:tpl:card"]
--- error_code eval
[200, 200, 200, 200, 404, 200]
--- response_body_like eval
["^page a\$", "^page b\$", "^card c\$", "^pen at corner\$", "404 Not Found",
 "^nodes=\\d+,\\d+,\\d+\n\$"]
--- response_headers eval
["X-Dynpage: variant=production; version=1000; source=redis",
 "X-Dynpage: variant=production; version=1000; source=redis",
 "X-Dynpage: variant=production; version=1000; source=redis",
 "X-Dynpage: variant=production; version=1000; source=redis", "", ""]
--- no_error_log
[error]
[warn]



=== TEST 2: read_from=replicas: pages come from the replicas (READONLY on their connections)
--- http_config
dynpage_redis redis+cluster://127.0.0.1:$TEST_NGINX_CLUSTER_PORT3/?read_from=replicas;
--- cluster
HSET dynpage:page:/a 1000 '{"template":"page a"}'
HSET dynpage:page:/b 1000 '{"template":"page b"}'
HSET dynpage:page:/c 1000 '{"template":"page c"}'
--- config
location / { dynpage_page $uri; }
location /topo/ { proxy_pass http://127.0.0.1:$TEST_NGINX_TOPOLOGY_PORT/; }
--- request eval
["GET /a", "GET /b", "GET /c", "GET /topo/replica-reads"]
--- response_body_like eval
["^page a\$", "^page b\$", "^page c\$", "^replicas=3 readonly=3\n\$"]
--- no_error_log
[error]
[warn]



=== TEST 3: every node of the cluster down: the next source answers at once; one line names the cluster (password redacted)
--- http_config
dynpage_redis redis+cluster://app:s3cret@127.0.0.1:$TEST_NGINX_EXTRA_PORT,127.0.0.1:$TEST_NGINX_EXTRA_PORT;
dynpage_redis redis://127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- redis
HSET dynpage:page:/a 1000 '{"template":"standalone a"}'
HSET dynpage:page:/b 1000 '{"template":"standalone b"}'
--- config
location / { dynpage_page $uri; }
--- pipelined_requests eval
["GET /a", "GET /b"]
--- response_body_like eval
["^standalone a\$", "^standalone b\$"]
--- grep_error_log eval
qr/\[\w+\] .*?dynpage: redis "[^"]*" failed while fetching .*?; skipping it for \d+ms/
--- grep_error_log_out eval
qr/\A\[error\] [^\n]*dynpage: redis "redis\+cluster:\/\/app:\*\*\*\@127.0.0.1:\d+,127.0.0.1:\d+" failed while fetching page "\/a": no node of the cluster gave its slot map \(1 asked; node 127.0.0.1:\d+: [^\n]*\); skipping it for 1000ms\n\z/
--- no_error_log
s3cret



=== TEST 4: events through the cluster: dynpagectl writes to the nodes owning the keys and publishes; nginx (60 s TTL) sees it at once
--- http_config
dynpage_redis redis+cluster://127.0.0.1:$TEST_NGINX_CLUSTER_PORT2;
--- cluster
HSET dynpage:page:/a 1000 '{"template":"page a"}'
HSET dynpage:tpl:item 1000 '{{ base.name }} at {{ shop.name }}'
SET item:1:base '{"name":"pen"}'
SET shop:9 '{"name":"corner"}'
--- config
dynpage_cache_ttl 60s;
location / { dynpage_page $uri; }
location /item {
    dynpage_template item;
    dynpage_data base item:$arg_id:base required;
    dynpage_data shop shop:$arg_shop;
}
location /topo/ { proxy_pass http://127.0.0.1:$TEST_NGINX_TOPOLOGY_PORT/; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- request eval
["GET /a", "GET /item?id=1&shop=9",
 "POST /topo/dynpagectl\npage\nput\n/a\n--data\nfile:{}\n--template-file\nfile:page a, second",
 "POST /topo/dynpagectl\ndata\nput\nshop:9\nfile:{\"name\":\"square\"}",
 "GET /ctl/sleep/200",
 "GET /a", "GET /item?id=1&shop=9",
 "POST /topo/dynpagectl\nhistory\n/a",
 "POST /topo/dynpagectl\ncheck"]
--- response_body_like eval
["^page a\$", "^pen at corner\$",
 "^exit=0\n", "^exit=0\n", "^slept\n\$",
 "^page a, second\$", "^pen at square\$",
 "^exit=0\n(?s:.*)1000", "^exit=0\n"]
--- no_error_log
[error]
[warn]



=== TEST 5: a slot moves to another primary while pages are asked for (ASK, then MOVED): no error
(Each CLUSTER SETSLOT makes the nodes fsync their config file, which may hold one for over
100 ms on a busy machine: the timeout is 2 s here, so that only redirects are tested.)
--- http_config
dynpage_redis redis+cluster://127.0.0.1:$TEST_NGINX_CLUSTER_PORT1;
dynpage_redis_timeout 2s;
--- cluster
HSET dynpage:page:/b 1000 '{"template":"page b"}'
HSET dynpage:page:/c 1000 '{"template":"page c"}'
SET {dynpage:page:/b}:other 1
SET {dynpage:page:/b}:more 1
--- config
dynpage_cache_ttl 0;
location / { dynpage_page $uri; }
location /topo/ { proxy_pass http://127.0.0.1:$TEST_NGINX_TOPOLOGY_PORT/; proxy_read_timeout 30s; }
--- timeout: 30
--- request eval
["GET /b", "GET /topo/migrate?key=dynpage:page:/b&uris=/b,/c", "GET /b"]
--- response_body_like eval
["^page b\$", "^slot=8007 keys=3 statuses=200=\\d+ asking=[1-9]\\d* moved=yes\n\$", "^page b\$"]
--- no_error_log
[error]
[warn]



=== TEST 6: a primary killed: its replica is promoted; cached pages are served all along (stale), misses again within 2 s of the promotion
--- http_config
dynpage_redis redis+cluster://127.0.0.1:$TEST_NGINX_CLUSTER_PORT1,127.0.0.1:$TEST_NGINX_CLUSTER_PORT2,127.0.0.1:$TEST_NGINX_CLUSTER_PORT3;
--- cluster
HSET dynpage:page:/a 1000 '{"template":"page a"}'
HSET dynpage:page:/b 1000 '{"template":"page b"}'
HSET dynpage:page:/c 1000 '{"template":"page c"}'
EVAL "for i = 0, 999 do redis.call('HSET', 'dynpage:page:/m/{c}' .. i, '1000', '{\"template\":\"miss\"}') end return 1" 1 dynpage:page:/m/{c}0
--- config
location / { dynpage_page $uri; }
location /m { dynpage_page "/m/{c}$arg_i"; }
location /topo/ { proxy_pass http://127.0.0.1:$TEST_NGINX_TOPOLOGY_PORT/; proxy_read_timeout 30s; }
--- timeout: 30
--- request eval
["GET /topo/failover?key=dynpage:page:/b&cached=/a,/b,/c&miss=/m?i="]
--- response_body_like eval
["^killed=\\d+ promoted_ms=\\d+ cached=200=\\d+ misses_back_ms=\\d+ late_5xx=0 verdict=ok\n\$"]
--- no_error_log
[alert]
[crit]



=== TEST 7: the primary the events thread listens on killed: it listens on another node, and events reach nginx (60 s TTL) again
--- http_config
dynpage_redis redis+cluster://127.0.0.1:$TEST_NGINX_CLUSTER_PORT2;
--- cluster
HSET dynpage:page:/a 1000 '{"template":"page a"}'
HSET dynpage:page:/c 1000 '{"template":"page c"}'
EVAL "for i = 0, 999 do redis.call('HSET', 'dynpage:page:/m/{b}' .. i, '1000', '{\"template\":\"miss\"}') end return 1" 1 dynpage:page:/m/{b}0
--- config
dynpage_cache_ttl 60s;
location / { dynpage_page $uri; }
location /m { dynpage_page "/m/{b}$arg_i"; }
location /topo/ { proxy_pass http://127.0.0.1:$TEST_NGINX_TOPOLOGY_PORT/; proxy_read_timeout 30s; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- timeout: 30
--- request eval
["GET /topo/failover?key=subscriber&cached=/a,/c&miss=/m?i=",
 "GET /ctl/sleep/1500",
 "POST /topo/dynpagectl\npage\nput\n/a\n--data\nfile:{}\n--template-file\nfile:page a, after the failover",
 "POST /topo/dynpagectl\npage\nput\n/c\n--data\nfile:{}\n--template-file\nfile:page c, after the failover",
 "GET /ctl/sleep/200", "GET /a", "GET /c"]
--- response_body_like eval
["^killed=\\d+ promoted_ms=\\d+ cached=200=\\d+ misses_back_ms=\\d+ late_5xx=0 verdict=ok\n\$",
 "^slept\n\$", "^exit=0\n", "^exit=0\n", "^slept\n\$",
 "^page a, after the failover\$", "^page c, after the failover\$"]
--- no_error_log
[alert]
[crit]



=== TEST 8: a cluster URL with a database fails nginx -t naming the URL (password redacted)
--- http_config
dynpage_redis redis+cluster://app:s3cret@127.0.0.1:7000/3;
--- config
location / { dynpage_page $uri; }
--- must_die
--- suppress_stderr
--- error_log eval
qr{\[emerg\] .*\Q"dynpage_redis" directive has invalid URL "redis+cluster://app:***\E\@\Q127.0.0.1:7000/3": a cluster has only database 0: the path must be empty\E}



=== TEST 9: a Sentinel URL without a master name fails nginx -t
--- http_config
dynpage_redis redis+sentinel://127.0.0.1:26379,127.0.0.1:26380;
--- config
location / { dynpage_page $uri; }
--- must_die
--- suppress_stderr
--- error_log eval
qr{\[emerg\] .*\Q"dynpage_redis" directive has invalid URL "redis+sentinel://127.0.0.1:26379,127.0.0.1:26380": the path must name the master, as in redis+sentinel://host:26379/mymaster\E}
