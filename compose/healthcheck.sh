#!/bin/bash
# fv-healthcheck [PORT] [PATH]: exits 0 when http://127.0.0.1:PORT/PATH answers 200.
# Plain bash (/dev/tcp), so the runtime image needs neither curl nor wget.
set -u
port="${1:-8080}"
path="${2:-/healthz}"
exec 3<>"/dev/tcp/127.0.0.1/${port}" || exit 1
printf 'GET %s HTTP/1.1\r\nHost: localhost\r\nUser-Agent: fv-healthcheck\r\nConnection: close\r\n\r\n' "$path" >&3
IFS= read -r -t 5 status <&3 || exit 1
exec 3<&- 3>&-
case "$status" in
  "HTTP/1."[01]" 200"*) exit 0 ;;
  *) echo "unhealthy: ${status%$'\r'}" >&2; exit 1 ;;
esac
