# A cold page in one round trip per source: the read script brings a document's meta with the
# value of the version the rules choose, so the page does not wait for a second exchange.
# dynpage_status counts the pipelines sent to each source (`round_trips`).
use t::TestDynpage;

# A Redis of its own for the block that refuses scripts (an ACL outlives FLUSHALL).
sources(redis => { noscripts => [] }, cms => 1);
plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: a cold page with an inline template: one fetch, one round trip (its snapshot came with the meta)
--- redis
HSET dynpage:page:/a 1000 '{"template":"one"}'
HSET dynpage:page:/a 2000 '{"template":"two"}'
HSET dynpage:page:/a 9999999999999 '{"template":"later"}'
--- config
location / { dynpage_page $uri; add_header X-Cache $dynpage_cache_status always; }
location = /status { dynpage_status; }
--- pipelined_requests eval
["GET /a", "GET /a", "GET /status"]
--- response_body_like eval
["^two\$", "^two\$", qr/"fetches":1,"kind":"redis","name":"[^"]*","round_trips":1,/]
--- response_headers eval
["X-Cache: MISS", "X-Cache: HIT", ""]



=== TEST 2: twenty cold pages of one template: one round trip each, and one for the template (with its version)
--- redis
HSET dynpage:tpl:item 1000 'item {{ id }}'
HSET dynpage:page:/p/1 1000 '{"template":{"name":"item"},"data":{"id":1}}'
HSET dynpage:page:/p/2 1000 '{"template":{"name":"item"},"data":{"id":2}}'
HSET dynpage:page:/p/3 1000 '{"template":{"name":"item"},"data":{"id":3}}'
HSET dynpage:page:/p/4 1000 '{"template":{"name":"item"},"data":{"id":4}}'
HSET dynpage:page:/p/5 1000 '{"template":{"name":"item"},"data":{"id":5}}'
HSET dynpage:page:/p/6 1000 '{"template":{"name":"item"},"data":{"id":6}}'
HSET dynpage:page:/p/7 1000 '{"template":{"name":"item"},"data":{"id":7}}'
HSET dynpage:page:/p/8 1000 '{"template":{"name":"item"},"data":{"id":8}}'
HSET dynpage:page:/p/9 1000 '{"template":{"name":"item"},"data":{"id":9}}'
HSET dynpage:page:/p/10 1000 '{"template":{"name":"item"},"data":{"id":10}}'
HSET dynpage:page:/p/11 1000 '{"template":{"name":"item"},"data":{"id":11}}'
HSET dynpage:page:/p/12 1000 '{"template":{"name":"item"},"data":{"id":12}}'
HSET dynpage:page:/p/13 1000 '{"template":{"name":"item"},"data":{"id":13}}'
HSET dynpage:page:/p/14 1000 '{"template":{"name":"item"},"data":{"id":14}}'
HSET dynpage:page:/p/15 1000 '{"template":{"name":"item"},"data":{"id":15}}'
HSET dynpage:page:/p/16 1000 '{"template":{"name":"item"},"data":{"id":16}}'
HSET dynpage:page:/p/17 1000 '{"template":{"name":"item"},"data":{"id":17}}'
HSET dynpage:page:/p/18 1000 '{"template":{"name":"item"},"data":{"id":18}}'
HSET dynpage:page:/p/19 1000 '{"template":{"name":"item"},"data":{"id":19}}'
HSET dynpage:page:/p/20 1000 '{"template":{"name":"item"},"data":{"id":20}}'
--- config
location /p/ { dynpage_page $uri; }
location = /status { dynpage_status; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- request eval
["GET /ctl/burst?prefix=/p/&count=20&rounds=2", "GET /status"]
--- response_body_like eval
["^200=40\n\$", qr/"fetches":21,"kind":"redis","name":"[^"]*","round_trips":21,/]



=== TEST 3: a Redis that refuses scripts (an ACL): the same page, the two-round way (two fetches, four round trips, the script not tried again), no error logged
--- http_config
dynpage_redis redis://127.0.0.1:$TEST_NGINX_REDIS_NOSCRIPTS_PORT;
--- redis_noscripts
HSET dynpage:page:/a 1000 '{"template":"one"}'
HSET dynpage:page:/b 1000 '{"template":"two"}'
ACL SETUSER default -eval -evalsha
--- config
location / { dynpage_page $uri; }
location = /status { dynpage_status; }
--- pipelined_requests eval
["GET /a", "GET /b", "GET /status"]
--- response_body_like eval
["^one\$", "^two\$", qr/"fetches":4,"kind":"redis","name":"[^"]*","round_trips":9,/]
--- no_error_log
[error]
[alert]



=== TEST 4: a page read again after the worker cache let it go: one round trip of plain commands (its field names, rollback and gray entries, and the version read last, by the worker's hint), not the read script
--- http_config
dynpage_cache_size 64k;
dynpage_output_cache_size 0;
--- redis
HSET dynpage:page:/a 1000 '{"template":"one"}'
HSET dynpage:page:/a 2000 '{"template":"two"}'
--- config
dynpage_cache_ttl 60s;
location / { dynpage_page $uri; add_header X-Cache $dynpage_cache_status always; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; proxy_read_timeout 60s; }
--- timeout: 60
--- request eval
["GET /a", "GET /ctl/burst?prefix=/tail/&count=2000&rounds=1", "POST /ctl/redis\nCONFIG RESETSTAT",
 "GET /a", "POST /ctl/redis\nINFO commandstats"]
--- response_body_like eval
["^two\$", "^404=2000\n\$", "^OK\n\$", "^two\$",
 qr/\A(?!.*cmdstat_eval)(?=.*cmdstat_hkeys:calls=1,)(?=.*cmdstat_hget:calls=3,)/s]
--- response_headers eval
["X-Cache: MISS", "", "", "X-Cache: MISS", ""]
--- no_error_log
[error]



=== TEST 5: twenty cold pages asked for at once while Redis is slow: their fetches share round trips (a fetch thread takes the jobs waiting behind the one it was on), far fewer than one each
--- http_config
dynpage_redis_timeout 5s;
--- redis
HSET dynpage:tpl:item 1000 'item {{ id }}'
HSET dynpage:page:/q/1 1000 '{"template":{"name":"item"},"data":{"id":1}}'
HSET dynpage:page:/q/2 1000 '{"template":{"name":"item"},"data":{"id":2}}'
HSET dynpage:page:/q/3 1000 '{"template":{"name":"item"},"data":{"id":3}}'
HSET dynpage:page:/q/4 1000 '{"template":{"name":"item"},"data":{"id":4}}'
HSET dynpage:page:/q/5 1000 '{"template":{"name":"item"},"data":{"id":5}}'
HSET dynpage:page:/q/6 1000 '{"template":{"name":"item"},"data":{"id":6}}'
HSET dynpage:page:/q/7 1000 '{"template":{"name":"item"},"data":{"id":7}}'
HSET dynpage:page:/q/8 1000 '{"template":{"name":"item"},"data":{"id":8}}'
HSET dynpage:page:/q/9 1000 '{"template":{"name":"item"},"data":{"id":9}}'
HSET dynpage:page:/q/10 1000 '{"template":{"name":"item"},"data":{"id":10}}'
HSET dynpage:page:/q/11 1000 '{"template":{"name":"item"},"data":{"id":11}}'
HSET dynpage:page:/q/12 1000 '{"template":{"name":"item"},"data":{"id":12}}'
HSET dynpage:page:/q/13 1000 '{"template":{"name":"item"},"data":{"id":13}}'
HSET dynpage:page:/q/14 1000 '{"template":{"name":"item"},"data":{"id":14}}'
HSET dynpage:page:/q/15 1000 '{"template":{"name":"item"},"data":{"id":15}}'
HSET dynpage:page:/q/16 1000 '{"template":{"name":"item"},"data":{"id":16}}'
HSET dynpage:page:/q/17 1000 '{"template":{"name":"item"},"data":{"id":17}}'
HSET dynpage:page:/q/18 1000 '{"template":{"name":"item"},"data":{"id":18}}'
HSET dynpage:page:/q/19 1000 '{"template":{"name":"item"},"data":{"id":19}}'
HSET dynpage:page:/q/20 1000 '{"template":{"name":"item"},"data":{"id":20}}'
--- config
location /q/ { dynpage_page $uri; }
location = /status { dynpage_status; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; proxy_read_timeout 30s; }
--- timeout: 30
--- request eval
["GET /ctl/parallel?prefix=/q/&count=20&freeze=300", "GET /q/7", "GET /status"]
--- response_body_like eval
["^200=20\n\$", "^item 7\$", qr/"kind":"redis","name":"[^"]*","round_trips":[1-9],/]
--- no_error_log
[error]
[alert]



=== TEST 6: the same with a CMS behind Redis: each request's fetch goes alone (the CMS is asked one page at a time, so merged fetches would wait for each other's CMS answers)
--- http_config
dynpage_redis_timeout 5s;
dynpage_cms http://127.0.0.1:$TEST_NGINX_CMS_PORT/snapshot;
--- redis
HSET dynpage:tpl:item 1000 'item {{ id }}'
HSET dynpage:page:/q/1 1000 '{"template":{"name":"item"},"data":{"id":1}}'
HSET dynpage:page:/q/2 1000 '{"template":{"name":"item"},"data":{"id":2}}'
HSET dynpage:page:/q/3 1000 '{"template":{"name":"item"},"data":{"id":3}}'
HSET dynpage:page:/q/4 1000 '{"template":{"name":"item"},"data":{"id":4}}'
HSET dynpage:page:/q/5 1000 '{"template":{"name":"item"},"data":{"id":5}}'
HSET dynpage:page:/q/6 1000 '{"template":{"name":"item"},"data":{"id":6}}'
HSET dynpage:page:/q/7 1000 '{"template":{"name":"item"},"data":{"id":7}}'
HSET dynpage:page:/q/8 1000 '{"template":{"name":"item"},"data":{"id":8}}'
HSET dynpage:page:/q/9 1000 '{"template":{"name":"item"},"data":{"id":9}}'
HSET dynpage:page:/q/10 1000 '{"template":{"name":"item"},"data":{"id":10}}'
--- config
location /q/ { dynpage_page $uri; }
location = /status { dynpage_status; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; proxy_read_timeout 30s; }
--- timeout: 30
--- request eval
["GET /ctl/parallel?prefix=/q/&count=10&freeze=300", "GET /q/7", "GET /status"]
--- response_body_like eval
["^200=10\n\$", "^item 7\$", qr/"kind":"redis","name":"[^"]*","round_trips":1[01],/]
--- no_error_log
[error]
[alert]
