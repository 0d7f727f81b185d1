# Suspended requests survive `nginx -s reload`; no thread or worker is left behind.
use t::TestDynpage;

master_on();
workers(1);
plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: a request waiting for Redis completes across a reload
--- http_config
dynpage_redis_timeout 3s;
--- redis
HSET dynpage:page:/p/slow 1000 '{"template":"slow but fine"}'
--- config
location /p/ { dynpage_page $uri; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
location = /t {
    default_type text/html;
    ssi on;
    return 200 '<!--# include virtual="/ctl/freeze" wait="yes" -->[<!--# include virtual="/p/slow" -->]<!--# include virtual="/ctl/reload-thaw" -->';
}
--- request
GET /t
--- response_body
frozen
[slow but fine]reloaded and thawed
--- wait: 0.5
--- no_error_log
[alert]
[crit]
left in connection



=== TEST 2: reloads leave one worker with its two fetch threads (the default) and events thread, and none in the master
--- redis
HSET dynpage:page:/a 1000 '{"template":"a"}'
--- config
location / { dynpage_page $uri; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- request eval
["GET /a", "GET /ctl/reload", "GET /ctl/sleep/700", "GET /a", "GET /ctl/reload", "GET /ctl/sleep/700",
 "GET /a", "GET /ctl/nginx-stats?settle"]
--- response_body_like eval
["^a\$", "reloaded", "slept", "^a\$", "reloaded", "slept", "^a\$",
 "^master_threads=1 workers=1 threads=4\$"]
--- no_error_log
[alert]
[crit]



=== TEST 3: dynpage_fetch_threads sets how many fetch threads each worker runs; one serves pages
--- http_config
dynpage_fetch_threads 1;
--- redis
HSET dynpage:page:/a 1000 '{"template":"a"}'
HSET dynpage:page:/b 1000 '{"template":"b"}'
--- config
location / { dynpage_page $uri; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- request eval
["GET /a", "GET /b", "GET /a", "GET /ctl/nginx-stats?settle"]
--- response_body_like eval
["^a\$", "^b\$", "^a\$", "^master_threads=1 workers=1 threads=3\$"]
--- no_error_log
[alert]
[crit]
