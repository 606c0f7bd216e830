/*
 * periscope-audit-exec: `/usr/local/bin/kubectl` and `/usr/local/bin/helm` are symlinks to this
 * program. It records every call in the in-pod audit file and runs the real binary. See
 * docs/shell-image.md for the contract; apps/shell/src/audit-exec/audit-exec.spec.ts checks it.
 *
 * Native code rather than a Node program because it runs before every kubectl call: a Node
 * start-up added ~60 ms per call, this adds ~1 ms (docs/benchmarks.md, "Audit wrapper").
 *
 * The audit line is byte for byte what the former Node wrapper wrote:
 *   JSON.stringify({timestamp, pid, argv}) without its closing brace, a comma,
 *   `"exit_code":…,"duration_ms":…` padded with spaces to RESULT_WIDTH, `}` and a newline.
 * Arguments are decoded as UTF-8 the way Node decodes process.argv (WHATWG: each maximal invalid
 * subsequence becomes U+FFFD) and escaped the way JSON.stringify escapes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PROGRAM "periscope-audit-exec"
#define DEFAULT_AUDIT_FILE "/tmp/periscope-shell/audit.jsonl"
#define DEFAULT_REAL_DIR "/opt/periscope/bin"
/* Width of `"exit_code":…,"duration_ms":…` (padded with spaces), so completing the line
 * overwrites it in place. Same value as before: lines of both wrappers read alike. */
#define RESULT_WIDTH 48

/* The tools whose every call is audited (also AUDITED_TOOLS in allow-list.ts; a test keeps
 * them equal). Adding one: an entry here and there, a symlink and a <tool>-real binary in
 * docker/shell-image.json and docker/Dockerfile.shell. */
static const char *const AUDITED_TOOLS[] = {"kubectl", "helm"};
#define N_TOOLS (sizeof AUDITED_TOOLS / sizeof AUDITED_TOOLS[0])

/* ---- a growable byte buffer ----------------------------------------------------------------- */

struct buf {
  char *p;
  size_t len, cap;
};

static void buf_add(struct buf *b, const void *data, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (b->len + n + 1 > cap) cap *= 2;
    char *p = realloc(b->p, cap);
    if (p == NULL) {
      static const char oom[] = PROGRAM ": out of memory\n";
      (void)!write(2, oom, sizeof oom - 1);
      _exit(126);
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, data, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void buf_str(struct buf *b, const char *s) { buf_add(b, s, strlen(s)); }

static void buf_fmt(struct buf *b, const char *fmt, ...) {
  char tmp[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n > 0) buf_add(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* ---- JSON strings as JSON.stringify writes them ----------------------------------------------- */

static void put_code_point(struct buf *b, uint32_t cp) {
  unsigned char u[4];
  size_t n;
  if (cp < 0x80) {
    switch (cp) {
      case '"': buf_str(b, "\\\""); return;
      case '\\': buf_str(b, "\\\\"); return;
      case '\b': buf_str(b, "\\b"); return;
      case '\f': buf_str(b, "\\f"); return;
      case '\n': buf_str(b, "\\n"); return;
      case '\r': buf_str(b, "\\r"); return;
      case '\t': buf_str(b, "\\t"); return;
      default:
        if (cp < 0x20) {
          buf_fmt(b, "\\u%04x", (unsigned)cp);
          return;
        }
        u[0] = (unsigned char)cp;
        n = 1;
    }
  } else if (cp < 0x800) {
    u[0] = (unsigned char)(0xC0 | (cp >> 6));
    u[1] = (unsigned char)(0x80 | (cp & 0x3F));
    n = 2;
  } else if (cp < 0x10000) {
    u[0] = (unsigned char)(0xE0 | (cp >> 12));
    u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    u[2] = (unsigned char)(0x80 | (cp & 0x3F));
    n = 3;
  } else {
    u[0] = (unsigned char)(0xF0 | (cp >> 18));
    u[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    u[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    u[3] = (unsigned char)(0x80 | (cp & 0x3F));
    n = 4;
  }
  buf_add(b, u, n);
}

/* The WHATWG UTF-8 decoder (encoding.spec.whatwg.org, "UTF-8 decoder"), as Node applies it to argv. */
static void put_json_string(struct buf *b, const char *s) {
  const unsigned char *p = (const unsigned char *)s;
  uint32_t cp = 0;
  int needed = 0, seen = 0;
  unsigned lower = 0x80, upper = 0xBF;
  buf_str(b, "\"");
  while (*p != '\0') {
    unsigned c = *p;
    if (needed == 0) {
      p++;
      if (c <= 0x7F) {
        put_code_point(b, c);
      } else if (c >= 0xC2 && c <= 0xDF) {
        needed = 1;
        cp = c & 0x1F;
      } else if (c >= 0xE0 && c <= 0xEF) {
        if (c == 0xE0) lower = 0xA0;
        if (c == 0xED) upper = 0x9F;
        needed = 2;
        cp = c & 0x0F;
      } else if (c >= 0xF0 && c <= 0xF4) {
        if (c == 0xF0) lower = 0x90;
        if (c == 0xF4) upper = 0x8F;
        needed = 3;
        cp = c & 0x07;
      } else {
        put_code_point(b, 0xFFFD);
      }
      continue;
    }
    if (c < lower || c > upper) {
      /* The sequence so far is one error; this byte starts over (not consumed). */
      cp = 0;
      needed = seen = 0;
      lower = 0x80;
      upper = 0xBF;
      put_code_point(b, 0xFFFD);
      continue;
    }
    p++;
    lower = 0x80;
    upper = 0xBF;
    cp = (cp << 6) | (c & 0x3F);
    if (++seen == needed) {
      put_code_point(b, cp);
      cp = 0;
      needed = seen = 0;
    }
  }
  if (needed != 0) put_code_point(b, 0xFFFD);
  buf_str(b, "\"");
}

/* ---- messages ------------------------------------------------------------------------------------ */

static void say(const char *text) {
  struct buf b = {0};
  buf_str(&b, PROGRAM ": ");
  buf_str(&b, text);
  buf_str(&b, "\n");
  /* Straight to the descriptor, once: stderr is shared with the tool. */
  (void)!write(2, b.p, b.len);
  free(b.p);
}

/* Audit problems never block the command: at most one warning per call. */
static int warned;

static void warn_once(const char *what, const char *file, const char *reason) {
  if (warned) return;
  warned = 1;
  struct buf b = {0};
  buf_fmt(&b, "warning: %s %s: %s (the command runs anyway)", what, file, reason);
  say(b.p);
  free(b.p);
}

/* ---- the audit file ------------------------------------------------------------------------------ */

struct audit {
  const char *file;
  struct buf head; /* the line up to and including the comma before the result fields */
  struct buf line; /* the pending line as written */
  long long offset; /* where the line is in the file; -1 when not written or not located */
};

static void result_line(struct buf *out, const struct buf *head, const char *fields) {
  out->len = 0;
  buf_add(out, head->p, head->len);
  size_t n = strlen(fields);
  buf_str(out, fields);
  for (; n < RESULT_WIDTH; n++) buf_str(out, " ");
  buf_str(out, "}\n");
}

static int same_bytes(int fd, long long offset, const struct buf *expected) {
  char *actual = malloc(expected->len ? expected->len : 1);
  if (actual == NULL) return 0;
  size_t got = 0;
  while (got < expected->len) {
    ssize_t n = pread(fd, actual + got, expected->len - got, (off_t)(offset + (long long)got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += (size_t)n;
  }
  int same = got == expected->len && memcmp(actual, expected->p, expected->len) == 0;
  free(actual);
  return same;
}

/* mkdir -p of the file's directory, mode 0700 for what it creates. */
static int make_parents(const char *file, char *err, size_t errlen) {
  char *path = strdup(file);
  if (path == NULL) return -1;
  char *slash = strrchr(path, '/');
  int rc = 0;
  if (slash != NULL && slash != path) {
    *slash = '\0';
    for (char *p = path + 1;; p++) {
      if (*p == '/' || *p == '\0') {
        char saved = *p;
        *p = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST) {
          snprintf(err, errlen, "mkdir %s: %s", path, strerror(errno));
          rc = -1;
          break;
        }
        *p = saved;
        if (saved == '\0') break;
      }
    }
    if (rc == 0) {
      struct stat st;
      if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s is not a directory", path);
        rc = -1;
      }
    }
  }
  free(path);
  return rc;
}

/*
 * Byte offset of the line just appended through fd. After an O_APPEND write the descriptor's
 * position is the end of what it wrote, whatever other writers did meanwhile; Linux shows it in
 * /proc/self/fdinfo. Without /proc, the end of the file is used when it still holds our line.
 */
static long long locate(int fd, const struct buf *line) {
  long long end = -1;
  char path[64], info[512];
  snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
  int in = open(path, O_RDONLY | O_CLOEXEC);
  if (in >= 0) {
    ssize_t n = read(in, info, sizeof info - 1);
    close(in);
    if (n > 0) {
      info[n] = '\0';
      char *pos = strstr(info, "pos:");
      if (pos == info || (pos != NULL && pos[-1] == '\n')) end = strtoll(pos + 4, NULL, 10);
    }
  }
  if (end < 0) {
    struct stat st;
    if (fstat(fd, &st) != 0) return -1;
    end = (long long)st.st_size;
  }
  long long offset = end - (long long)line->len;
  return offset >= 0 && same_bytes(fd, offset, line) ? offset : -1;
}

/* Writes the call's pending line. Never fails the call. */
static void audit_start(struct audit *a, const char *name, char **args, int nargs) {
  struct timespec now;
  struct tm tm;
  char stamp[64];
  clock_gettime(CLOCK_REALTIME, &now);
  gmtime_r(&now.tv_sec, &tm);
  snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
           tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, now.tv_nsec / 1000000);

  buf_fmt(&a->head, "{\"timestamp\":\"%s\",\"pid\":%ld,\"argv\":[", stamp, (long)getpid());
  put_json_string(&a->head, name);
  for (int i = 0; i < nargs; i++) {
    buf_str(&a->head, ",");
    put_json_string(&a->head, args[i]);
  }
  buf_str(&a->head, "],");
  result_line(&a->line, &a->head, "\"exit_code\":null,\"duration_ms\":null");

  char err[512];
  if (make_parents(a->file, err, sizeof err) != 0) {
    warn_once("cannot write the audit record to", a->file, err);
    return;
  }
  int fd = open(a->file, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
  if (fd < 0) {
    snprintf(err, sizeof err, "open: %s", strerror(errno));
    warn_once("cannot write the audit record to", a->file, err);
    return;
  }
  /* One write(2) with O_APPEND: concurrent calls (a pipeline of kubectl and helm) never
   * interleave inside a line. */
  ssize_t n = write(fd, a->line.p, a->line.len);
  if (n != (ssize_t)a->line.len) {
    if (n < 0)
      snprintf(err, sizeof err, "write: %s", strerror(errno));
    else
      snprintf(err, sizeof err, "short write (%zd of %zu bytes)", n, a->line.len);
    warn_once("cannot write the audit record to", a->file, err);
    close(fd);
    return;
  }
  a->offset = locate(fd, &a->line);
  if (a->offset < 0) a->offset = -2; /* written, not located */
  close(fd);
}

/* Fills in exit code and duration on the call's line. Never fails the call. */
static void audit_finish(struct audit *a, int exit_code, long long duration_ms) {
  if (a->offset == -1) return;
  if (a->offset == -2) {
    warn_once("cannot record the exit code in", a->file, "the call's line could not be located");
    return;
  }
  char fields[128], err[512];
  snprintf(fields, sizeof fields, "\"exit_code\":%d,\"duration_ms\":%lld", exit_code, duration_ms);
  struct buf done = {0};
  result_line(&done, &a->head, fields);
  /* Not O_APPEND: on Linux a positioned write to an O_APPEND descriptor still appends. */
  int fd = open(a->file, O_RDWR | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    snprintf(err, sizeof err, "open: %s", strerror(errno));
    warn_once("cannot record the exit code in", a->file, err);
  } else if (!same_bytes(fd, a->offset, &a->line)) {
    warn_once("cannot record the exit code in", a->file, "the file changed under us (truncated or replaced)");
  } else {
    ssize_t n = pwrite(fd, done.p, done.len, (off_t)a->offset);
    if (n != (ssize_t)done.len) {
      if (n < 0)
        snprintf(err, sizeof err, "write: %s", strerror(errno));
      else
        snprintf(err, sizeof err, "short write (%zd of %zu bytes)", n, done.len);
      warn_once("cannot record the exit code in", a->file, err);
    }
  }
  if (fd >= 0) close(fd);
  free(done.p);
}

/* ---- signals --------------------------------------------------------------------------------------- */

/* Always passed on to the tool (never generated by a terminal). */
static const int FORWARD[] = {SIGTERM, SIGUSR1, SIGUSR2};
/* Sent by a terminal to its whole foreground process group (Ctrl-C, Ctrl-\, hang-up). The tool is
 * in our process group, so when we are in the terminal's foreground group it already has the
 * signal and we only must not die of it; otherwise the signal was sent to us alone (`kill <pid>`,
 * `timeout`) and is passed on. */
static const int FROM_TERMINAL[] = {SIGINT, SIGQUIT, SIGHUP};
_Static_assert(sizeof FORWARD / sizeof FORWARD[0] == 3 && sizeof FROM_TERMINAL / sizeof FROM_TERMINAL[0] == 3,
               "the loops over both lists below take three signals each");

static volatile sig_atomic_t pending[65];

static void on_signal(int sig) {
  if (sig > 0 && sig < 65) pending[sig] = 1;
}

/* True when we are in the foreground process group of our controlling terminal. Reads
 * /proc/self/stat; when it cannot tell, assumes a terminal so the tool never gets a Ctrl-C twice. */
static int in_terminal_foreground_group(void) {
  char stat[1024];
  int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 1;
  ssize_t n = read(fd, stat, sizeof stat - 1);
  close(fd);
  if (n <= 0) return 1;
  stat[n] = '\0';
  /* Fields after the command name (which may hold spaces and parentheses): state ppid pgrp
   * session tty_nr tpgid … */
  char *rest = strrchr(stat, ')');
  long pgrp, tpgid;
  if (rest == NULL || sscanf(rest + 2, "%*c %*d %ld %*d %*d %ld", &pgrp, &tpgid) != 2) return 1;
  return tpgid > 0 && tpgid == pgrp;
}

static long long monotonic_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* Ends this process the way the tool ended, so the shell sees the same thing (a tool killed by
 * SIGINT makes bash stop a loop; a plain status 130 would not). */
static void exit_like(int status) {
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    signal(sig, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    raise(sig);
    _exit(128 + sig); /* a signal whose default is to be ignored */
  }
  _exit(WEXITSTATUS(status));
}

/* ---- main ----------------------------------------------------------------------------------------- */

static const char *env_or(const char *name, const char *fallback) {
  const char *v = getenv(name);
  return v != NULL && v[0] != '\0' ? v : fallback;
}

static const char *base_name(const char *path) {
  const char *slash = strrchr(path, '/');
  return slash != NULL ? slash + 1 : path;
}

int main(int argc, char **argv) {
  /* Dispatch on the path we were executed by (the symlink), like a script's interpreter sees it:
   * AT_EXECFN is the file name given to execve, argv[0] is whatever the caller chose. */
  const char *called = (const char *)getauxval(AT_EXECFN);
  if (called == NULL) called = argc > 0 ? argv[0] : "";
  const char *name = base_name(called);

  const char *tool = NULL;
  for (size_t i = 0; i < N_TOOLS; i++)
    if (strcmp(name, AUDITED_TOOLS[i]) == 0) tool = AUDITED_TOOLS[i];
  if (tool == NULL) {
    struct buf b = {0};
    put_json_string(&b, name);
    buf_str(&b, " is not an audited tool (allowed: ");
    for (size_t i = 0; i < N_TOOLS; i++) {
      if (i > 0) buf_str(&b, ", ");
      buf_str(&b, AUDITED_TOOLS[i]);
    }
    buf_str(&b, "); call it through its symlink, e.g. /usr/local/bin/kubectl");
    say(b.p);
    free(b.p);
    return 127;
  }

  /* The only reads of the environment. PERISCOPE_AUDIT_EXEC_REAL_DIR exists for tests only
   * (fake real binaries); images and pod specs never set it. It is no security boundary: the
   * real binaries are reachable from the shell anyway. */
  struct buf real = {0};
  buf_str(&real, env_or("PERISCOPE_AUDIT_EXEC_REAL_DIR", DEFAULT_REAL_DIR));
  if (real.len == 0 || real.p[real.len - 1] != '/') buf_str(&real, "/");
  buf_str(&real, tool);
  buf_str(&real, "-real");

  /* Catch the signals we pass on (or survive) before the tool exists: it can print a prompt and
   * get a Ctrl-C within a millisecond. They stay blocked until the tool's pid is known. A signal
   * the caller left ignored (a background job's SIGINT) stays ignored, for us and for the tool. */
  sigset_t caught, original;
  sigemptyset(&caught);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  const int *lists[] = {FORWARD, FROM_TERMINAL};
  for (int l = 0; l < 2; l++)
    for (int i = 0; i < 3; i++) {
      int sig = lists[l][i];
      struct sigaction old;
      if (sigaction(sig, NULL, &old) == 0 && old.sa_handler == SIG_IGN) continue;
      sigaddset(&caught, sig);
    }
  sigaddset(&caught, SIGCHLD);
  sigprocmask(SIG_BLOCK, &caught, &original);
  for (int sig = 1; sig < 65; sig++)
    if (sigismember(&caught, sig) == 1) sigaction(sig, &sa, NULL);

  struct audit audit = {.file = env_or("PERISCOPE_SHELL_AUDIT_FILE", DEFAULT_AUDIT_FILE), .offset = -1};
  audit_start(&audit, tool, argv + 1, argc > 1 ? argc - 1 : 0);
  long long started = monotonic_ns();

  /* A failed exec reports its errno through a close-on-exec pipe. */
  int report[2];
  if (pipe2(report, O_CLOEXEC) != 0) report[0] = report[1] = -1;
  char **child_argv = calloc((size_t)(argc > 1 ? argc : 1) + 1, sizeof *child_argv);
  if (child_argv == NULL) return 126;
  child_argv[0] = (char *)tool;
  for (int i = 1; i < argc; i++) child_argv[i] = argv[i];

  int start_errno = 0;
  pid_t child = fork();
  if (child == 0) {
    for (int sig = 1; sig < 65; sig++)
      if (sigismember(&caught, sig) == 1) signal(sig, SIG_DFL);
    sigprocmask(SIG_SETMASK, &original, NULL);
    execv(real.p, child_argv);
    int e = errno;
    if (report[1] >= 0) (void)!write(report[1], &e, sizeof e);
    _exit(126);
  }
  if (child < 0) start_errno = errno;
  if (report[1] >= 0) close(report[1]);
  if (child > 0 && report[0] >= 0) {
    int e;
    ssize_t n;
    do n = read(report[0], &e, sizeof e);
    while (n < 0 && errno == EINTR);
    if (n == (ssize_t)sizeof e) start_errno = e;
  }
  if (report[0] >= 0) close(report[0]);

  int status = 126 << 8; /* exited 126: could not be started */
  if (child > 0) {
    for (;;) {
      pid_t done = waitpid(child, &status, WNOHANG);
      if (done == child) break;
      if (done < 0 && errno != EINTR) {
        status = 126 << 8;
        break;
      }
      sigsuspend(&original); /* returns after a caught signal ran its handler */
      for (int l = 0; l < 2; l++)
        for (int i = 0; i < 3; i++) {
          int sig = lists[l][i];
          if (!pending[sig]) continue;
          pending[sig] = 0;
          if (l == 0 || !in_terminal_foreground_group()) kill(child, sig);
        }
    }
  }
  if (start_errno != 0) {
    struct buf b = {0};
    const char *code_name = strerrorname_np(start_errno);
    buf_fmt(&b, "cannot run %s: %s (%s)", real.p, strerror(start_errno), code_name ? code_name : "?");
    say(b.p);
    free(b.p);
    status = 126 << 8;
  }

  int code = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
  audit_finish(&audit, code, (monotonic_ns() - started + 500000) / 1000000);
  exit_like(status);
  return code;
}
