# Layout rules (README "Redis layout"): every number in the layout is canonical decimal (digits
# only: no sign, no spaces, no leading zero, no point or exponent, within range). A document
# field, rollback pin or gray share that is not is ignored with one warn line per document
# change, never read as some other number; a snapshot naming a template version that is not is
# unusable (its page falls back). dynpagectl refuses all of them (ctl/tests/cli.rs).
use t::TestDynpage;

plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: "02000" beside "1000" is not version 2000: the page serves 1000 (not 404), warned once per document change
--- redis
HSET dynpage:page:/a 1000 '{"template":"good"}'
HSET dynpage:page:/a 02000 '{"template":"shadow"}'
--- config
dynpage_cache_ttl 0;
location / { dynpage_page $uri; add_header X-Served "$dynpage_variant/$dynpage_version"; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- pipelined_requests eval
["GET /a", "GET /a", "GET /a",
 "POST /ctl/redis\nHSET dynpage:page:/a +3000 '{\"template\":\"signed\"}'",
 "GET /a", "GET /a"]
--- error_code eval
[200, 200, 200, 200, 200, 200]
--- response_body_like eval
["^good\$", "^good\$", "^good\$", "^1\n\$", "^good\$", "^good\$"]
--- response_headers eval
["X-Served: production/1000", "X-Served: production/1000", "X-Served: production/1000", "",
 "X-Served: production/1000", "X-Served: production/1000"]
--- grep_error_log eval
qr/\[warn\] [^\n]*not versions ignored[^\n]*/
--- grep_error_log_out eval
qr/\A\[warn\] [^\n]*dynpage: page "\/a": 1 field\(s\) that are not versions ignored: "02000" \(not canonical: it has a leading zero\)[^\n]*
\[warn\] [^\n]*dynpage: page "\/a": 2 field\(s\) that are not versions ignored: (?=[^\n]*"02000" \(not canonical: it has a leading zero\))(?=[^\n]*"\+3000" \(not canonical: it has a sign\))[^\n]*
\z/
--- no_error_log
does not exist



=== TEST 2: other shapes that look like versions (spaces, sign, point, exponent, out of range) are ignored and named, one line per document
--- redis
HSET dynpage:page:/b 1000 '{"template":"b"}'
HSET dynpage:page:/b ' 2000' '{"template":"x"}'
HSET dynpage:page:/b -2000 '{"template":"x"}'
HSET dynpage:page:/b 2e3 '{"template":"x"}'
HSET dynpage:page:/b 2000.0 '{"template":"x"}'
HSET dynpage:page:/c 1000 '{"template":"c"}'
HSET dynpage:page:/c 253402300800000 '{"template":"x"}'
HSET dynpage:page:/c 99999999999999999999 '{"template":"x"}'
HSET dynpage:page:/c draft '{"template":"x"}'
--- config
dynpage_cache_ttl 0;
location / { dynpage_page $uri; }
--- pipelined_requests eval
["GET /b", "GET /c", "GET /b", "GET /c"]
--- response_body_like eval
["^b\$", "^c\$", "^b\$", "^c\$"]
--- grep_error_log eval
qr/\[warn\] [^\n]*not versions ignored[^\n]*/
--- grep_error_log_out eval
qr/\A\[warn\] [^\n]*page "\/b": 4 field\(s\) that are not versions ignored: (?=[^\n]*" 2000" \(not canonical: it has spaces\))(?=[^\n]*"-2000" \(not canonical: it has a sign\))(?=[^\n]*"2e3" \(not canonical: it is not a whole number\))(?=[^\n]*"2000\.0" \(not canonical: it is not a whole number\))[^\n]*
\[warn\] [^\n]*page "\/c": 3 field\(s\) that are not versions ignored: (?=[^\n]*"253402300800000" \(over the greatest version 253402300799999\))(?=[^\n]*"99999999999999999999" \(over the greatest version 253402300799999\))(?=[^\n]*"draft")[^\n]*
\z/



=== TEST 3: a scheduled version written with a leading zero never goes live: the page stays on 1000 instead of turning 404
--- redis
HSET dynpage:page:/s 1000 '{"template":"now"}'
HSET dynpage:page:/s 0{now+300} '{"template":"never"}'
--- config
location / { dynpage_page $uri; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- request eval
["GET /s", "GET /ctl/sleep/500", "GET /s"]
--- error_code eval
[200, 200, 200]
--- response_body_like eval
["^now\$", "^slept\n\$", "^now\$"]
--- grep_error_log eval
qr/\[warn\] [^\n]*not versions ignored[^\n]*/
--- grep_error_log_out eval
qr/\A\[warn\] [^\n]*page "\/s": 1 field\(s\) that are not versions ignored: "0\d{13}" \(not canonical: it has a leading zero\)[^\n]*\n\z/



=== TEST 4: a rollback pin that is not canonical is ignored with a warning (production as if unpinned); a canonical one pins
--- redis
HSET dynpage:page:/p 1000 '{"template":"one"}'
HSET dynpage:page:/p 2000 '{"template":"two"}'
HSET dynpage:rollback page:/p 01000
HSET dynpage:page:/q 1000 '{"template":"one"}'
HSET dynpage:page:/q 2000 '{"template":"two"}'
HSET dynpage:rollback page:/q ' 1000'
HSET dynpage:page:/r 1000 '{"template":"one"}'
HSET dynpage:page:/r 2000 '{"template":"two"}'
HSET dynpage:rollback page:/r 1000
--- config
dynpage_cache_ttl 0;
location / { dynpage_page $uri; }
--- pipelined_requests eval
["GET /p", "GET /q", "GET /r", "GET /p", "GET /q"]
--- response_body_like eval
["^two\$", "^two\$", "^one\$", "^two\$", "^two\$"]
--- grep_error_log eval
qr/\[warn\] [^\n]*rollback pin[^\n]*/
--- grep_error_log_out eval
qr/\A\[warn\] [^\n]*page "\/p": rollback pin "01000" is not a canonical version: it has a leading zero, ignored[^\n]*
\[warn\] [^\n]*page "\/q": rollback pin " 1000" is not a canonical version: it has spaces, ignored[^\n]*
\z/



=== TEST 5: a gray share that is not canonical ("0100", "+100") is ignored with a warning: everyone gets production
--- redis
HSET dynpage:page:/g 1000 '{"template":"prod"}'
HSET dynpage:page:/g abVersion '{"template":"gray"}'
HSET dynpage:gray page:/g 0100
HSET dynpage:page:/h 1000 '{"template":"prod"}'
HSET dynpage:page:/h abVersion '{"template":"gray"}'
HSET dynpage:gray page:/h +100
HSET dynpage:page:/i 1000 '{"template":"prod"}'
HSET dynpage:page:/i abVersion '{"template":"gray"}'
HSET dynpage:gray page:/i 100
--- config
dynpage_cache_ttl 0;
dynpage_gray_by $arg_user;
location / { dynpage_page $uri; }
--- pipelined_requests eval
["GET /g?user=u", "GET /h?user=u", "GET /i?user=u", "GET /g?user=v", "GET /h?user=v"]
--- response_body_like eval
["^prod\$", "^prod\$", "^gray\$", "^prod\$", "^prod\$"]
--- grep_error_log eval
qr/\[warn\] [^\n]*gray share[^\n]*/
--- grep_error_log_out eval
qr/\A\[warn\] [^\n]*page "\/g": gray share "0100" is not canonical: it has a leading zero, ignored[^\n]*
\[warn\] [^\n]*page "\/h": gray share "\+100" is not canonical: it has a sign, ignored[^\n]*
\z/



=== TEST 6: a snapshot's exact template version: "100" as a string is version 100; "0200" makes the snapshot unusable, so the page falls back
--- redis
HSET dynpage:tpl:t 100 'v1'
HSET dynpage:tpl:t 200 'v2'
HSET dynpage:page:/x 1000 '{"template":{"name":"t","version":"100"}}'
HSET dynpage:page:/y 1000 '{"template":{"name":"t","version":100}}'
HSET dynpage:page:/y 2000 '{"template":{"name":"t","version":"0200"}}'
--- config
dynpage_debug_header on;
location / { dynpage_page $uri; }
--- pipelined_requests eval
["GET /x", "GET /y", "GET /y"]
--- response_body_like eval
["^v1\$", "^v1\$", "^v1\$"]
--- response_headers eval
["X-Dynpage: variant=production; version=1000; source=redis",
 "X-Dynpage: variant=production; version=1000; source=fallback", ""]
--- error_log eval
qr/\[alert\] .*dynpage: page "\/y" version 2000 failed: snapshot "template" version "0200"/
--- grep_error_log eval
qr/\[\w+\] [^\n]*page "\/y"[^\n]*/
--- grep_error_log_out eval
qr/\A\[alert\] [^\n]*page "\/y" version 2000 failed: snapshot "template" version "0200" is not a canonical version: it has a leading zero; serving version 1000 \(template "t" version 100\) instead[^\n]*\n\z/



=== TEST 7: a template document follows the same rules: "0200" beside "100" is ignored, the page renders with version 100
--- redis
HSET dynpage:tpl:t 100 'v1'
HSET dynpage:tpl:t 0200 'v2'
HSET dynpage:page:/f 1000 '{"template":{"name":"t"}}'
--- config
dynpage_cache_ttl 0;
location / { dynpage_page $uri; }
--- pipelined_requests eval
["GET /f", "GET /f", "GET /f"]
--- response_body_like eval
["^v1\$", "^v1\$", "^v1\$"]
--- grep_error_log eval
qr/\[warn\] [^\n]*not versions ignored[^\n]*/
--- grep_error_log_out eval
qr/\A\[warn\] [^\n]*template "t": 1 field\(s\) that are not versions ignored: "0200" \(not canonical: it has a leading zero\)[^\n]*\n\z/
