# Kept outputs (dynpage_output_cache): a page rendered once is served again from its kept bytes
# without rendering, keyed by everything that determines them. An event, a new version, another
# variant or another dynpage_var value is another output: never the kept bytes of the old one.
use t::TestDynpage;

plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: the second request is served from the kept output; after a publish and its event, the new version is rendered, never the kept bytes of the old one
--- redis
HSET dynpage:page:/a 1000 '{"template":"one {{ n }}","data":{"n":1}}'
--- config
dynpage_cache_ttl 60s;
location / { dynpage_page $uri; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- log_level: debug
--- pipelined_requests eval
["GET /a", "GET /a",
 "POST /ctl/redis\nHSET dynpage:page:/a 2000 '{\"template\":\"two {{ n }}\",\"data\":{\"n\":2}}'\nPUBLISH dynpage:events dynpage:page:/a",
 "GET /ctl/sleep/200", "GET /a", "GET /a"]
--- response_body_like eval
["^one 1\$", "^one 1\$", "^1\n", "^slept\n\$", "^two 2\$", "^two 2\$"]
--- grep_error_log eval
qr/rendered "\/a" version \d+|\(version \d+\): served the kept output/
--- grep_error_log_out
rendered "/a" version 1000
(version 1000): served the kept output
rendered "/a" version 2000
(version 2000): served the kept output
--- no_error_log
[error]



=== TEST 2: production, predeploy and gray outputs are kept apart: each client gets its variant, from its own kept output
--- redis
HSET dynpage:page:/a 1000 '{"template":"prod"}'
HSET dynpage:page:/a predeploy '{"template":"pre"}'
HSET dynpage:page:/a abVersion '{"template":"gray"}'
HSET dynpage:gray page:/a 100
--- config
dynpage_cache_ttl 60s;
dynpage_predeploy_allow 127.0.0.1;
dynpage_debug_header on;
location / { dynpage_page $uri; dynpage_gray_by $arg_user; }
--- log_level: debug
--- pipelined_requests eval
["GET /a", "GET /a?predeploy=true", "GET /a?user=u1", "GET /a", "GET /a?predeploy=true", "GET /a?user=u1",
 "GET /a?user=u2", "GET /a"]
--- response_body eval
["prod", "pre", "gray", "prod", "pre", "gray", "gray", "prod"]
--- response_headers_like eval
["X-Dynpage: variant=production; .*", "X-Dynpage: variant=predeploy; .*", "X-Dynpage: variant=gray; .*",
 "X-Dynpage: variant=production; .*", "X-Dynpage: variant=predeploy; .*", "X-Dynpage: variant=gray; .*",
 "X-Dynpage: variant=gray; .*", "X-Dynpage: variant=production; .*"]
--- grep_error_log eval
qr/rendered "\/a" version \w+|\(version \w+\): served the kept output/
--- grep_error_log_out
rendered "/a" version 1000
rendered "/a" version predeploy
rendered "/a" version abVersion
(version 1000): served the kept output
(version predeploy): served the kept output
(version abVersion): served the kept output
(version abVersion): served the kept output
(version 1000): served the kept output



=== TEST 3: each dynpage_var value has its own output
--- redis
HSET dynpage:page:/a 1000 '{"template":"for {{ request.device }}"}'
--- config
dynpage_cache_ttl 60s;
location / { dynpage_page $uri; dynpage_var device $arg_device; }
--- log_level: debug
--- pipelined_requests eval
["GET /a?device=pc", "GET /a?device=tv", "GET /a?device=pc", "GET /a?device=tv", "GET /a"]
--- response_body eval
["for pc", "for tv", "for pc", "for tv", "for "]
--- grep_error_log eval
qr/rendered "\/a"|served the kept output/
--- grep_error_log_out
rendered "/a"
rendered "/a"
served the kept output
served the kept output
rendered "/a"



=== TEST 4: an output larger than dynpage_output_cache_size is served, rendered each time, not kept
--- redis
HSET dynpage:page:/big 1000 '{"template":"{% for i in items %}0123456789abcdef{% endfor %}","data":{"items":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50,51,52,53,54,55,56,57,58,59,60,61,62,63,64,65,66,67,68,69,70,71,72,73,74,75,76,77,78,79,80]}}'
HSET dynpage:page:/small 1000 '{"template":"small"}'
--- http_config
dynpage_output_cache_size 1k;
--- config
dynpage_cache_ttl 60s;
location / { dynpage_page $uri; }
--- log_level: debug
--- pipelined_requests eval
["GET /big", "GET /big", "GET /small", "GET /small"]
--- response_body_like eval
["^(0123456789abcdef){80}\$", "^(0123456789abcdef){80}\$", "^small\$", "^small\$"]
--- grep_error_log eval
qr/rendered "\/\w+"|served the kept output/
--- grep_error_log_out
rendered "/big"
rendered "/big"
rendered "/small"
served the kept output



=== TEST 5: thousands of distinct dynpage_var values with a small bound: every answer is its own, the bound holds what fits
--- redis
HSET dynpage:page:/v 1000 '{"template":"d {{ request.device }}"}'
--- http_config
dynpage_output_cache_size 64k;
--- config
dynpage_cache_ttl 60s;
location /v { dynpage_page /v; dynpage_var device $arg_device; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; proxy_read_timeout 60s; }
--- timeout: 60
--- request eval
["GET /ctl/burst?prefix=/v?device=&count=3000&rounds=2", "GET /v?device=7", "GET /v?device=2999", "GET /v?device=1"]
--- response_body eval
["200=6000\n", "d 7", "d 2999", "d 1"]
--- no_error_log
[error]



=== TEST 6: dynpage_output_cache off renders every request; a fallback is never kept
--- redis
HSET dynpage:page:/a 1000 '{"template":"a"}'
HSET dynpage:page:/f 1000 '{"template":"good"}'
HSET dynpage:page:/f 2000 '{"template":"{{ x.y }}","data":{"x":1}}'
--- config
dynpage_cache_ttl 60s;
location /a { dynpage_page $uri; dynpage_output_cache off; }
location /f { dynpage_page $uri; }
--- log_level: debug
--- pipelined_requests eval
["GET /a", "GET /a", "GET /f", "GET /f", "GET /f"]
--- response_body eval
["a", "a", "good", "good", "good"]
--- error_log eval
qr/\[alert\] .*page "\/f" version 2000 failed: .*; serving version 1000 instead/
--- grep_error_log eval
qr/rendered "\/\w" version \d+|served the kept output/
--- grep_error_log_out
rendered "/a" version 1000
rendered "/a" version 1000
rendered "/f" version 2000
rendered "/f" version 1000
rendered "/f" version 1000
rendered "/f" version 1000



=== TEST 7: nginx -t refuses a bad dynpage_output_cache_size
--- http_config
dynpage_output_cache_size lots;
--- config
location / { dynpage_page $uri; }
--- must_die
--- suppress_stderr
--- error_log eval
qr{\[emerg\] .*\Q"dynpage_output_cache_size" directive has invalid value "lots"\E}



=== TEST 8: nginx -t refuses a dynpage_output_cache that is neither on nor off
--- config
location / { dynpage_page $uri; dynpage_output_cache maybe; }
--- must_die
--- suppress_stderr
--- error_log eval
qr{\[emerg\] .*\Q"dynpage_output_cache" directive must be "on" or "off"\E}



=== TEST 9: a predeploy snapshot written again (same field, new content) is another output: its new bytes and a new ETag, never the kept ones
--- redis
HSET dynpage:page:/a 1000 '{"template":"prod"}'
HSET dynpage:page:/a predeploy '{"template":"pre one"}'
--- config
dynpage_cache_ttl 60s;
dynpage_predeploy_allow 127.0.0.1;
location / { dynpage_page $uri; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- request eval
["GET /a?predeploy=true", "GET /a?predeploy=true",
 "POST /ctl/redis\nHSET dynpage:page:/a predeploy '{\"template\":\"pre two\"}'\nPUBLISH dynpage:events dynpage:page:/a",
 "GET /ctl/sleep/200", "GET /a?predeploy=true", "GET /a"]
--- response_body_like eval
["^pre one\$", "^pre one\$", "^0\n", "^slept\n\$", "^pre two\$", "^prod\$"]
--- no_error_log
[error]



=== TEST 10: $dynpage_cache_status: MISS when fetched, HIT from the worker cache, BYPASS for predeploy, STALE when no source answers; in add_header (and a log_format using it)
--- redis
HSET dynpage:page:/a 1000 '{"template":"a"}'
HSET dynpage:page:/a predeploy '{"template":"pre"}'
--- http_config
log_format cache '$uri $dynpage_cache_status';
--- config
dynpage_cache_ttl 100ms;
dynpage_predeploy_allow 127.0.0.1;
access_log logs/cache.log cache;
add_header X-Cache $dynpage_cache_status;
location / { dynpage_page $uri; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- request eval
["GET /a", "GET /a", "GET /a?predeploy=true", "GET /ctl/freeze", "GET /ctl/sleep/200", "GET /a", "GET /ctl/thaw"]
--- response_headers eval
["X-Cache: MISS", "X-Cache: HIT", "X-Cache: BYPASS", "X-Cache:", "X-Cache:", "X-Cache: STALE", "X-Cache:"]
--- response_body_like eval
["^a\$", "^a\$", "^pre\$", "", "", "^a\$", ""]
--- timeout: 10



=== TEST 11: $dynpage_cache_status is FALLBACK for an earlier version served after a failed render
--- redis
HSET dynpage:page:/f 1000 '{"template":"good"}'
HSET dynpage:page:/f 2000 '{"template":"{{ x.y }}","data":{"x":1}}'
--- config
add_header X-Cache $dynpage_cache_status;
location / { dynpage_page $uri; }
--- pipelined_requests eval
["GET /f", "GET /f"]
--- response_headers eval
["X-Cache: FALLBACK", "X-Cache: FALLBACK"]
--- response_body eval
["good", "good"]
--- error_log eval
qr/\[alert\] .*page "\/f" version 2000 failed: .*; serving version 1000 instead/



=== TEST 12: a snapshot whose output is kept is held without its data; when the output is evicted, the next request fetches the snapshot again (one fetch) and renders the same bytes
--- http_config
dynpage_output_cache_size 1k;
--- redis
HSET dynpage:page:/a 1000 '{"template":"page a {{ n }} {{ pad }}","data":{"n":1,"pad":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}}'
HSET dynpage:page:/b 1000 '{"template":"page b {{ n }} {{ pad }}","data":{"n":2,"pad":"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"}}'
--- config
dynpage_cache_ttl 60s;
location / { dynpage_page $uri; add_header X-Cache $dynpage_cache_status always; }
--- log_level: debug
--- pipelined_requests eval
["GET /a", "GET /a", "GET /b", "GET /a", "GET /a"]
--- response_body_like eval
["^page a 1 a{450}\$", "^page a 1 a{450}\$", "^page b 2 b{450}\$", "^page a 1 a{450}\$", "^page a 1 a{450}\$"]
--- response_headers eval
["X-Cache: MISS", "X-Cache: HIT", "X-Cache: MISS", "X-Cache: MISS", "X-Cache: HIT"]
--- grep_error_log eval
qr/fetching \d+ keys? for "\/[ab]"|rendered "\/[ab]" version \d+|\(version \d+\): served the kept output/
--- grep_error_log_out
fetching 1 key for "/a"
rendered "/a" version 1000
(version 1000): served the kept output
fetching 1 key for "/b"
rendered "/b" version 1000
fetching 1 key for "/a"
rendered "/a" version 1000
(version 1000): served the kept output
--- no_error_log
[error]



=== TEST 13: a page whose kept output is asked for again keeps what serving it needs (its meta, its snapshot held hollow) apart from the long tail: 2,000 other pages through a 64k worker cache do not make it wait for Redis again
--- http_config
dynpage_cache_size 64k;
--- redis
HSET dynpage:page:/hot 1000 '{"template":"hot {{ n }}","data":{"n":1}}'
--- config
dynpage_cache_ttl 60s;
location / { dynpage_page $uri; add_header X-Cache $dynpage_cache_status always; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; proxy_read_timeout 60s; }
--- timeout: 60
--- log_level: debug
--- pipelined_requests eval
["GET /hot", "GET /hot", "GET /ctl/burst?prefix=/tail/&count=2000&rounds=1", "GET /hot", "GET /tail/1"]
--- error_code eval
[200, 200, 200, 200, 404]
--- response_body_like eval
["^hot 1\$", "^hot 1\$", "^404=2000\n\$", "^hot 1\$", ".*"]
--- response_headers eval
["X-Cache: MISS", "X-Cache: HIT", "", "X-Cache: HIT", ""]
--- grep_error_log eval
qr/fetching \d+ keys? for "\/(hot|tail\/1)"/
--- grep_error_log_out
fetching 1 key for "/hot"
fetching 1 key for "/tail/1"
fetching 1 key for "/tail/1"
--- no_error_log
[error]



=== TEST 14: an output asked for again is kept through a scan of outputs asked for once (each is rendered, and goes first): the kept one is still served without rendering
--- http_config
dynpage_output_cache_size 4k;
--- redis
HSET dynpage:page:/v 1000 '{"template":"d {{ request.device }}"}'
--- config
dynpage_cache_ttl 60s;
location /v { dynpage_page /v; dynpage_var device $arg_device; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; proxy_read_timeout 60s; }
--- timeout: 60
--- log_level: debug
--- pipelined_requests eval
["GET /v?device=hot", "GET /v?device=hot", "GET /ctl/burst?prefix=/v?device=&count=300&rounds=1",
 "GET /v?device=hot", "GET /v?device=1"]
--- response_body_like eval
["^d hot\$", "^d hot\$", "^200=300\n\$", "^d hot\$", "^d 1\$"]
--- grep_error_log eval
qr/rendered "\/v"|served the kept output/
--- grep_error_log_out eval
"rendered \"/v\"\nserved the kept output\n" . ("rendered \"/v\"\n" x 300)
. "served the kept output\nrendered \"/v\"\n"
--- no_error_log
[error]
