# Two workers with a 60 s cache TTL: a publish announced on P events is visible from every
# worker within 100 ms (bench/propagation.sh measures the p50/p99).
use t::TestDynpage;

workers(2);
master_on();
plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: two workers, a 60s TTL: a publish is visible from every worker within 100 ms
--- http_config
server {
    listen 127.0.0.1:$TEST_NGINX_EXTRA_PORT reuseport;
    dynpage_cache_ttl 60s;
    location / { dynpage_page $uri; add_header X-Pid $pid; }
}
--- redis
HSET dynpage:page:/a 1000 '{"template":"one"}'
--- config
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- request eval
"POST /ctl/propagate?port=$ENV{TEST_NGINX_EXTRA_PORT}&path=/a&expect=two&workers=2&limit=100
HSET dynpage:page:/a 2000 '{\"template\":\"two\"}'
PUBLISH dynpage:events dynpage:page:/a"
--- response_body_like: ^workers=2 all-visible visible_ms=\d+$
