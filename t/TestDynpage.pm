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
#   - a control server on $TEST_NGINX_CONTROL_PORT that configs can reach with proxy_pass:
#     /freeze and /thaw (SIGSTOP/SIGCONT the test Redis), /reload (HUP the test nginx),
#     /reload-thaw (HUP nginx, wait 0.5 s, thaw Redis),
#     /sleep/<ms>, /redis (POST: the body's redis-cli commands, `{now...}` expanded),
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
#   - $TEST_NGINX_EXTRA_PORT: a second free port, for a server block of the test's own (for
#     example one with `listen ... reuseport`, so connections spread over the workers).

use Test::Nginx::Socket -base;
use strict;
use warnings;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use POSIX ();
use Math::BigInt;

our @EXPORT = qw(redis_cli gray_bucket);

no_root_location();

my $RedisPort = $ENV{TEST_NGINX_REDIS_PORT}
    or die "TEST_NGINX_REDIS_PORT is not set: run the suite with `make test`\n";
my $RedisCli = $ENV{TEST_NGINX_REDIS_CLI} || 'redis-cli';

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

# Threads of the test nginx's master and worker processes.
sub nginx_stats {
    my $master = Test::Nginx::Socket::pid_of_nginx() or return "no nginx\n";
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
my $CtlPid = fork;
die "fork: $!" unless defined $CtlPid;
if ($CtlPid == 0) {
    $SIG{TERM} = sub { POSIX::_exit(0) };
    while (my $c = $ctl->accept) {
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
            my $pid = Test::Nginx::Socket::pid_of_nginx();
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
        print $c "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
            . length($body) . "\r\n\r\n$body";
        close $c;
    }
    POSIX::_exit(0);
}
close $ctl;

END {
    if ($CtlPid) {
        kill 'TERM', $CtlPid;
        waitpid $CtlPid, 0;
        kill 'CONT', $RedisPid if $RedisPid;
    }
}

add_block_preprocessor(sub {
    my $block = shift;
    kill 'CONT', $RedisPid;
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
