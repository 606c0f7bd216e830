# shellcheck shell=bash
# Progress lines for long steps, in the style of e2e/k8s/build.sh and e2e/images/build.ts: one
# line when a step starts (with its usual duration), one when it ends (with the elapsed time), one
# for a cached step, and a summary. The tools' own output goes to a log file; a failed step prints
# the log's path, its own last lines and what to do. Sourced by scripts/setup.sh (build.sh could
# use it too). Everything goes to stderr.
#
#   PROGRESS_PREFIX=setup PROGRESS_LOG=~/.cache/periscope-setup/setup.log
#   . scripts/lib/progress.sh
#   progress_step NAME USUAL HINT CMD…  runs CMD (a command or shell function, in a subshell with
#                                       `set -e`), its stdout and stderr appended to the log:
#                                         [setup] NAME … (usually USUAL)
#                                         [setup] NAME done in 1m05s
#                                       on failure: NAME FAILED after …, the log's path, the step's
#                                       last 25 log lines, HINT; returns CMD's exit status.
#                                       Call it as a plain command under `set -e`, not in `if`,
#                                       `&&` or `||`: bash ignores `set -e` inside those, so a
#                                       step's function would run past its first failure.
#   progress_cached NAME WHY            [setup] NAME: cached (WHY)
#   progress_own NAME HINT OUT CMD…    a script that prints its own step lines (e2e/k8s/build.sh,
#                                       scripts/images.sh): its stderr goes to the terminal, its
#                                       stdout to the file OUT; then one line, `NAME done in 1m05s`
#                                       if it ran a step (printed a `… (usually` start line or
#                                       installed packages) or `NAME: cached`, each followed by
#                                       OUT's last line; on failure `NAME FAILED after …` and HINT,
#                                       and returns CMD's exit status. A dry run does not run
#                                       CMD and counts the step as not checked.
#   progress_begin NAME USUAL / progress_end NAME [DETAIL] / progress_fail NAME HINT
#                                       the single lines, for a step run some other way.
#   progress_summary WHAT               [setup] WHAT: 4 steps, 1 run, 3 cached, in 1m05s (log: …)
#
# Optional: PROGRESS_DURATIONS=DIR keeps each step's last duration there and shows it beside the
# usual one; PROGRESS_DRY_RUN=1 makes progress_step print its start line and not run CMD.

PROGRESS_PREFIX="${PROGRESS_PREFIX:-progress}"
PROGRESS_LOG="${PROGRESS_LOG:-/tmp/progress-$$.log}"
_progress_started=$(date +%s)
_progress_run=0
_progress_cached=0
_progress_unchecked=0
_progress_log_used=0
_progress_t0=$_progress_started

progress_say() { printf '[%s] %s\n' "$PROGRESS_PREFIX" "$*" >&2; }
progress_dur() {
  local s=$1
  if [ "$s" -ge 60 ]; then printf '%dm%02ds' $((s / 60)) $((s % 60)); else printf '%ds' "$s"; fi
}
_progress_file() { printf '%s/%s' "$PROGRESS_DURATIONS" "$(printf '%s' "$1" | tr -c 'A-Za-z0-9._-' '_')"; }

progress_cached() {
  _progress_cached=$((_progress_cached + 1))
  progress_say "$1: cached${2:+ ($2)}"
}

progress_begin() {
  local last="" f
  if [ -n "${PROGRESS_DURATIONS:-}" ]; then
    f=$(_progress_file "$1")
    [ -f "$f" ] && last="; last run here $(progress_dur "$(cat "$f")")"
  fi
  progress_say "$1 … (usually $2$last)"
  _progress_t0=$(date +%s)
}

progress_end() {
  local secs=$(($(date +%s) - _progress_t0))
  _progress_run=$((_progress_run + 1))
  if [ -n "${PROGRESS_DURATIONS:-}" ]; then
    mkdir -p "$PROGRESS_DURATIONS" && echo "$secs" >"$(_progress_file "$1")"
  fi
  progress_say "$1 done in $(progress_dur "$secs")${2:+ $2}"
}

progress_fail() {
  progress_say "$1 FAILED after $(progress_dur $(($(date +%s) - _progress_t0))). $2"
}

progress_step() {
  local name=$1 usual=$2 hint=$3 from rc errexit=0
  shift 3
  if [ "${PROGRESS_DRY_RUN:-}" = 1 ]; then
    progress_say "$name … (usually $usual) — dry run, not run: $*"
    _progress_run=$((_progress_run + 1))
    return 0
  fi
  mkdir -p "$(dirname "$PROGRESS_LOG")"
  # The log holds this run's output only (a warm run that runs nothing leaves the last one).
  if [ "$_progress_log_used" = 0 ]; then : >"$PROGRESS_LOG" && _progress_log_used=1; fi
  printf '\n== %s %s: %s\n' "$(date -u +%FT%TZ)" "$name" "$*" >>"$PROGRESS_LOG"
  from=$(($(wc -l <"$PROGRESS_LOG") + 1))
  progress_begin "$name" "$usual"
  # Not `if ! "$@"`: bash ignores `set -e` inside a condition, and a step's function must stop at
  # its first failing command.
  [[ $- == *e* ]] && errexit=1
  set +e
  (
    set -e
    "$@"
  ) </dev/null >>"$PROGRESS_LOG" 2>&1
  rc=$?
  [ "$errexit" = 1 ] && set -e
  if [ "$rc" -ne 0 ]; then
    progress_fail "$name" "Its output: $PROGRESS_LOG (exit status $rc; last lines below)"
    tail -n "+$from" "$PROGRESS_LOG" | tail -n 25 | sed "s/^/[$PROGRESS_PREFIX]   /" >&2
    progress_say "$hint"
    return "$rc"
  fi
  progress_end "$name"
}

progress_own() {
  local name=$1 hint=$2 out=$3 rc errexit=0 copy detail
  shift 3
  if [ "${PROGRESS_DRY_RUN:-}" = 1 ]; then
    progress_say "$name: not checked — dry run, not run: $* (prints its own steps)"
    _progress_unchecked=$((_progress_unchecked + 1))
    return 0
  fi
  copy=$(mktemp)
  _progress_t0=$(date +%s)
  [[ $- == *e* ]] && errexit=1
  set +e
  "$@" 2>&1 >"$out" </dev/null | tee "$copy" >&2
  rc=${PIPESTATUS[0]}
  [ "$errexit" = 1 ] && set -e
  if [ "$rc" -ne 0 ]; then
    rm -f "$copy"
    progress_fail "$name" "$hint"
    return "$rc"
  fi
  detail=$(tail -n 1 "$out")
  if grep -qE ' … \(usually|installing ' "$copy"; then
    progress_end "$name" "${detail:+→ $detail}"
  else
    progress_cached "$name" "$detail"
  fi
  rm -f "$copy"
}

progress_summary() {
  local what=$1 run_word=run log="" unchecked=""
  [ "${PROGRESS_DRY_RUN:-}" = 1 ] && run_word="to run (dry run)"
  [ "$_progress_log_used" = 1 ] && log=" (log: $PROGRESS_LOG)"
  [ "$_progress_unchecked" -gt 0 ] && unchecked=", $_progress_unchecked not checked"
  progress_say "$what: $((_progress_run + _progress_cached + _progress_unchecked)) steps, $_progress_run $run_word, $_progress_cached cached$unchecked, in $(progress_dur $(($(date +%s) - _progress_started)))$log"
}
