# dynpage_status: the counters of all workers (shared memory) as JSON, Prometheus text checked by
# promtool, and a live HTML page read back from headless Chromium's DOM.
use t::TestDynpage;

master_on();
workers(2);
plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: exact counters over two workers (once the events subscriptions settled: a resync after the dead first source would outdate what was fetched before it): a miss, two hits, 404s (twenty of them on new connections, spread over both workers), two fallbacks, and a source that is down
--- http_config
dynpage_redis redis://127.0.0.1:1;
dynpage_redis redis://127.0.0.1:$TEST_NGINX_REDIS_PORT;
dynpage_cache_ttl 60s;
--- redis
HSET dynpage:page:/a 1000 '{"template":"a"}'
HSET dynpage:page:/broken 1000 '{"template":"old"}'
HSET dynpage:page:/broken 2000 '{"template":"{% if %}"}'
--- config
location / { dynpage_page $uri; }
location = /status { dynpage_status; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- timeout: 20
--- pipelined_requests eval
["GET /ctl/sleep/1000", "GET /a", "GET /a", "GET /a", "GET /missing", "GET /missing", "GET /broken", "GET /broken",
 "GET /ctl/spread?path=/missing&count=20", "GET /status"]
--- response_body_like eval
["^slept\n\$", "^a\$", "^a\$", "^a\$", "", "", "^old\$", "^old\$", "^404=20\n\$",
 qr/^(?=.*"requests":\{"by":\[.*\],"by_source":\{"cms":0,"fallback":2,"l1":2,"none":22,"redis":1,"stale":0\},"hit_ratio":0\.4,"suspended":0,"total":27\})(?=.*"workers":2[,}])(?=.*\{"errors":[12],"fetch_seconds":\{"buckets":\[[^\]]*\],"count":[12],"sum":[\d.e-]+\},"fetches":[12],"kind":"redis","name":"redis:\/\/127\.0\.0\.1:1",)(?=.*"transitions":\{[^}]*"fall_back":2,)(?=.*"kept":2,).*\n\z/s]
--- error_code eval
[200, 200, 200, 200, 404, 404, 200, 200, 200, 200]
--- response_headers eval
["", "", "", "", "", "", "", "", "", "Content-Type: application/json\nCache-Control: no-store"]
--- error_log eval
qr/\[alert\] .*page "\/broken" version 2000 failed: template does not compile/



=== TEST 2: a page served stale while Redis does not answer is counted as stale
--- http_config
dynpage_cache_ttl 100ms;
--- redis
HSET dynpage:page:/a 1000 '{"template":"a"}'
--- config
location / { dynpage_page $uri; }
location = /status { dynpage_status; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- pipelined_requests eval
["GET /a", "GET /ctl/freeze", "GET /ctl/sleep/300", "GET /a", "GET /status"]
--- response_body_like eval
["^a\$", "^frozen\n\$", "^slept\n\$", "^a\$",
 qr/"by_source":\{"cms":0,"fallback":0,"l1":0,"none":0,"redis":1,"stale":1\}/]
--- error_log eval
qr/\[error\] .*redis "redis:\/\/127\.0\.0\.1:\d+" failed while fetching/



=== TEST 3: the Prometheus text passes promtool check metrics
--- http_config
dynpage_cms http://127.0.0.1:1/;
--- redis
HSET dynpage:page:/a 1000 '{"template":"a"}'
--- config
location / { dynpage_page $uri; }
location = /status { dynpage_status; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- timeout: 20
--- pipelined_requests eval
["GET /a", "GET /a", "GET /nope", "GET /status?format=prometheus",
 "GET /ctl/promtool?path=/status%3Fformat%3Dprometheus"]
--- response_body_like eval
["^a\$", "^a\$", "",
 qr/^# HELP dynpage_build_info .*\ndynpage_build_info\{version="[\d.]+",nginx_version="[\d.]+"\} 1\n(?=.*^dynpage_requests_total\{variant="production",source="l1",status="2xx"\} 1\n)(?=.*^dynpage_requests_total\{variant="production",source="none",status="4xx"\} 1\n)(?=.*^dynpage_source_fetches_total\{kind="redis",source="redis:\/\/127\.0\.0\.1:\d+"\} [1-9]\d*\n)(?=.*^dynpage_source_up\{kind="cms",source="http:\/\/127\.0\.0\.1:1\/"\} 1\n)/ms,
 qr/^promtool exit=0\n\z/]
--- error_code eval
[200, 200, 404, 200, 200]
--- response_headers eval
["", "", "", "Content-Type: text/plain; version=0.0.4; charset=utf-8", ""]



=== TEST 4: the HTML page renders in headless Chromium: its script fills in the numbers
--- redis
HSET dynpage:page:/a 1000 '{"template":"a"}'
--- config
location / { dynpage_page $uri; }
location = /favicon.ico { return 204; }
location = /status { dynpage_status; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- timeout: 30
--- pipelined_requests eval
["GET /a", "GET /a", "GET /a", "GET /nope", "GET /ctl/chromium?path=/status%3Fformat%3Dhtml"]
--- error_code eval
[200, 200, 200, 404, 200]
--- response_body_like eval
["^a\$", "^a\$", "^a\$", "",
 qr/^chromium exit=0\n(?=.*id="requests-total">4<)(?=.*id="hit-ratio">66\.7%<)(?=.*id="stale">0<)(?=.*id="fallback">0<)(?=.*<td>redis<\/td><td class="name">redis:\/\/127\.0\.0\.1:\d+<\/td><td class="up">up<\/td>)(?=.*id="cache-entries">[1-9]\d*<).*<\/html>/s]



=== TEST 5: an unknown format is 400 with the list of formats; HEAD has no body; POST is 405
--- config
location = /status { dynpage_status; }
--- request eval
["GET /status?format=xml", "HEAD /status", "POST /status\nx"]
--- error_code eval
[400, 200, 405]
--- response_body eval
["unknown format \"xml\": use one of json, prometheus, html\n", "", qr/405 Not Allowed/]



=== TEST 6: dynpage_status with a page directive in the same location fails nginx -t
--- config
location / { dynpage_page $uri; dynpage_status; }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*"dynpage_status" directive cannot be used with "dynpage_page" or "dynpage_template" in the same location/



=== TEST 7: dynpage_status takes no argument
--- config
location = /status { dynpage_status json; }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*invalid number of arguments in "dynpage_status" directive/



=== TEST 8: a flood of events naming nothing cached is counted (by each of the two workers), not logged
--- redis
HSET dynpage:page:/a 1000 '{"template":"a"}'
--- config
location / { dynpage_page $uri; }
location = /status { dynpage_status; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- pipelined_requests eval
["GET /ctl/sleep/300",
 "POST /ctl/redis\n" . CORE::join("", map { "PUBLISH dynpage:events dynpage:page:/nothing-$_\n" } 1 .. 50),
 "GET /ctl/sleep/300", "GET /status"]
--- response_body_like eval
["^slept\n\$", "^(2\n){50}\$", "^slept\n\$",
 qr/"events":\{"messages":100,"reconnects":0,"resyncs":0,"unknown":100\}/]
--- no_error_log
nothing-
[warn]



=== TEST 9: dynpage_counters off: pages are served, nothing is counted, dynpage_status says so with 503
--- http_config
dynpage_counters off;
--- redis
HSET dynpage:page:/a 1000 '{"template":"a"}'
--- config
location / { dynpage_page $uri; }
location = /status { dynpage_status; }
--- request eval
["GET /a", "GET /status"]
--- error_code eval
[200, 503]
--- response_body eval
["a", "dynpage_status: nothing is counted (dynpage_counters off)\n"]



=== TEST 10: dynpage_counters takes on or off
--- http_config
dynpage_counters maybe;
--- config
location = /status { dynpage_status; }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*"dynpage_counters" directive must be "on" or "off"/



=== TEST 11: dimensions missing and broken are counted apart
--- redis
HSET dynpage:tpl:item 1000 '{{ base.name }}'
SET item:1:base '{"name":"x"}'
SET item:1:shop 'not json'
--- config
location = /p { dynpage_template item; dynpage_data base item:1:base; dynpage_data shop item:1:shop; dynpage_data desc item:1:desc; }
location = /status { dynpage_status; }
--- pipelined_requests eval
["GET /p", "GET /status"]
--- response_body_like eval
["^x\$", qr/"dimensions":\{"broken":1,"missing":1\}/]
