package t::TestDynpage;

# Shared defaults for dynpage's Test::Nginx::Socket suite. Works with the real
# Test::Nginx::Socket and with the project's runner in t/lib.
#
# Sections it adds:
#   --- redis       redis-cli commands run before the block (after FLUSHALL); `{now}`,
#                   `{now+1500}`, `{now-60000}` become wall-clock milliseconds.
# What it sets up:
#   - `dynpage_redis redis://127.0.0.1:$TEST_NGINX_REDIS_PORT;` is prepended to http_config
#     unless the block configures its own dynpage_redis or has a `--- no_default_redis` section.
#   - a control server on $TEST_NGINX_CONTROL_PORT that configs can reach with proxy_pass (each
#     request is answered in a process of its own, so one may reach it again through nginx):
#     /freeze and /thaw (SIGSTOP/SIGCONT the test Redis), /reload (HUP the test nginx),
#     /reload-thaw (HUP nginx, wait 0.5 s, thaw Redis),
#     /sleep/<ms>, /redis (POST: the body's redis-cli commands, `{now...}` expanded),
#     /dynpagectl (POST: runs build/bin/dynpagectl against the test Redis with the body's lines
#     as arguments; a `file:<text>` argument becomes a temporary file holding <text>),
#     /nginx-stats ("master_threads=M workers=N threads=T" of the test nginx; with ?settle it
#     first waits up to 3 s for workers shutting down after a reload to exit),
#     /race?slow=<uri>&fast=<uri>&limit=<ms> (sends `slow`, then 50 ms later `fast`, on two
#     connections to the test nginx; answers "fast=<status> slow=<status> fast-first
#     slow_ms=<ms> ..." where fast-first means the fast answer came well before `limit`).
#     /propagate?port=<p>&path=<uri>&expect=<text>&workers=<n>&limit=<ms> (POST: redis-cli
#     commands that publish a change): opens keep-alive connections to 127.0.0.1:<p> until it
#     holds one to each of <n> workers (told apart by an `X-Pid: $pid` response header), runs
#     the commands, then polls every held connection until each answers a body containing
#     <expect>. Answers "workers=<n> all-visible visible_ms=<ms>" or "... not-visible ...".
#     The test Redis is thawed before every block.
#     /burst?prefix=<uri>&count=<n>&rounds=<r> GETs <uri>1 .. <uri><n>, <r> times over, on one
#     keep-alive connection to the test nginx; answers the statuses counted, "404=2000".
#     /parallel?prefix=<uri>&count=<n>&freeze=<ms> opens <n> connections to the test nginx and
#     sends GET <uri>1 .. <uri><n>, one on each, with the test Redis stopped (SIGSTOP) for <ms>
#     from before the first (so the misses queue up behind the fetches sent first), then reads
#     every answer; answers the statuses counted, "200=20".
#     /conditional?uri=<uri>&ae=<a>&ae2=<b> GETs <uri> from the test nginx with
#     `Accept-Encoding: <a>`, then again with `Accept-Encoding: <b>` and `If-None-Match:` the
#     ETag it got (a revalidation); answers "200 <etag> <content-encoding or identity>
#     <body bytes>, then <status> <etag> <content-encoding or identity> <vary or no-vary>".
#     <a> and <b> may be empty (no Accept-Encoding), `%2C` for a comma, `+` for a space.
#     /spread?path=<uri>&count=<n> GETs <uri> <n> times, each on a new connection (so they
#     spread over the workers); answers the statuses counted, "404=20".
#     /promtool?path=<uri> GETs <uri> from the test nginx and checks it with `promtool check
#     metrics` (Debian's prometheus package); answers "promtool exit=<status>" and its output.
#     /chromium?path=<uri> loads <uri> from the test nginx in headless Chromium, runs its
#     scripts for 3 s of virtual time and answers the DOM (`--dump-dom`).
#   - $TEST_NGINX_EXTRA_PORT: a second free port, for a server block of the test's own (for
#     example one with `listen ... reuseport`, so connections spread over the workers).
#   - check_accum_error_log(): the error log sections are checked, after every request of a
#     block, against the block's whole log so far (not just the part written during that
#     request). Both harnesses check after every request, so in a block of several requests a
#     positive check (error_log, grep_error_log_out) must already hold after the first one:
#     either the request that logs comes first, or the requests go as `--- pipelined_requests`
#     (one connection, all answered before the first check; nginx ends a keep-alive connection
#     after a 500, so a pipeline holds at most one 500, as its last request).
#   - the test process adopts the nginx daemons it starts (Linux PR_SET_CHILD_SUBREAPER), so a
#     stopped nginx is reaped at once instead of waiting for init, which both harnesses would
#     otherwise wait for (up to seconds per block).
#
# Fault tests of the source chain call `sources(redis => {name => [redis-server args]},
# cms => 1)` before run_tests(). It starts, on free loopback ports, one redis-server per name
# ($TEST_NGINX_REDIS_<NAME>_PORT), a stub CMS ($TEST_NGINX_CMS_PORT) and a manager that
# configs reach with proxy_pass at $TEST_NGINX_SOURCES_PORT:
#     /stop/<name>, /start/<name>, /freeze/<name>, /thaw/<name>  (a redis-server of the set)
#     /cms/<mode>   the stub CMS answers: ok (200 `{"template":"cms:{{ page.key }}"}`, or 404
#                   for keys under /missing), garbage (200, not JSON), error (500), hang (3 s)
#     /cms-count    how many requests the CMS got
#     /cli/<name>   (POST) the body's redis-cli commands on that server
# Before every block each server runs, thawed and flushed, the CMS is `ok` with a zero count,
# and a `--- redis_<name>` section seeds that server like `--- redis` does (a `SELECT n` line
# switches databases; a server started with `--requirepass` is authenticated).

use Test::Nginx::Socket -base;
use strict;
use warnings;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use POSIX ();
use File::Temp ();
use Math::BigInt;

our @EXPORT = qw(redis_cli gray_bucket sources);

no_root_location();
check_accum_error_log();

# Adopt orphaned descendants (the daemonized nginx): see the header.
{
    my $nr = eval { require 'syscall.ph'; &SYS_prctl() };
    $nr //= { x86_64 => 157, aarch64 => 167, i686 => 172 }->{ (POSIX::uname())[4] };
    syscall($nr, 36, 1, 0, 0, 0) if $nr;    # PR_SET_CHILD_SUBREAPER
}

my $RedisPort = $ENV{TEST_NGINX_REDIS_PORT}
    or die "TEST_NGINX_REDIS_PORT is not set: run the suite with `make test`\n";
my $RedisCli = $ENV{TEST_NGINX_REDIS_CLI} || 'redis-cli';

# Runs the project's control tool on the test Redis (see /dynpagectl in the header), or on
# the Redis URL given (t/TestTopology.pm: a cluster or Sentinel set).
sub dynpagectl {
    my ($lines, $url) = @_;
    $url //= "redis://127.0.0.1:$RedisPort";
    my $tool = $ENV{TEST_DYNPAGECTL} || 'build/bin/dynpagectl';
    my @args;
    my $n = 0;
    for my $arg (split /\n/, $lines) {
        if ($arg =~ /^file:(.*)$/s) {
            my $file = "/tmp/dynpage-test-ctl-$$-" . $n++ . ".txt";
            open my $fh, '>', $file or return "cannot write $file: $!\n";
            print $fh $1;
            close $fh;
            $arg = $file;
        }
        push @args, $arg;
    }
    my $pid = open(my $out, '-|');
    return "fork: $!\n" unless defined $pid;
    if ($pid == 0) {
        open STDERR, '>&', \*STDOUT;
        exec($tool, '--redis', $url, @args) or POSIX::_exit(127);
    }
    local $/;
    my $text = <$out> // '';
    close $out;
    unlink glob("/tmp/dynpage-test-ctl-$$-*.txt");
    return "exit=" . ($? >> 8) . "\n$text";
}

sub redis_cli {
    my ($input) = @_;
    my $file = "/tmp/dynpage-test-redis-$$.txt";
    open my $fh, '>', $file or die "cannot write $file: $!";
    print $fh $input;
    close $fh;
    my $out = `$RedisCli -h 127.0.0.1 -p $RedisPort < $file 2>&1`;
    unlink $file;
    die "redis-cli failed: $out" if $? != 0 || $out =~ /^(ERR|WRONGTYPE|\(error\))/m;
    return $out;
}

my ($RedisPid) = redis_cli("INFO server\n") =~ /process_id:(\d+)/;

sub now_ms { int(time * 1000) }

# The test nginx's master (or only) process, from the pid file both harnesses write to
# <server root>/logs/nginx.pid.
sub nginx_pid {
    open my $fh, '<', Test::Nginx::Socket::server_root() . '/logs/nginx.pid' or return;
    my $pid = <$fh>;
    close $fh;
    return unless defined $pid && $pid =~ /^\s*(\d+)/;
    return $1;
}

# SPEC rule 2's bucket, as the module computes it (FNV-1a 64 of user, NUL, document name, with
# a final avalanche; mod 100), so tests can say which side a user is on.
sub gray_bucket {
    my ($user, $doc) = @_;
    my $mask = Math::BigInt->new(2)->bpow(64)->bsub(1);
    my $prime = Math::BigInt->from_hex('100000001b3');
    my $h = Math::BigInt->from_hex('cbf29ce484222325');
    for my $b (unpack('C*', $user), 0, unpack('C*', $doc)) {
        $h = $h->copy->bxor($b)->bmul($prime)->band($mask);
    }
    $h = $h->copy->bxor($h->copy->brsft(33));
    $h = $h->copy->bmul(Math::BigInt->from_hex('ff51afd7ed558ccd'))->band($mask);
    $h = $h->copy->bxor($h->copy->brsft(33));
    return $h->copy->bmod(100)->numify;
}

sub expand_now {
    my ($text) = @_;
    my $now = now_ms();
    $text =~ s/\{now(?:([+-])(\d+))?\}/!defined $1 ? $now : $1 eq '+' ? $now + $2 : $now - $2/ge;
    return $text;
}

# One GET to the test nginx, sent now; returns a closure that reads the answer.
sub start_get {
    my ($uri) = @_;
    my $t0 = time;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => Test::Nginx::Socket::server_port(),
        Timeout => 5) or return sub { ("connect failed: $!", 0) };
    print $s "GET $uri HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    return sub {
        local $/;
        my $resp = <$s> // '';
        my $ms = int((time - $t0) * 1000);
        my ($code) = $resp =~ m{^HTTP/1\.\d (\d+)};
        return ($code // 'none', $ms);
    };
}

sub race {
    my ($slow, $fast, $limit) = @_;
    my $slow_done = start_get($slow);
    sleep 0.05;
    my ($fc, $fms) = start_get($fast)->();
    my ($sc, $sms) = $slow_done->();
    # The fast answer must not have waited for the slow one (which takes at least $limit ms).
    my $verdict = $fms + 50 < $limit ? 'fast-first' : 'fast-waited';
    return "fast=$fc slow=$sc $verdict slow_ms=$sms (fast ${fms}ms)\n";
}

# One GET on a keep-alive connection: (status, pid header, body).
sub ka_get {
    my ($s, $uri) = @_;
    print $s "GET $uri HTTP/1.1\r\nHost: localhost\r\n\r\n";
    my $status = <$s> // return ('none', '', '');
    my ($code) = $status =~ m{^HTTP/1\.\d (\d+)};
    my ($len, $pid) = (0, '');
    while (my $h = <$s>) {
        last if $h =~ /^\r?\n$/;
        $len = $1 if $h =~ /^Content-Length:\s*(\d+)/i;
        $pid = $1 if $h =~ /^X-Pid:\s*(\d+)/i;
    }
    my $body = '';
    read($s, $body, $len) if $len;
    return ($code // 'none', $pid, $body);
}

sub propagate {
    my ($port, $path, $expect, $want, $limit, $commands) = @_;
    my %conn;
    for (1 .. 64) {
        last if keys %conn >= $want;
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 5)
            or return "connect failed: $!\n";
        my ($code, $pid) = ka_get($s, $path);
        $conn{$pid} //= $s if $code eq '200' && $pid;
    }
    my $n = keys %conn;
    return "workers=$n (wanted $want)\n" if $n < $want;
    redis_cli(expand_now($commands));
    my $t0 = time;
    my %seen;
    while (keys %seen < $n && (time - $t0) * 1000 < $limit) {
        for my $pid (keys %conn) {
            next if $seen{$pid};
            my (undef, undef, $body) = ka_get($conn{$pid}, $path);
            $seen{$pid} = int((time - $t0) * 1000) if index($body, $expect) >= 0;
        }
    }
    my $max = 0;
    $max = $_ > $max ? $_ : $max for values %seen;
    return keys %seen == $n ? "workers=$n all-visible visible_ms=$max\n"
        : "workers=$n not-visible on " . join(',', grep { !$seen{$_} } keys %conn) . "\n";
}

# Statuses counted, as the request-sending endpoints answer them: "200=18 503=2\n".
sub counted {
    my ($seen) = @_;
    return join(' ', map { "$_=$seen->{$_}" } sort keys %$seen) . "\n";
}

sub burst {
    my ($prefix, $count, $rounds) = @_;
    my ($s, $n, %seen) = (undef, 0);
    for (1 .. $rounds) {
        for my $i (1 .. $count) {
            # A new connection every 100 requests: nginx closes one after keepalive_requests.
            if ($n++ % 100 == 0) {
                $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                    PeerPort => Test::Nginx::Socket::server_port(), Timeout => 5)
                    or return "connect failed: $!\n";
            }
            my ($code) = ka_get($s, "$prefix$i");
            $seen{$code}++;
        }
    }
    return counted(\%seen);
}

sub parallel {
    my ($prefix, $count, $freeze_ms) = @_;
    my (@socks, %seen);
    kill 'STOP', $RedisPid if $freeze_ms;
    for my $i (1 .. $count) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
            PeerPort => Test::Nginx::Socket::server_port(), Timeout => 5);
        unless ($s) { kill 'CONT', $RedisPid; return "connect failed: $!\n" }
        print $s "GET $prefix$i HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
        push @socks, $s;
    }
    if ($freeze_ms) {
        sleep($freeze_ms / 1000);
        kill 'CONT', $RedisPid;
    }
    for my $s (@socks) {
        my $status = <$s> // 'none';
        my ($code) = $status =~ m{^HTTP/1\.\d (\d+)};
        $seen{$code // 'none'}++;
        close $s;
    }
    return counted(\%seen);
}

# One GET with extra headers on a new connection: (status, {lowercase name => value}, body).
sub get_with {
    my ($uri, %headers) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => Test::Nginx::Socket::server_port(),
        Timeout => 5) or return ('none', {}, '');
    my $extra = join '', map { "$_: $headers{$_}\r\n" } grep { length $headers{$_} } sort keys %headers;
    print $s "GET $uri HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n$extra\r\n";
    my $status = <$s> // return ('none', {}, '');
    my ($code) = $status =~ m{^HTTP/1\.\d (\d+)};
    my %h;
    while (my $line = <$s>) {
        last if $line =~ /^\r?\n$/;
        $h{lc $1} = $2 if $line =~ /^([^:]+):\s*(.*?)\s*$/;
    }
    local $/;
    my $body = <$s> // '';
    return ($code // 'none', \%h, $body);
}

sub conditional {
    my ($uri, $ae, $ae2) = map { my $v = $_ // ''; $v =~ tr/+/ /; $v =~ s/%([0-9A-Fa-f]{2})/chr hex $1/ge; $v } @_;
    my ($code, $h, $body) = get_with($uri, 'Accept-Encoding' => $ae);
    my $etag = $h->{etag} // 'none';
    my ($code2, $h2) = get_with($uri, 'Accept-Encoding' => $ae2, 'If-None-Match' => $etag);
    return "$code $etag " . ($h->{'content-encoding'} // 'identity') . ' ' . length($body)
        . ", then $code2 " . ($h2->{etag} // 'none') . ' ' . ($h2->{'content-encoding'} // 'identity')
        . ' ' . ($h2->{vary} // 'no-vary') . "\n";
}

sub uri_unescape {
    my ($s) = @_;
    $s =~ s/%([0-9A-Fa-f]{2})/chr(hex $1)/eg;
    return $s;
}

sub spread {
    my ($path, $count) = @_;
    my %seen;
    for (1 .. $count) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
            PeerPort => Test::Nginx::Socket::server_port(), Timeout => 5)
            or return "connect failed: $!\n";
        my ($code) = ka_get($s, $path);
        $seen{$code}++;
        close $s;
    }
    return counted(\%seen);
}

# The body of GET <path> from the test nginx, on a connection of its own.
sub nginx_get {
    my ($path) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
        PeerPort => Test::Nginx::Socket::server_port(), Timeout => 5) or return;
    print $s "GET $path HTTP/1.0\r\nHost: localhost\r\n\r\n";
    local $/;
    my $resp = <$s> // '';
    $resp =~ s/^.*?\r\n\r\n//s;
    return $resp;
}

sub promtool {
    my ($path) = @_;
    my $text = nginx_get($path) // return "no answer from nginx\n";
    my ($fh, $file) = File::Temp::tempfile(UNLINK => 1);
    print $fh $text;
    close $fh;
    my $out = `promtool check metrics < '$file' 2>&1`;
    return "promtool exit=" . ($? >> 8) . "\n$out";
}

sub chromium {
    my ($path) = @_;
    my $port = Test::Nginx::Socket::server_port();
    my $dir = File::Temp::tempdir(CLEANUP => 1);
    my $out = `chromium --headless --no-sandbox --disable-gpu --no-first-run --user-data-dir='$dir' --virtual-time-budget=3000 --dump-dom 'http://127.0.0.1:$port$path' 2>/dev/null`;
    return "chromium exit=" . ($? >> 8) . "\n$out";
}

# Threads of the test nginx's master and worker processes.
sub nginx_stats {
    my $master = nginx_pid() or return "no nginx\n";
    my ($workers, $threads) = (0, 0);
    opendir my $d, '/proc' or return "no /proc\n";
    for my $pid (grep { /^\d+$/ } readdir $d) {
        open my $st, '<', "/proc/$pid/stat" or next;
        my $stat = <$st>;
        close $st;
        my ($ppid) = $stat =~ /^\d+ \(.*?\) \S (\d+)/ or next;
        next unless $ppid == $master;
        $workers++;
        if (opendir my $t, "/proc/$pid/task") { $threads += grep { /^\d+$/ } readdir $t }
    }
    my $mt = 0;
    if (opendir my $t, "/proc/$master/task") { $mt = grep { /^\d+$/ } readdir $t }
    return "master_threads=$mt workers=$workers threads=$threads\n";
}

{
    my $probe = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 1)
        or die "free port: $!";
    $ENV{TEST_NGINX_EXTRA_PORT} = $probe->sockport;
    close $probe;
}

# The control server: a child process answering tiny HTTP requests.
my $ctl = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 16, ReuseAddr => 1)
    or die "control server: $!";
$ENV{TEST_NGINX_CONTROL_PORT} = $ctl->sockport;
# Answers one request to the control server (see the header).
sub control_answer {
    my ($c) = @_;
    my $line = <$c> // '';
    my ($path) = $line =~ m{^\w+\s+(\S+)};
    $path //= '/';
    my $len = 0;
    while (my $h = <$c>) {
        last if $h =~ /^\r?\n$/;
        $len = $1 if $h =~ /^Content-Length:\s*(\d+)/i;
    }
    my $req_body = '';
    read($c, $req_body, $len) if $len;
    my $body = "unknown\n";
    if ($path eq '/freeze') { kill 'STOP', $RedisPid; $body = "frozen\n" }
    elsif ($path eq '/thaw') { kill 'CONT', $RedisPid; $body = "thawed\n" }
    elsif ($path =~ m{^/reload}) {
        my $pid = nginx_pid();
        kill 'HUP', $pid if $pid;
        $body = "reloaded\n";
        if ($path eq '/reload-thaw') {
            sleep 0.5;
            kill 'CONT', $RedisPid;
            $body = "reloaded and thawed\n";
        }
    }
    elsif ($path =~ m{^/sleep/(\d+)}) { sleep($1 / 1000); $body = "slept\n" }
    elsif ($path eq '/redis') { $body = eval { redis_cli(expand_now($req_body)) } // "ERROR $@" }
    elsif ($path eq '/dynpagectl') { $body = dynpagectl($req_body) }
    elsif ($path =~ m{^/nginx-stats(\?settle)?$}) {
        # ?settle: old workers finish their last requests after a reload; wait (up to 3 s)
        # until only one generation of workers is left.
        $body = nginx_stats();
        for (1 .. 30) {
            last unless $1 && $body =~ /workers=([2-9]|\d\d)/;
            sleep 0.1;
            $body = nginx_stats();
        }
    }
    elsif ($path =~ m{^/propagate\?port=(\d+)&path=([^&]+)&expect=([^&]+)&workers=(\d+)&limit=(\d+)}) {
        $body = propagate($1, $2, $3, $4, $5, $req_body);
    }
    elsif ($path =~ m{^/race\?slow=([^&]+)&fast=([^&]+)&limit=(\d+)}) { $body = race($1, $2, $3) }
    elsif ($path =~ m{^/burst\?prefix=([^&]+)&count=(\d+)&rounds=(\d+)}) { $body = burst($1, $2, $3) }
    elsif ($path =~ m{^/parallel\?prefix=([^&]+)&count=(\d+)&freeze=(\d+)}) { $body = parallel($1, $2, $3) }
    elsif ($path =~ m{^/conditional\?uri=([^&]+)&ae=([^&]*)&ae2=([^&]*)$}) { $body = conditional($1, $2, $3) }
    elsif ($path =~ m{^/spread\?path=([^&]+)&count=(\d+)}) { $body = spread(uri_unescape($1), $2) }
    elsif ($path =~ m{^/promtool\?path=([^&]+)}) { $body = promtool(uri_unescape($1)) }
    elsif ($path =~ m{^/chromium\?path=([^&]+)}) { $body = chromium(uri_unescape($1)) }
    print $c "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
        . length($body) . "\r\n\r\n$body";
}

my $CtlPid = fork;
die "fork: $!" unless defined $CtlPid;
if ($CtlPid == 0) {
    $SIG{TERM} = sub { POSIX::_exit(0) };
    $SIG{PIPE} = 'IGNORE';
    while (1) {
        my $c = $ctl->accept or do { next if $!{EINTR}; last };
        1 while waitpid(-1, POSIX::WNOHANG()) > 0;
        # One process per request, so a request may itself reach the control server through
        # nginx (/race with a slow URI under /ctl/, for example).
        my $pid = fork;
        if (defined $pid && $pid == 0) {
            close $ctl;
            eval { control_answer($c) };
            POSIX::_exit(0);
        }
        eval { control_answer($c) } unless defined $pid;
        close $c;
    }
    POSIX::_exit(0);
}
close $ctl;

END {
    # local: a waitpid here must not become the test's exit status (Test::Builder reads $?).
    local $?;
    if ($CtlPid) {
        kill 'TERM', $CtlPid;
        waitpid $CtlPid, 0;
        kill 'CONT', $RedisPid if $RedisPid;
    }
}

# --- Extra sources for fault tests (see the header) ---

our %Sources;          # name => { port, args }
my ($SrcPid, $CmsPid);
my $SrcDir = "/tmp/dynpage-test-sources-$$";

sub free_port {
    my $probe = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 1)
        or die "free port: $!";
    my $port = $probe->sockport;
    close $probe;
    return $port;
}

sub source_cli {
    my ($name, $input) = @_;
    my $src = $Sources{$name} or die "no source $name";
    my $file = "$SrcDir/cli-$$.txt";
    open my $fh, '>', $file or die "cannot write $file: $!";
    print $fh $input;
    close $fh;
    my ($pass) = join(' ', @{ $src->{args} }) =~ /--requirepass (\S+)/;
    my $auth = defined $pass ? "-a $pass --no-auth-warning" : '';
    my $out = `$RedisCli -h 127.0.0.1 -p $src->{port} $auth < $file 2>&1`;
    die "redis-cli ($name) failed: $out" if $? != 0 || $out =~ /^(ERR|WRONGTYPE|\(error\)|NOAUTH)/m;
    return $out;
}

# Starts (or restarts) a redis-server of the set; returns its pid once it answers PING.
sub spawn_redis {
    my ($name) = @_;
    my $src = $Sources{$name};
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>', '/dev/null';
        { exec 'redis-server', '--bind', '127.0.0.1', '--port', $src->{port}, '--save', '',
            '--appendonly', 'no', '--dir', $SrcDir, @{ $src->{args} } }
        POSIX::_exit(127);
    }
    for (1 .. 100) {
        last if eval { source_cli($name, "PING\n") =~ /PONG/ };
        sleep 0.02;
    }
    return $pid;
}

sub run_cms {
    my ($port) = @_;
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port, Listen => 32,
        ReuseAddr => 1) or die "stub CMS: $!";
    $SIG{TERM} = sub { POSIX::_exit(0) };
    $SIG{CHLD} = 'IGNORE';
    while (1) {
        my $c = $l->accept or do { next if $!{EINTR}; last };
        my $line = <$c> // '';
        while (my $h = <$c>) { last if $h =~ /^\r?\n$/ }
        my ($key) = $line =~ m{[?&]key=([^&\s]*)};
        $key //= '';
        $key =~ s/%([0-9A-Fa-f]{2})/chr(hex $1)/ge;
        if (open my $cf, '>>', "$SrcDir/cms-count") { print $cf "$key\n"; close $cf }
        my $mode = 'ok';
        if (open my $mf, '<', "$SrcDir/cms-mode") { $mode = <$mf> // 'ok'; chomp $mode; close $mf }
        my ($status, $body) = (200, '{"template":"cms:{{ page.key }}"}');
        if ($mode eq 'hang') {
            # Hang in a child, so that the next block (blocks run in any order) is answered.
            my $pid = fork;
            if (defined $pid && $pid == 0) { close $l; sleep 3; POSIX::_exit(0) }
            close $c;
            next;
        }
        elsif ($mode eq 'garbage') { $body = "<html>maintenance" }
        elsif ($mode eq 'error') { ($status, $body) = (500, "oops") }
        elsif ($key =~ m{^/missing}) { ($status, $body) = (404, "no such page") }
        print $c "HTTP/1.1 $status X\r\nContent-Type: application/json\r\nContent-Length: "
            . length($body) . "\r\nConnection: close\r\n\r\n$body";
        close $c;
    }
    POSIX::_exit(0);
}

sub sources {
    my %spec = @_;
    mkdir $SrcDir;
    my %pids;
    for my $name (sort keys %{ $spec{redis} || {} }) {
        $Sources{$name} = { port => free_port(), args => $spec{redis}{$name} };
        $ENV{"TEST_NGINX_REDIS_\U${name}\E_PORT"} = $Sources{$name}{port};
    }
    my $cms_port = free_port();
    $ENV{TEST_NGINX_CMS_PORT} = $cms_port;
    if ($spec{cms}) {
        $CmsPid = fork // die "fork: $!";
        run_cms($cms_port) if $CmsPid == 0;
    }
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 16,
        ReuseAddr => 1) or die "sources manager: $!";
    $ENV{TEST_NGINX_SOURCES_PORT} = $l->sockport;
    $SrcPid = fork // die "fork: $!";
    if ($SrcPid == 0) {
        # The manager owns the redis-servers (it starts, restarts and reaps them).
        $pids{$_} = spawn_redis($_) for keys %Sources;
        my $stop_all = sub {
            for (values %pids) { next unless $_; kill 'CONT', $_; kill 'TERM', $_; waitpid $_, 0 }
        };
        $SIG{TERM} = sub { $stop_all->(); POSIX::_exit(0) };
        while (my $c = $l->accept) {
            my $line = <$c> // '';
            my $len = 0;
            while (my $h = <$c>) {
                last if $h =~ /^\r?\n$/;
                $len = $1 if $h =~ /^Content-Length:\s*(\d+)/i;
            }
            my $req_body = '';
            read($c, $req_body, $len) if $len;
            my ($path) = $line =~ m{^\w+\s+(\S+)};
            $path //= '/';
            my $body = "unknown\n";
            if ($path =~ m{^/cli/(\w+)$} && $Sources{$1}) {
                $body = eval { source_cli($1, expand_now($req_body)) } // "ERROR $@";
            }
            elsif ($path =~ m{^/(stop|start|freeze|thaw|reset)/(\w+)$} && $Sources{$2}) {
                my ($what, $name) = ($1, $2);
                if ($what eq 'stop' && $pids{$name}) {
                    kill 'CONT', $pids{$name};
                    kill 'TERM', $pids{$name};
                    waitpid $pids{$name}, 0;
                    $pids{$name} = 0;
                }
                elsif ($what eq 'freeze' && $pids{$name}) { kill 'STOP', $pids{$name} }
                elsif ($what eq 'thaw' && $pids{$name}) { kill 'CONT', $pids{$name} }
                elsif ($what eq 'start' || $what eq 'reset') {
                    kill 'CONT', $pids{$name} if $pids{$name};
                    $pids{$name} ||= spawn_redis($name);
                }
                $body = "$what $name\n";
            }
            elsif ($path =~ m{^/cms/(\w+)$}) {
                open my $mf, '>', "$SrcDir/cms-mode"; print $mf $1; close $mf;
                $body = "cms $1\n";
            }
            elsif ($path eq '/cms-reset') {
                unlink "$SrcDir/cms-count", "$SrcDir/cms-mode";
                $body = "cms reset\n";
            }
            elsif ($path eq '/cms-count') {
                my $n = 0;
                if (open my $cf, '<', "$SrcDir/cms-count") { $n++ while <$cf>; close $cf }
                $body = "cms-count=$n\n";
            }
            print $c "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
                . length($body) . "\r\n\r\n$body";
            close $c;
        }
        POSIX::_exit(0);
    }
    close $l;
    for my $name (keys %Sources) {
        for (1 .. 150) {
            last if eval { source_cli($name, "PING\n") =~ /PONG/ };
            sleep 0.02;
        }
    }
}

sub manager_get {
    my ($path) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ENV{TEST_NGINX_SOURCES_PORT},
        Timeout => 10) or die "sources manager: $!";
    print $s "GET $path HTTP/1.0\r\n\r\n";
    local $/;
    return <$s> // '';
}

sub reset_sources {
    my ($block) = @_;
    manager_get('/cms-reset');
    for my $name (sort keys %Sources) {
        manager_get("/reset/$name");
        my $seed = "FLUSHALL\n";
        my $section = "redis_$name";
        if (defined(my $cmds = eval { $block->$section })) {
            $seed .= expand_now($cmds);
            $seed .= "\n" unless $seed =~ /\n\z/;
        }
        source_cli($name, $seed);
    }
}

END {
    local $?;
    if ($SrcPid) { kill 'TERM', $SrcPid; waitpid $SrcPid, 0 }
    if ($CmsPid) { kill 'TERM', $CmsPid; waitpid $CmsPid, 0 }
    system('rm', '-rf', $SrcDir) if $SrcPid && -d $SrcDir;
}

add_block_preprocessor(sub {
    my $block = shift;
    kill 'CONT', $RedisPid;
    reset_sources($block) if %Sources;
    my $http = $block->http_config // '';
    if ($http !~ /dynpage_redis\s/ && !defined $block->no_default_redis) {
        $block->set_value(http_config =>
            "dynpage_redis redis://127.0.0.1:\$TEST_NGINX_REDIS_PORT;\n$http");
    }
    my $seed = "FLUSHALL\n";
    if (defined(my $redis = $block->redis)) {
        $seed .= expand_now($redis);
        $seed .= "\n" unless $seed =~ /\n\z/;
    }
    redis_cli($seed);
});

1;
