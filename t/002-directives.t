# Directives: bad values fail `nginx -t` with [emerg] naming the directive; inheritance.
use t::TestDynpage;

plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: dynpage_cache_ttl needs a time
--- config
location / { dynpage_page $uri; dynpage_cache_ttl soon; }
--- must_die
--- suppress_stderr
--- error_log eval
qr{\[emerg\] .*\Q"dynpage_cache_ttl" directive has invalid value "soon"\E}



=== TEST 2: dynpage_redis needs a Redis URL
--- http_config
dynpage_redis http://127.0.0.1/;
--- config
location / { dynpage_page $uri; }
--- must_die
--- suppress_stderr
--- error_log eval
qr{\[emerg\] .*\Q"dynpage_redis" directive has invalid URL "http://127.0.0.1/"\E}



=== TEST 3: dynpage_page without any dynpage_redis is refused
--- no_default_redis
--- config
location / { dynpage_page $uri; }
--- must_die
--- suppress_stderr
--- error_log eval
qr{\[emerg\] .*\Q"dynpage_page" is used but no "dynpage_redis" source is configured\E}



=== TEST 4: dynpage_redis_timeout must be positive
--- http_config
dynpage_redis_timeout 0;
--- config
location / { dynpage_page $uri; }
--- must_die
--- suppress_stderr
--- error_log eval
qr{\[emerg\] .*\Q"dynpage_redis_timeout" directive has invalid value "0"\E}



=== TEST 5: dynpage_cache_size has a minimum
--- config
location / { dynpage_page $uri; dynpage_cache_size 1k; }
--- must_die
--- suppress_stderr
--- error_log eval
qr{\[emerg\] .*\Q"dynpage_cache_size" directive is too small: the minimum is 64k\E}



=== TEST 6: dynpage_debug_header is on or off
--- config
location / { dynpage_page $uri; dynpage_debug_header yes; }
--- must_die
--- suppress_stderr
--- error_log eval
qr{\[emerg\] .*\Q"dynpage_debug_header" directive must be "on" or "off"\E}



=== TEST 7: a directive given twice at one level is a duplicate
--- config
location / { dynpage_page $uri; dynpage_max_age 1s; dynpage_max_age 2s; }
--- must_die
--- suppress_stderr
--- error_log eval
qr{\[emerg\] .*\Q"dynpage_max_age" directive is duplicate\E}



=== TEST 8: dynpage_page is not allowed at server level
--- config
dynpage_page $uri;
--- must_die
--- suppress_stderr
--- error_log eval
qr{\[emerg\] .*\Q"dynpage_page" directive is not allowed here\E}



=== TEST 9: settings are inherited http -> server -> location, and a location can turn them off
--- http_config
dynpage_debug_header on;
dynpage_max_age 30s;
--- redis
HSET dynpage:page:/a 1000 '{"template":"a"}'
--- config
dynpage_content_type "text/x-page";
location /a { dynpage_page /a; }
location /off { dynpage_page /a; dynpage_debug_header off; dynpage_max_age 0; }
--- request eval
["GET /a", "GET /off"]
--- response_headers eval
["Content-Type: text/x-page\nCache-Control: public, max-age=30\nX-Dynpage: variant=production; version=1000; source=redis",
 "Content-Type: text/x-page\nCache-Control: public, max-age=0\n!X-Dynpage"]



=== TEST 10: the same dynpage_redis twice is refused (the chain is a list of different sources); the password stays out of the message
--- http_config
dynpage_redis redis://app:s3cret@127.0.0.1:1/;
dynpage_redis redis://app:s3cret@127.0.0.1:1/;
--- config
location / { dynpage_page $uri; }
--- must_die
--- suppress_stderr
--- error_log eval
qr{\[emerg\] .*"dynpage_redis" directive names "redis://app:\*\*\*\@127\.0\.0\.1:1/" twice}



=== TEST 11: dynpage_cms needs an http:// URL, once
--- http_config
dynpage_cms https://cms.example/snap;
--- config
location / { dynpage_page $uri; }
--- must_die
--- suppress_stderr
--- error_log eval
qr{\[emerg\] .*\Q"dynpage_cms" directive has invalid URL "https://cms.example/snap": only http:// URLs are supported\E}



=== TEST 12: dynpage_fetch_threads takes 1 to 64
--- http_config
dynpage_fetch_threads 0;
--- config
location / { dynpage_page $uri; }
--- must_die
--- suppress_stderr
--- error_log eval
qr{\[emerg\] .*\Q"dynpage_fetch_threads" directive has invalid value "0": it must be 1 to 64\E}



=== TEST 13: dynpage_fetch_threads refuses what is not a number
--- http_config
dynpage_fetch_threads many;
--- config
location / { dynpage_page $uri; }
--- must_die
--- suppress_stderr
--- error_log eval
qr{\[emerg\] .*\Q"dynpage_fetch_threads" directive has invalid value "many": it must be 1 to 64\E}
