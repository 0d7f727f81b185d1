# Releases: pre-release for allowed clients, gray by bucket, templates as documents, and
# P events making every change visible on every worker at once.
use t::TestDynpage;

plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: predeploy=true from an allowed client gets the predeploy version, kept off shared caches; the production version came with the meta (source=l1 next)
--- redis
HSET dynpage:page:/a 1000 '{"template":"prod"}'
HSET dynpage:page:/a predeploy '{"template":"pre"}'
--- config
dynpage_predeploy_allow 127.0.0.1;
dynpage_debug_header on;
location / { dynpage_page $uri; }
--- request eval
["GET /a?predeploy=true", "GET /a"]
--- response_body eval
["pre", "prod"]
--- response_headers eval
["Cache-Control: private, no-store\nX-Dynpage: variant=predeploy; version=predeploy; source=redis",
 "Cache-Control: public, max-age=5\nX-Dynpage: variant=production; version=1000; source=l1"]



=== TEST 2: a client that is not allowed gets exactly production, with one info line and nothing that reveals a pre-release
--- redis
HSET dynpage:page:/a 1000 '{"template":"prod"}'
HSET dynpage:page:/a predeploy '{"template":"pre"}'
--- config
dynpage_predeploy_allow 10.0.0.0/8 2001:db8::/32;
location / { dynpage_page $uri; }
--- request eval
["GET /a?predeploy=true", "GET /a"]
--- response_body eval
["prod", "prod"]
--- response_headers eval
["Cache-Control: public, max-age=5\n!X-Dynpage",
 "Cache-Control: public, max-age=5\n!X-Dynpage"]
--- grep_error_log eval
qr/\[info\] .*client not allowed by dynpage_predeploy_allow, serving production/
--- grep_error_log_out eval
qr/\A\[info\] [^\n]*page "\/a": client not allowed by dynpage_predeploy_allow, serving production\n\z/



=== TEST 3: nobody is allowed by default; a predeploy= value other than "true" is ignored with one line
--- redis
HSET dynpage:page:/a 1000 '{"template":"prod"}'
HSET dynpage:page:/a predeploy '{"template":"pre"}'
--- config
location /x/ { dynpage_page /a; }
location /y/ { dynpage_page /a; dynpage_predeploy_allow all; }
--- request eval
["GET /y/?predeploy=1", "GET /x/?predeploy=true", "GET /y/?predeploy=true"]
--- response_body eval
["prod", "prod", "pre"]
--- grep_error_log: predeploy="1" is not "true", ignored
--- grep_error_log_out
predeploy="1" is not "true", ignored



=== TEST 4: dynpage_predeploy_allow is inherited, and a level with its own list replaces it
--- redis
HSET dynpage:page:/a 1000 '{"template":"prod"}'
HSET dynpage:page:/a predeploy '{"template":"pre"}'
--- http_config
dynpage_predeploy_allow 127.0.0.0/8;
--- config
location /inherit/ { dynpage_page /a; }
location /own/ { dynpage_page /a; dynpage_predeploy_allow 192.168.0.0/16; }
location /none/ { dynpage_page /a; dynpage_predeploy_allow none; }
--- request eval
["GET /inherit/?predeploy=true", "GET /own/?predeploy=true", "GET /none/?predeploy=true"]
--- response_body eval
["pre", "prod", "prod"]



=== TEST 5: a network with host bits set is refused by nginx -t
--- config
location / { dynpage_page $uri; dynpage_predeploy_allow 10.0.0.1/8; }
--- must_die
--- suppress_stderr
--- error_log eval
qr{\[emerg\] .*\Q"dynpage_predeploy_allow" directive has invalid value: "10.0.0.1/8" has bits set to the right of the /8 mask\E}



=== TEST 6: gray share 100 serves abVersion to every user, privately; share 0 or no user keeps production
--- redis
HSET dynpage:page:/g 1000 '{"template":"prod"}'
HSET dynpage:page:/g abVersion '{"template":"gray"}'
HSET dynpage:gray page:/g 100
HSET dynpage:page:/h 1000 '{"template":"prod"}'
HSET dynpage:page:/h abVersion '{"template":"gray"}'
HSET dynpage:gray page:/h 0
--- config
dynpage_gray_by $arg_user;
location / { dynpage_page $uri; }
--- request eval
["GET /g?user=alice", "GET /g", "GET /h?user=alice"]
--- response_body eval
["gray", "prod", "prod"]
--- response_headers eval
["Cache-Control: private, no-store", "Cache-Control: public, max-age=5", ""]



=== TEST 7: gray at 30%: each user's side is their bucket (hash of dynpage_gray_by value and page key) < 30, on every request
--- redis
HSET dynpage:page:/g 1000 '{"template":"prod"}'
HSET dynpage:page:/g abVersion '{"template":"gray"}'
HSET dynpage:gray page:/g 30
--- config
dynpage_gray_by $arg_user;
location / { dynpage_page $uri; }
--- request eval
[map { "GET /g?user=user-$_" } (0 .. 19, 0 .. 19)]
--- response_body eval
[map { t::TestDynpage::gray_bucket("user-$_", "/g") < 30 ? "gray" : "prod" } (0 .. 19, 0 .. 19)]



=== TEST 8: a bad gray share and an abVersion without a share are logged once and ignored
--- redis
HSET dynpage:page:/g 1000 '{"template":"prod"}'
HSET dynpage:page:/g abVersion '{"template":"gray"}'
HSET dynpage:gray page:/g lots
HSET dynpage:page:/n 1000 '{"template":"prod"}'
HSET dynpage:page:/n abVersion '{"template":"gray"}'
--- config
dynpage_cache_ttl 0;
location / { dynpage_page $uri; }
--- pipelined_requests eval
["GET /g", "GET /g", "GET /n"]
--- response_body eval
["prod", "prod", "prod"]
--- grep_error_log eval
qr/page "\/[gn]": (?:gray share|abVersion).*?(?=, client: |$)/
--- grep_error_log_out
page "/g": gray share "lots" is not 0-100, ignored
page "/n": abVersion has no gray share, so nobody is served it



=== TEST 9: $dynpage_variant, $dynpage_version and $dynpage_source describe what was served
--- redis
HSET dynpage:page:/a 1000 '{"template":"prod"}'
HSET dynpage:page:/a predeploy '{"template":"pre"}'
--- config
dynpage_predeploy_allow 127.0.0.1;
location / {
    dynpage_page $uri;
    add_header X-Served "$dynpage_variant/$dynpage_version/$dynpage_source";
}
location /other { return 200 "[$dynpage_variant]"; }
--- request eval
["GET /a", "GET /a", "GET /a?predeploy=true", "GET /other"]
--- response_headers eval
["X-Served: production/1000/redis", "X-Served: production/1000/l1",
 "X-Served: predeploy/predeploy/redis", ""]
--- response_body eval
["prod", "prod", "pre", "[]"]



=== TEST 10: templates are documents: a page that names only the template follows its predeploy and gray (abVersion came with the meta: source=l1); an exact version does not
--- redis
HSET dynpage:tpl:item 1000 'old {{ t }}'
HSET dynpage:tpl:item predeploy 'pre {{ t }}'
HSET dynpage:tpl:item abVersion 'gray {{ t }}'
HSET dynpage:gray tpl:item 100
HSET dynpage:page:/follow 1000 '{"template":{"name":"item"},"data":{"t":"x"}}'
HSET dynpage:page:/exact 1000 '{"template":{"name":"item","version":1000},"data":{"t":"x"}}'
--- config
dynpage_predeploy_allow 127.0.0.1;
dynpage_debug_header on;
location /u/ { dynpage_page /follow; }
location /e/ { dynpage_page /exact; }
location /nouser/ { dynpage_page /follow; dynpage_gray_by $arg_nobody; }
--- request eval
["GET /u/?predeploy=true", "GET /u/", "GET /e/?predeploy=true", "GET /e/", "GET /nouser/"]
--- response_body eval
["pre x", "gray x", "old x", "old x", "old x"]
--- response_headers eval
["Cache-Control: private, no-store\nX-Dynpage: variant=predeploy; version=1000; source=redis",
 "Cache-Control: private, no-store\nX-Dynpage: variant=gray; version=1000; source=l1",
 "Cache-Control: public, max-age=5",
 "Cache-Control: public, max-age=5",
 "Cache-Control: public, max-age=5"]



=== TEST 11: a template's rollback pin and scheduled version apply to the pages that follow it
--- redis
HSET dynpage:tpl:item 1000 'one'
HSET dynpage:tpl:item 2000 'two'
HSET dynpage:page:/follow 1000 '{"template":{"name":"item"}}'
--- config
dynpage_cache_ttl 60s;
location / { dynpage_page /follow; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- request eval
["POST /ctl/redis\nHSET dynpage:tpl:item {now+1500} 'three'",
 "GET /", "POST /ctl/redis\nHSET dynpage:rollback tpl:item 1000\nPUBLISH dynpage:events dynpage:tpl:item",
 "GET /", "POST /ctl/redis\nHDEL dynpage:rollback tpl:item\nPUBLISH dynpage:events dynpage:tpl:item",
 "GET /", "GET /ctl/sleep/1700", "GET /"]
--- response_body_like eval
["^1\n\$", "^two\$", "^1\n[1-9]\\d*\n\$", "^one\$", "^1\n[1-9]\\d*\n\$", "^two\$", "slept", "^three\$"]



=== TEST 12: with a 60s TTL, a publish, a gray change and a rollback are visible at once through P events
--- redis
HSET dynpage:page:/a 1000 '{"template":"one"}'
HSET dynpage:page:/a abVersion '{"template":"gray"}'
--- config
dynpage_cache_ttl 60s;
dynpage_gray_by $arg_u;
location / { dynpage_page $uri; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- request eval
["GET /a?u=1",
 "POST /ctl/redis\nHSET dynpage:page:/a 2000 '{\"template\":\"two\"}'\nPUBLISH dynpage:events dynpage:page:/a",
 "GET /a?u=1",
 "POST /ctl/redis\nHSET dynpage:gray page:/a 100\nPUBLISH dynpage:events dynpage:page:/a",
 "GET /a?u=1",
 "POST /ctl/redis\nHDEL dynpage:gray page:/a\nHSET dynpage:rollback page:/a 1000\nPUBLISH dynpage:events dynpage:rollback",
 "GET /a?u=1"]
--- response_body_like eval
["^one\$", "^1\n[1-9]\\d*\n\$", "^two\$", "^1\n[1-9]\\d*\n\$", "^gray\$", "^1\n1\n[1-9]\\d*\n\$",
 "^one\$"]



=== TEST 13: the subscription comes back by itself after its connection is killed, and resyncs
--- redis
HSET dynpage:page:/a 1000 '{"template":"one"}'
--- config
dynpage_cache_ttl 60s;
location / { dynpage_page $uri; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- pipelined_requests eval
["GET /a", "POST /ctl/redis\nCLIENT KILL TYPE pubsub\nHSET dynpage:page:/a 2000 '{\"template\":\"two\"}'",
 "GET /ctl/sleep/400", "GET /a"]
--- response_body_like eval
["^one\$", "^[1-9]\\d*\n1\n\$", "slept", "^two\$"]
--- error_log
events subscription to redis
