# wait_for DESCRIPTION TIMEOUT_SECONDS COMMAND...: polls COMMAND every half
# second until it succeeds; on timeout, says what it waited for and shows
# COMMAND's last output. Sourced by the test bed's and the e2e suite's scripts.
wait_for() {
  local what=$1 timeout=$2; shift 2
  local deadline=$((SECONDS + timeout)) out
  until out=$("$@" 2>&1); do
    if ((SECONDS >= deadline)); then
      printf '[%s] timed out after %ss waiting for %s; last output:\n' "$(date +%H:%M:%S)" "$timeout" "$what" >&2
      printf '%s\n' "$out" | tail -20 >&2
      return 1
    fi
    sleep 0.5
  done
}
