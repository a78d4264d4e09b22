# Shared by llama_server.sh and moe_server.sh (sourced, not run): a free loopback port,
# waiting for a server's /health, and stopping the server on exit.

# free_port: prints a TCP port on 127.0.0.1 that nothing listens on right now.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# wait_health PORT PID TIMEOUT LOG: waits until GET http://127.0.0.1:PORT/health answers
# 200; fails (printing the end of LOG) when process PID exits or TIMEOUT seconds pass.
wait_health() {
    local port="$1" pid="$2" timeout="$3" log="$4" start
    start="$(date +%s)"
    while true; do
        if python3 - "$port" <<'EOF' 2>/dev/null
import sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=2) as r:
    sys.exit(0 if r.status == 200 else 1)
EOF
        then
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "the server exited before /health answered 200; the end of $log:" >&2
            tail -n 30 "$log" >&2
            return 1
        fi
        if [ $(( $(date +%s) - start )) -ge "$timeout" ]; then
            echo "no 200 from /health after ${timeout} s; the end of $log:" >&2
            tail -n 30 "$log" >&2
            return 1
        fi
        sleep 1
    done
}

# stop_server PID: SIGTERM, then SIGKILL after 20 s.
stop_server() {
    local pid="$1" i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 40); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.5
    done
    echo "the server (pid $pid) ignored SIGTERM for 20 s: SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# max_of "1,4,16": prints the largest number of a comma-separated list.
max_of() {
    echo "$1" | tr ',' '\n' | sort -n | tail -n 1
}
