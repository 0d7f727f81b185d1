# A Redis that misbehaves, and documents that are too large: deadlines hold whatever the peer
# does, lengths beyond the limits are refused before they are read, a failure is charged to what
# failed (one document, or the source), a worker's exit never waits on a peer, and the events
# thread survives protocol surprises.
#
# A fake Redis (t/lib/fake-redis.py, on free loopback ports: $TEST_NGINX_FAKE_REDIS_PORT, its
# control $TEST_NGINX_FAKE_CTL_PORT) drips replies, announces a 2^40-byte bulk string, answers
# SUBSCRIBE with an integer; see its header. A `--- fake` section lists control paths to call
# before the block (after /reset), one a line: `subscribe/int`.
#
# TEST 2 pauses between the reload and /ctl/nginx-stats?settle: a stats request accepted by the
# old worker before it closed its listening socket would wait for that worker's own exit.
use t::TestDynpage;
use File::Basename qw(dirname);
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(sleep);

my $Parent = $$;
my ($FakePort, $FakeCtl) = map {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 1)
        or die "free port: $!";
    my $p = $s->sockport;
    close $s;
    $p
} 1 .. 2;
$ENV{TEST_NGINX_FAKE_REDIS_PORT} = $FakePort;
$ENV{TEST_NGINX_FAKE_CTL_PORT} = $FakeCtl;
my $FakePid = fork // die "fork: $!";
if ($FakePid == 0) {
    open STDOUT, '>', '/dev/null';
    { exec('python3', dirname(__FILE__) . '/lib/fake-redis.py', $FakePort, $FakeCtl) }
    POSIX::_exit(127);
}

sub fake_get {
    my ($path) = @_;
    for (1 .. 100) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $FakeCtl, Timeout => 5);
        if ($s) {
            print $s "GET $path HTTP/1.0\r\n\r\n";
            local $/;
            my $resp = <$s> // '';
            return $resp if $resp =~ m{^HTTP/1\.\d 200};
        }
        sleep 0.05;
    }
    die "fake Redis control: no answer to $path\n";
}

fake_get('/reset');

END {
    # local: the fake Redis dies of SIGTERM; its status must not become the test's exit status.
    local $?;
    if ($$ == $Parent && $FakePid) {
        kill 'TERM', $FakePid;
        waitpid $FakePid, 0;
    }
}

add_block_preprocessor(sub {
    my $block = shift;
    fake_get('/reset');
    fake_get("/$_") for grep { /\S/ } split /\n/, $block->fake // '';
    # The project's runner has no skip_eval: skip the block the way it knows.
    if (defined(my $skip = $block->skip_eval)) {
        my ($code) = $skip =~ /^\s*\d+\s*:\s*(.*)$/s;
        $block->set_value(SKIP => 1) if eval $code;
    }
});

master_on();
workers(1);
plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: a Redis that drips its replies: each miss is answered by the next Redis within the timeout, and after slow replies for 3 documents the dripping one is skipped
--- http_config
dynpage_redis redis://127.0.0.1:$TEST_NGINX_FAKE_REDIS_PORT;
dynpage_redis redis://127.0.0.1:$TEST_NGINX_REDIS_PORT;
dynpage_redis_timeout 100ms;
--- redis
HSET dynpage:page:/drip/1 1000 '{"template":"real 1"}'
HSET dynpage:page:/drip/2 1000 '{"template":"real 2"}'
HSET dynpage:page:/drip/3 1000 '{"template":"real 3"}'
HSET dynpage:page:/drip/4 1000 '{"template":"real 4"}'
--- config
location / { dynpage_page $uri; }
location = /hit { return 200 "hit"; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- timeout: 10
--- pipelined_requests eval
["GET /ctl/race?slow=/drip/1&fast=/hit&limit=100",
 "GET /ctl/race?slow=/drip/2&fast=/hit&limit=100",
 "GET /ctl/race?slow=/drip/3&fast=/hit&limit=100",
 "GET /ctl/race?slow=/drip/4&fast=/hit&limit=100",
 "GET /drip/4"]
--- response_body_like eval
["^fast=200 slow=200 \\S+ slow_ms=([12]\\d\\d|3[0-4]\\d) ",
 "^fast=200 slow=200 \\S+ slow_ms=([12]\\d\\d|3[0-4]\\d) ",
 "^fast=200 slow=200 \\S+ slow_ms=([12]\\d\\d|3[0-4]\\d) ",
 "^fast=200 slow=200 \\S+ slow_ms=(\\d|[1-9]\\d) ",
 "^real 4\$"]
--- grep_error_log eval
qr/\[\w+\] [^\n]*dynpage: redis "[^"]*" failed while fetching [^\n]*?; skipping it for \d+ms/
--- grep_error_log_out eval
qr/\A\[error\] [^\n]*dynpage: redis "redis:\/\/127.0.0.1:\d+" failed while fetching page "\/drip\/3": replies too slow for 3 different keys within 10000ms; skipping it for 1000ms\n\z/



=== TEST 2: a reload while a fetch reads a reply dripped for minutes: the old worker exits at once
--- http_config
dynpage_redis redis://127.0.0.1:$TEST_NGINX_FAKE_REDIS_PORT;
dynpage_redis_timeout 100ms;
--- config
location / { dynpage_page $uri; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- timeout: 10
--- request eval
["GET /drip-many/1", "GET /ctl/reload", "GET /ctl/sleep/300", "GET /ctl/nginx-stats?settle"]
--- error_code eval
[503, 200, 200, 200]
--- response_body_like eval
["503 Service", "^reloaded\n\$", "^slept\n\$", "^master_threads=\\d+ workers=1 "]



=== TEST 3: a reply announcing a 2^40-byte value is refused from its header: that page is a 503, the source stays in use, and what the fake sent stays within socket buffers
--- http_config
dynpage_redis redis://127.0.0.1:$TEST_NGINX_FAKE_REDIS_PORT;
dynpage_redis_timeout 300ms;
--- config
location / { dynpage_page $uri; }
location /fake/ { proxy_pass http://127.0.0.1:$TEST_NGINX_FAKE_CTL_PORT/; }
--- timeout: 10
--- pipelined_requests eval
["GET /huge-page", "GET /a", "GET /huge-page", "GET /fake/stats"]
--- error_code eval
[503, 200, 503, 200]
--- response_body_like eval
["503 Service", "^fake /a\$", "503 Service",
 "^subscribes=\\d+ huge_sent=([0-9]{1,7}|1[0-5][0-9]{6}) "]
--- grep_error_log eval
qr/\[\w+\] [^\n]*dynpage: (?:page "\/huge-page" version 1000 failed at|redis "[^"]*" failed while fetching) [^\n]*/
--- grep_error_log_out eval
qr/\A\[error\] [^\n]*dynpage: page "\/huge-page" version 1000 failed at redis "redis:\/\/127.0.0.1:\d+": its reply is too large: a value of 1099511627776 bytes, over the 8388608 byte limit; it gets stale inputs or 503 for 1000ms, then is asked again \(the source stays in use\)[^\n]*\n\z/



=== TEST 4: SUBSCRIBE answered with an integer: one alert, the thread keeps reconnecting with backoff; once Redis behaves, events work again
--- fake
subscribe/int
--- http_config
dynpage_redis redis://127.0.0.1:$TEST_NGINX_FAKE_REDIS_PORT;
--- config
dynpage_cache_ttl 60s;
location / { dynpage_page $uri; }
location /fake/ { proxy_pass http://127.0.0.1:$TEST_NGINX_FAKE_CTL_PORT/; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- timeout: 15
--- pipelined_requests eval
["GET /ev", "GET /ctl/sleep/2500", "GET /fake/stats", "GET /fake/subscribe/ok",
 "GET /ctl/sleep/1500", "GET /fake/set?key=/ev&text=v2",
 "GET /fake/publish?channel=dynpage:events&msg=dynpage:page:/ev", "GET /ev"]
--- response_body_like eval
["^fake /ev\$", "^slept\n\$", "^subscribes=([4-9]|\\d\\d) ", "^subscribe ok\n\$", "^slept\n\$",
 "^set\n\$", "^published to 1\n\$", "^v2\$"]
--- grep_error_log eval
qr/\[\w+\] [^\n]*dynpage: events subscription to redis [^\n]*/
--- grep_error_log_out eval
qr/\A\[alert\] [^\n]*dynpage: events subscription to redis "redis:\/\/127.0.0.1:\d+" failed: SUBSCRIBE was answered with an integer \(1\), not a subscription; reconnecting \(with backoff\), pages follow dynpage_cache_ttl until it is back[^\n]*\n\z/



=== TEST 5: a real Redis holding a page with 300,000 versions and one with a 20 MiB version beside normal pages: those two are 503 (asked again later), the others 200 from that Redis, which is never skipped
--- http_config
dynpage_redis_timeout 100ms;
--- redis
EVAL "for i = 1, 300000 do redis.call('HSET', KEYS[1], tostring(1000 + i), 'x') end" 1 dynpage:page:/wide
EVAL "redis.call('HSET', KEYS[1], '1000', string.rep('x', 20971520))" 1 dynpage:page:/fat
HSET dynpage:page:/a 1000 '{"template":"a"}'
HSET dynpage:page:/b 1000 '{"template":"b"}'
HSET dynpage:page:/c 1000 '{"template":"c"}'
HSET dynpage:page:/d 1000 '{"template":"d"}'
--- config
dynpage_cache_ttl 0;
location / { dynpage_page $uri; }
--- timeout: 10
--- pipelined_requests eval
["GET /wide", "GET /a", "GET /fat", "GET /b", "GET /wide", "GET /c", "GET /fat", "GET /d"]
--- error_code eval
[503, 200, 503, 200, 503, 200, 503, 200]
--- response_body_like eval
["503 Service", "^a\$", "503 Service", "^b\$", "503 Service", "^c\$", "503 Service", "^d\$"]
--- grep_error_log eval
qr/\[\w+\] [^\n]*dynpage: (?:page "[^"]*"(?: version \d+)? failed at|redis "[^"]*" failed while fetching) [^\n]*/
--- grep_error_log_out eval
qr/\A\[error\] [^\n]*dynpage: page "\/wide" failed at redis "redis:\/\/127.0.0.1:\d+": it has 300000 fields, over the 10000 field limit; it gets stale inputs or 503 for 1000ms, then is asked again \(the source stays in use\)
\[error\] [^\n]*dynpage: page "\/fat" version 1000 failed at redis "redis:\/\/127.0.0.1:\d+": the value is 20971520 bytes, over the 8388608 byte limit; it gets stale inputs or 503 for 1000ms, then is asked again \(the source stays in use\)
\z/



=== TEST 6: a cached page whose document grows past the limit is served stale, not broken
--- redis
HSET dynpage:page:/grow 1000 '{"template":"grow v1"}'
HSET dynpage:page:/b 1000 '{"template":"b"}'
--- config
dynpage_cache_ttl 100ms;
dynpage_debug_header on;
location / { dynpage_page $uri; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- request eval
["GET /grow",
 "POST /ctl/redis\nEVAL \"for i = 1, 20000 do redis.call('HSET', KEYS[1], tostring(2000 + i), 'x') end\" 1 dynpage:page:/grow\n",
 "GET /ctl/sleep/200", "GET /grow", "GET /b"]
--- error_code eval
[200, 200, 200, 200, 200]
--- response_body_like eval
["^grow v1\$", "^\n\$", "^slept\n\$", "^grow v1\$", "^b\$"]
--- response_headers eval
["X-Dynpage: variant=production; version=1000; source=redis", "", "",
 "X-Dynpage: variant=production; version=1000; source=stale",
 "X-Dynpage: variant=production; version=1000; source=redis"]



=== TEST 7: a login reply dripped (AUTH): the connect ends within the timeout and the next Redis answers
--- http_config
dynpage_redis redis://:drip@127.0.0.1:$TEST_NGINX_FAKE_REDIS_PORT;
dynpage_redis redis://127.0.0.1:$TEST_NGINX_REDIS_PORT;
dynpage_redis_timeout 100ms;
--- redis
HSET dynpage:page:/h 1000 '{"template":"real h"}'
--- config
location / { dynpage_page $uri; }
location = /hit { return 200 "hit"; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- timeout: 10
--- pipelined_requests eval
["GET /ctl/race?slow=/h&fast=/hit&limit=100", "GET /h"]
--- response_body_like eval
["^fast=200 slow=200 \\S+ slow_ms=([12]\\d\\d) ", "^real h\$"]
--- error_log eval
qr/\[error\] .*dynpage: redis "redis:\/\/:\*\*\*\@127.0.0.1:\d+" failed while fetching page "\/h": timed out; skipping it for 1000ms/
--- no_error_log
drip@



=== TEST 8: (test-panic build) a panic in the events thread: one alert, the thread reconnects and resyncs, events work again
--- skip_eval: 8: !$ENV{TEST_DYNPAGE_PANIC_BUILD}
--- http_config
dynpage_redis redis://127.0.0.1:$TEST_NGINX_FAKE_REDIS_PORT;
--- config
dynpage_cache_ttl 60s;
location / { dynpage_page $uri; }
location /fake/ { proxy_pass http://127.0.0.1:$TEST_NGINX_FAKE_CTL_PORT/; }
location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CONTROL_PORT/; }
--- timeout: 10
--- pipelined_requests eval
["GET /ev", "GET /ctl/sleep/300",
 "GET /fake/publish?channel=dynpage:events&msg=dynpage-test-panic-events",
 "GET /ctl/sleep/500", "GET /fake/set?key=/ev&text=v2",
 "GET /fake/publish?channel=dynpage:events&msg=dynpage:page:/ev", "GET /ev"]
--- response_body_like eval
["^fake /ev\$", "^slept\n\$", "^published to 1\n\$", "^slept\n\$", "^set\n\$",
 "^published to 1\n\$", "^v2\$"]
--- grep_error_log eval
qr/\[\w+\] [^\n]*dynpage: events subscription to redis [^\n]*/
--- grep_error_log_out eval
qr/\A\[alert\] [^\n]*dynpage: events subscription to redis "redis:\/\/127.0.0.1:\d+" failed: panic: test-panic: the events thread panics on purpose; reconnecting[^\n]*\n\z/
