package t::TestDynpage;

# Shared defaults for dynpage's Test::Nginx::Socket suite. Works with the real
# Test::Nginx::Socket and with the project's runner in t/lib.
#
# Sections it adds:
#   --- redis       redis-cli commands run before the block (after FLUSHALL); `{now}`,
#                   `{now+1500}`, `{now-60000}` become wall-clock milliseconds.
# What it sets up:
#   - `dynpage_redis redis://127.0.0.1:$TEST_NGINX_REDIS_PORT;` is prepended to http_config
#     unless the block configures its own dynpage_redis.
#   - a control server on $TEST_NGINX_CONTROL_PORT that configs can reach with proxy_pass:
#     /freeze and /thaw (SIGSTOP/SIGCONT the test Redis), /reload (HUP the test nginx),
#     /sleep/<ms>, /redis (POST: the body's redis-cli commands, `{now...}` expanded),
#     /nginx-stats ("workers=N threads=T fds=F" of the test nginx's workers).
#     The test Redis is thawed before every block.

use Test::Nginx::Socket -base;
use strict;
use warnings;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use POSIX ();

our @EXPORT = qw(redis_cli);

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

sub expand_now {
    my ($text) = @_;
    my $now = now_ms();
    $text =~ s/\{now(?:([+-])(\d+))?\}/!defined $1 ? $now : $1 eq '+' ? $now + $2 : $now - $2/ge;
    return $text;
}

# Threads and descriptors of the test nginx's worker processes.
sub nginx_stats {
    my $master = Test::Nginx::Socket::pid_of_nginx() or return "no nginx\n";
    my ($workers, $threads, $fds) = (0, 0, 0);
    opendir my $d, '/proc' or return "no /proc\n";
    for my $pid (grep { /^\d+$/ } readdir $d) {
        open my $st, '<', "/proc/$pid/stat" or next;
        my $stat = <$st>;
        close $st;
        my ($ppid) = $stat =~ /^\d+ \(.*?\) \S (\d+)/ or next;
        next unless $ppid == $master;
        $workers++;
        if (opendir my $t, "/proc/$pid/task") { $threads += grep { /^\d+$/ } readdir $t }
        if (opendir my $f, "/proc/$pid/fd") { $fds += grep { /^\d+$/ } readdir $f }
    }
    return "workers=$workers threads=$threads fds=$fds\n";
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
        }
        elsif ($path =~ m{^/sleep/(\d+)}) { sleep($1 / 1000); $body = "slept\n" }
        elsif ($path eq '/redis') { $body = eval { redis_cli(expand_now($req_body)) } // "ERROR $@" }
        elsif ($path eq '/nginx-stats') { $body = nginx_stats() }
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
    if ($http !~ /dynpage_redis\s/) {
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
