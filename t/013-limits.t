# Limits (issue 12 D1, D2, item 3): templates nested too deep are refused before they are
# compiled (the worker lives); a render has a budget of output, includes and steps, so a bomb
# neither crashes nor holds the event loop; a module or a render that failed is not rendered
# again for the same inputs until the TTL passes.
use t::TestDynpage;

plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: a template release nested 1,500 parentheses deep is refused, not compiled: the worker lives and the page falls back to the template before it; dynpagectl refuses it with line and column
--- redis eval
"HSET dynpage:tpl:parens 1000 before\n"
. "HSET dynpage:tpl:parens 2000 '{{ " . ("(" x 1500) . "x" . (")" x 1500) . " }}'\n"
. "HSET dynpage:page:/p/parens 1000 '{\"template\":{\"name\":\"parens\"},\"data\":{}}'"
--- config
location /p/ { dynpage_page $uri; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- request eval
["GET /p/parens", "GET /p/parens",
 "POST /ctl/dynpagectl\ntemplate\nput\nparens\nfile:{{ " . ("(" x 1500) . "x" . (")" x 1500) . " }}"]
--- response_body_like eval
["^before\$", "^before\$",
 "^exit=1\ndynpagectl: [^\n]*: template is nested too deep: an expression nests brackets, parentheses and filters more than 100 deep at line 1, column 104\n\$"]
--- grep_error_log eval
qr/\[(?:alert|error)\] [^\n]*page "\/p\/\w+"[^\n]*?(?:instead|renders)/
--- grep_error_log_out eval
qr/\A\[alert\] [^\n]*page "\/p\/parens" version 1000 \(template "parens" version 2000\) failed: template "parens" version 2000: template is nested too deep: an expression nests [^\n]* at line 1, column 104; serving version 1000 \(template "parens" version 1000\) instead\n\z/
--- no_error_log eval
qr/\[alert\] [^\n]*exited on signal/



=== TEST 2: 3,000 nested ifs with nothing before: a 500, logged once; dynpagectl refuses them
--- redis eval
"HSET dynpage:tpl:ifs 2000 '" . ("{% if a %}" x 3000) . "x" . ("{% endif %}" x 3000) . "'\n"
. "HSET dynpage:page:/p/ifs 1000 '{\"template\":{\"name\":\"ifs\"},\"data\":{}}'"
--- config
location /p/ { dynpage_page $uri; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- request eval
["GET /p/ifs", "GET /p/ifs",
 "POST /ctl/dynpagectl\ntemplate\nput\nifs\nfile:" . ("{% if a %}" x 3000) . "x" . ("{% endif %}" x 3000)]
--- error_code eval
[500, 500, 200]
--- response_body_like eval
["500", "500",
 "^exit=1\ndynpagectl: [^\n]*: template is nested too deep: blocks \\(if, else if, for, with\\) nest more than 100 deep at line 1, column 1001\n\$"]
--- grep_error_log eval
qr/\[(?:alert|error)\] [^\n]*page "\/p\/\w+"[^\n]*?(?:instead|renders)/
--- grep_error_log_out eval
qr/\A\[error\] [^\n]*page "\/p\/ifs" version 1000 \(template "ifs" version 2000\) failed: template "ifs" version 2000: template is nested too deep: blocks [^\n]* at line 1, column 1001; no earlier version renders\n\z/
--- no_error_log eval
qr/\[alert\] [^\n]*exited on signal/



=== TEST 3: 10,000 levels (which crashed dynpagectl too): refused by the module and by dynpagectl alike
--- redis eval
"HSET dynpage:tpl:deep 2000 '" . ("{% if a %}" x 10000) . "x" . ("{% endif %}" x 10000) . "'\n"
. "HSET dynpage:tpl:list 2000 '{{ " . ("[" x 10000) . "1" . ("]" x 10000) . " }}'\n"
. "HSET dynpage:page:/p/deep 1000 '{\"template\":{\"name\":\"deep\"},\"data\":{}}'\n"
. "HSET dynpage:page:/p/list 1000 '{\"template\":{\"name\":\"list\"},\"data\":{}}'"
--- config
location /p/ { dynpage_page $uri; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- request eval
["GET /p/deep", "GET /p/list",
 "POST /ctl/dynpagectl\ntemplate\nput\ndeep\nfile:" . ("{% if a %}" x 10000) . "x" . ("{% endif %}" x 10000),
 "POST /ctl/dynpagectl\npage\nput\n/p/list\n--data\nfile:{}\n--template-file\nfile:{{ " . ("[" x 10000) . "1" . ("]" x 10000) . " }}",
 "POST /ctl/redis\nHLEN dynpage:tpl:deep\nHLEN dynpage:page:/p/list"]
--- error_code eval
[500, 500, 200, 200, 200]
--- response_body_like eval
["500", "500",
 "^exit=1\n[^\n]*nested too deep: blocks [^\n]* at line 1, column 1001\n\$",
 "^exit=1\n[^\n]*nested too deep: an expression [^\n]* at line 1, column 104\n\$",
 "^1\n1\$"]
--- error_log eval
qr/page "\/p\/deep" version 1000 \(template "deep" version 2000\) failed: [^\n]*nested too deep: blocks [^\n]* at line 1, column 1001; no earlier version renders/
--- no_error_log eval
qr/\[alert\] [^\n]*exited on signal/



=== TEST 4: ten templates each including the next 8 times (issue 12 D2): the render stops at the include budget, a 500 logged once, and is not rendered again within the TTL
--- redis eval
my $redis = "HSET dynpage:tpl:t9 1000 x\n";
$redis .= "HSET dynpage:tpl:t$_ 1000 '" . (("{% include \"t" . ($_ + 1) . "\" %}") x 8) . "'\n" for 0 .. 8;
$redis . "HSET dynpage:page:/p/fan 1000 '{\"template\":{\"name\":\"t0\"},\"data\":{}}'"
--- config
dynpage_cache_ttl 60s;
location /p/ { dynpage_page $uri; }
--- log_level: debug
--- request eval
["GET /p/fan", "GET /p/fan", "GET /p/fan"]
--- error_code eval
[500, 500, 500]
--- grep_error_log eval
qr/\[(?:alert|error)\] [^\n]*page "\/p\/\w+"[^\n]*?(?:instead|renders)|rendered "\/p\/fan" version \d+ \(template "t0" version \d+\) in \d+ pass/
--- grep_error_log_out eval
qr/\Arendered "\/p\/fan" version 1000 \(template "t0" version 1000\) in 1 pass
\[error\] [^\n]*page "\/p\/fan" version 1000 \(template "t0" version 1000\) failed: render failed: it expands over 10000 includes [^\n]*; no earlier version renders
\z/
--- no_error_log eval
qr/\[alert\] [^\n]*exited on signal/




=== TEST 5: a release whose includes fan out falls back to the template before it, like any render failure
--- redis eval
my $redis = "HSET dynpage:tpl:t9 1000 x\n";
$redis .= "HSET dynpage:tpl:t$_ 1000 '" . (("{% include \"t" . ($_ + 1) . "\" %}") x 8) . "'\n" for 0 .. 8;
$redis . "HSET dynpage:tpl:fb 1000 fine\nHSET dynpage:tpl:fb 2000 '{% include \"t0\" %}'\n"
. "HSET dynpage:page:/p/fb 1000 '{\"template\":{\"name\":\"fb\"},\"data\":{}}'"
--- config
dynpage_cache_ttl 60s;
dynpage_debug_header on;
location /p/ { dynpage_page $uri; }
--- request eval
["GET /p/fb", "GET /p/fb"]
--- response_body eval
["fine", "fine"]
--- response_headers eval
["X-Dynpage: variant=production; version=1000; source=fallback",
 "X-Dynpage: variant=production; version=1000; source=fallback"]
--- grep_error_log eval
qr/\[(?:alert|error)\] [^\n]*page "\/p\/\w+"[^\n]*?(?:instead|renders)/
--- grep_error_log_out eval
qr/\A\[alert\] [^\n]*page "\/p\/fb" version 1000 \(template "fb" version 2000\) failed: render failed: it expands over 10000 includes [^\n]*; serving version 1000 \(template "fb" version 1000\) instead\n\z/
--- no_error_log eval
qr/\[alert\] [^\n]*exited on signal/




=== TEST 6: while the fan-out bomb is requested, a cached page on the same worker is answered within 50 ms
--- redis eval
my $redis = "HSET dynpage:tpl:t9 1000 x\n";
$redis .= "HSET dynpage:tpl:t$_ 1000 '" . (("{% include \"t" . ($_ + 1) . "\" %}") x 8) . "'\n" for 0 .. 8;
$redis . "HSET dynpage:page:/p/fan 1000 '{\"template\":{\"name\":\"t0\"},\"data\":{}}'\n"
. "HSET dynpage:page:/p/cached 1000 '{\"template\":\"cached\",\"data\":{}}'"
--- config
dynpage_cache_ttl 60s;
location /p/ { dynpage_page $uri; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- request eval
["GET /p/cached", "GET /ctl/race?slow=/p/fan&fast=/p/cached&limit=100"]
--- response_body_like eval
["^cached\$", "^fast=200 slow=500 fast-first slow_ms=\\d{1,3} "]
--- timeout: 5
--- no_error_log eval
qr/\[alert\] [^\n]*exited on signal/




=== TEST 7: while a 170 MB page (issue 12 D2) is requested, a cached page is answered within 50 ms: the render stops at dynpage_render_max_size (4m by default) and falls back; dynpagectl refuses the page
--- redis eval
my $xs = "[" . ("0," x 999) . "0" . "]";
"HSET dynpage:tpl:huge 1000 before\n"
. "HSET dynpage:tpl:huge 2000 '{% for a in xs %}{% for b in xs %}{{ s }}{% endfor %}{% endfor %}'\n"
. "HSET dynpage:page:/p/huge 1000 '{\"template\":{\"name\":\"huge\"},\"data\":{\"xs\":$xs,\"s\":\"" . ("0123456789" x 17) . "\"}}'\n"
. "HSET dynpage:page:/p/cached 1000 '{\"template\":\"cached\",\"data\":{}}'"
--- config
dynpage_cache_ttl 60s;
location /p/ { dynpage_page $uri; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- request eval
["GET /p/cached", "GET /ctl/race?slow=/p/huge&fast=/p/cached&limit=100",
 "POST /ctl/dynpagectl\npage\nput\n/p/x\n--data\nfile:{\"xs\":[" . ("0," x 999) . "0" . "],\"s\":\"" . ("0123456789" x 17) . "\"}\n--template\nhuge"]
--- response_body_like eval
["^cached\$", "^fast=200 slow=200 fast-first slow_ms=\\d{1,3} ",
 "^exit=1\ndynpagectl: render failed: the output is over 4194304 bytes"]
--- timeout: 5
--- no_error_log eval
qr/\[alert\] [^\n]*exited on signal/




=== TEST 8: dynpage_render_max_size applies per location: a 68 kB page is over 64k there (falls back, logged once) and fine elsewhere
--- redis eval
"HSET dynpage:tpl:mid 1000 before\n"
. "HSET dynpage:tpl:mid 2000 '{% for a in xs %}{% for b in xs %}{{ s }}{% endfor %}{% endfor %}'\n"
. "HSET dynpage:page:/p/mid 1000 '{\"template\":{\"name\":\"mid\"},\"data\":{\"xs\":[" . ("0," x 19) . "0" . "],\"s\":\"" . ("0123456789" x 17) . "\"}}'"
--- config
location /p/ { dynpage_page $uri; }
location /small/ { dynpage_render_max_size 64k; dynpage_page /p/mid; }
--- request eval
["GET /small/", "GET /small/", "GET /p/mid"]
--- response_body_like eval
["^before\$", "^before\$", "^(?:0123456789){6800}\$"]
--- grep_error_log eval
qr/\[alert\] [^\n]*page "\/p\/mid"[^\n]*?instead/
--- grep_error_log_out eval
qr/\A\[alert\] [^\n]*page "\/p\/mid" version 1000 \(template "mid" version 2000\) failed: render failed: the output is over 65536 bytes \(the limit set by dynpage_render_max_size\); serving version 1000 \(template "mid" version 1000\) instead\n\z/
--- no_error_log eval
qr/\[alert\] [^\n]*exited on signal/




=== TEST 9: a module that fails is rendered once per inputs: later requests leave it out from the first pass (a debug line per render counts the passes), other request values are other inputs
--- redis
HSET dynpage:tpl:home 1000 '<{% include "banner" with hero %}|{% include "bad" with hero %}>'
HSET dynpage:tpl:banner 1000 'B:{{ title }}'
HSET dynpage:tpl:bad 1000 '{{ title.deeper }}'
SET hero:1 '{"title":"Sale"}'
--- config
dynpage_cache_ttl 60s;
location /home {
    dynpage_template home;
    dynpage_var device $arg_device;
    dynpage_data hero hero:1;
    # Each request renders (no kept output), so the memo of failed modules is what is seen.
    dynpage_output_cache off;
}
--- log_level: debug
--- pipelined_requests eval
["GET /home?device=pc", "GET /home?device=pc", "GET /home?device=pc",
 "GET /home?device=mobile", "GET /home?device=mobile"]
--- response_body eval
["<B:Sale|>", "<B:Sale|>", "<B:Sale|>", "<B:Sale|>", "<B:Sale|>"]
--- grep_error_log eval
qr/module "bad" left out|in \d+ pass(?:es)?, \d+ modules? known to fail left out/
--- grep_error_log_out
in 2 passes, 0 modules known to fail left out
module "bad" left out
in 1 pass, 1 module known to fail left out
in 1 pass, 1 module known to fail left out
in 2 passes, 0 modules known to fail left out
in 1 pass, 1 module known to fail left out



=== TEST 10: a render that failed is not rendered again for the same inputs, nor the earlier version it tried to fall back to
--- redis
HSET dynpage:page:/b 1000 '{"template":"{{ nope.x }}"}'
HSET dynpage:page:/b 2000 '{"template":"{{ nope.y }}"}'
--- config
dynpage_cache_ttl 60s;
location / { dynpage_page $uri; }
--- log_level: debug
--- request eval
["GET /b", "GET /b", "GET /b"]
--- error_code eval
[500, 500, 500]
--- grep_error_log eval
qr/version \d+ in \d+ pass/
--- grep_error_log_out
version 2000 in 1 pass
version 1000 in 1 pass



=== TEST 11: dynpage_render_max_size takes a positive size
--- config
location / { dynpage_page $uri; dynpage_render_max_size 0; }
--- must_die
--- suppress_stderr
--- error_log eval
qr{\[emerg\] .*\Q"dynpage_render_max_size" directive has invalid value "0"\E}



=== TEST 12: dynpage_render_max_size given twice at one level
--- config
dynpage_render_max_size 1m;
dynpage_render_max_size 2m;
location / { dynpage_page $uri; }
--- must_die
--- suppress_stderr
--- error_log eval
qr{\[emerg\] .*\Q"dynpage_render_max_size" directive is duplicate\E}
