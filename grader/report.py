"""A check's result, and what the TA sees of them: per-check lines, per-part scores,
the total; Gradescope's JSON; CSV.

CheckResult is the one record of a check's result: the runner makes it (and writes
it to results.json), grade reads it back (and keeps it in grading.json), the reports
show it.  As pytest's TestReport lives in its reports module beside the code that
shows it, with its own to and from JSON for the wire, so does CheckResult here.
"""

import contextlib
import csv
import errno
import fcntl
import json
import math
import os
import re
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

# A check's status: "ok" and "fail" are the submission's; "not run" (the grader could
# not set the check up, or the run ended first) and "error" (the check's own
# exception) are the grader's, and make the grading incomplete.
WORDS = {"ok": "OK", "fail": "FAIL", "not run": "NOT RUN", "error": "GRADER ERROR"}

# What the host keeps of a result the guest reported: the guest runs the submission,
# which may write anything there (README 7: what the grader trusts).
RESULTS_LIMIT = 4 << 20  # bytes of results.json
MESSAGE_LIMIT = 4000  # characters of a check's message

# What student text may not bring into a report, a CSV or the TA's terminal: control
# characters (an escape sequence starts with one), the bidirectional overrides that
# show a name backwards (Trojan Source), and the lone surrogates that stand for a
# file name's undecodable bytes (os.fsdecode), which UTF-8 cannot store.
# (Zero-width space, word joiner and BOM too; not ZWNJ and ZWJ, letters' own joiners in
# Persian, Indic scripts and emoji.)
HIDDEN = "\u061c\u200b\u200e\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff\ud800-\udfff"
UNPRINTABLE = re.compile(f"[\x00-\x1f\x7f-\x9f{HIDDEN}]")
UNPRINTABLE_BUT_LINES = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{HIDDEN}]")


def printable(text: str, lines: bool = False) -> str:
    """text with what UNPRINTABLE names shown as \\xNN (lines: newlines and tabs kept)."""
    return (UNPRINTABLE_BUT_LINES if lines else UNPRINTABLE).sub(escaped, text)


def escaped(m: re.Match) -> str:
    code = ord(m.group())
    if 0xdc80 <= code <= 0xdcff:  # surrogateescape's stand-in for the byte code - 0xdc00
        code -= 0xdc00
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def shortened(text: str, limit: int, between: str = "") -> str:
    """text, or its first limit characters and how many more there were."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}{between}... ({len(text) - limit} more characters)"


def read_regular_file(path, limit: int, tail: bool = False) -> bytes:
    """The first (tail: the last) limit bytes of path, a regular file, opened without
    following a link: what the guest or a student wrote may be a link to the TA's
    files or /dev/zero, or a FIFO that never ends (O_NONBLOCK, then fstat).  OSError
    otherwise (ELOOP for a link, EINVAL for anything but a regular file)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        if tail and info.st_size > limit:
            f.seek(info.st_size - limit)
        return f.read(limit)


@dataclass(frozen=True)
class CommandTime:
    """How long a command took against its time limit, in seconds."""

    seconds: float
    limit: float

    @property
    def share(self) -> float:
        """The part of its limit it used: 1.0 reached it."""
        return self.seconds / self.limit if self.limit else float("inf")

    def to_dict(self) -> dict:
        return {"seconds": self.seconds, "limit": self.limit}


@dataclass(frozen=True)
class CheckResult:
    """What one check gave.  status: a WORDS key; message: why, when not "ok";
    seconds: the whole check's time, limit: its time limit (scaled; None when the
    check never ran), slowest_command: its command nearest that command's own limit;
    public: whether students see it; log: the check's log file; started: when it
    began, in seconds of the machine's monotonic clock (CLOCK_MONOTONIC: comparable
    between the results of one run, whichever of the runner's lanes ran them);
    user: who the check's commands ran as (each lane has its own)."""

    id: str
    part: int
    name: str
    max_score: int
    status: str
    message: str = ""
    seconds: float = 0.0
    limit: float | None = None
    slowest_command: CommandTime | None = None
    public: bool = True
    log: str = ""
    started: float | None = None
    user: str = ""

    @property
    def score(self) -> int:
        """All of its points or none: a check passes or it does not."""
        return self.max_score if self.status == "ok" else 0

    @classmethod
    def of(cls, check, status: str, message: str = "", **fields) -> "CheckResult":
        """The result of checks.Check check."""
        return cls(id=check.id, part=check.part, name=check.name, max_score=check.points,
                   status=status, message=message, public=check.public, **fields)

    def to_dict(self) -> dict:
        """results.json's and grading.json's object for it (the keys other tools read:
        bench/stability.py, tools/mutate.py)."""
        return {"id": self.id, "part": self.part, "name": self.name,
                "max_score": self.max_score, "score": self.score, "status": self.status,
                "message": self.message, "seconds": self.seconds, "limit": self.limit,
                "slowest_command": self.slowest_command and self.slowest_command.to_dict(),
                "public": self.public, "log": self.log, "started": self.started,
                "user": self.user}

    @classmethod
    def from_dict(cls, d: dict) -> "CheckResult":
        """The result to_dict wrote (limit, slowest_command, log, started and user may
        be missing: a grading.json from before they were recorded)."""
        slowest = d.get("slowest_command")
        return cls(id=d["id"], part=d["part"], name=d["name"], max_score=d["max_score"],
                   status=d["status"], message=d.get("message", ""),
                   seconds=d.get("seconds", 0.0), limit=d.get("limit"),
                   slowest_command=slowest and CommandTime(slowest["seconds"],
                                                           slowest["limit"]),
                   public=d.get("public", True), log=d.get("log", ""),
                   started=d.get("started"), user=d.get("user", ""))


def read_results(path) -> list[CheckResult]:
    """The results a runner wrote to path (a JSON list of to_dict's objects), from a
    runner the host trusts (lanes, --local; the guest's: results_from_guest)."""
    return [CheckResult.from_dict(d) for d in json.loads(Path(path).read_text())]


def results_from_guest(path, selected: list) -> tuple[list[CheckResult], str]:
    """The results.json of a guest that ran the submission, which may have written
    anything there: only the checks selected (checks.Check), each once, in their
    order, their part, name, points and visibility the host's own, a status among
    WORDS, a message of at most MESSAGE_LIMIT characters.  Also what was wrong with
    it ('' when nothing)."""
    try:
        entries = json.loads(read_regular_file(path, RESULTS_LIMIT + 1))
    except FileNotFoundError:
        return [], ""
    except (OSError, ValueError) as e:
        return [], f"the guest's results.json is unreadable ({printable(str(e))[:200]})"
    if not isinstance(entries, list):
        return [], "the guest's results.json is not a list of results"
    reported = {}
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("id"), str):
            reported.setdefault(entry["id"], entry)
    return [reported_result(c, reported[c.id]) for c in selected if c.id in reported], ""


def reported_result(check, d: dict) -> CheckResult:
    """check's result from a dict the guest wrote, with what cannot be right replaced."""
    status, message = d.get("status"), d.get("message")
    message = message if isinstance(message, str) else ""
    if status not in WORDS:
        status, message = "error", f"the guest reported no known status ({status!r:.40})"
    message = shortened(message, MESSAGE_LIMIT)
    slowest = d.get("slowest_command")
    slowest = slowest if isinstance(slowest, dict) else {}
    log = d.get("log") if isinstance(d.get("log"), str) else ""
    user = d.get("user") if isinstance(d.get("user"), str) else ""
    seconds, limit = number(slowest.get("seconds")), number(slowest.get("limit"))
    return CheckResult.of(
        check, status, message, seconds=number(d.get("seconds")) or 0.0,
        limit=number(d.get("limit")), started=number(d.get("started")),
        slowest_command=CommandTime(seconds, limit) if None not in (seconds, limit) else None,
        log=Path(log).name, user=printable(user)[:40])


# The runner's commit: the statuses so far, written on the guest's console before the
# first check that runs a command as root (or as another user).  From then on, the
# submission's code may run as root in the guest and rewrite results.json; it cannot
# take back a line the host already has (QEMU writes the console to a host file),
# nor write one before it: the token is the host's, in the job share, root's alone.
COMMIT = "ZOO-COMMIT"
COMMIT_END = "ZOO-END"
COMMIT_COPIES = 3  # a kernel message may cut one: the host takes the first whole copy


def commit_line(token: str, results: list[CheckResult]) -> str:
    """`ZOO-COMMIT TOKEN 2 p1_exit_status=ok p1_signal=fail ZOO-END`: how many statuses, each
    (a status's space as _), and an end, so that the host knows a whole line."""
    pairs = [f"{r.id}={r.status.replace(' ', '_')}" for r in results]
    return " ".join([COMMIT, token, str(len(pairs)), *pairs, COMMIT_END])


def committed_statuses(console: bytes, token: str) -> dict[str, str] | None:
    """The statuses of the first whole commit line with token among the first
    COMMIT_COPIES lines that have it: check id -> status.  None when none of them is
    whole (cut short, or mixed with the kernel's messages); a line with the token
    after those may be anyone's who could read the token later (root in the guest)."""
    marker = f"{COMMIT} {token} ".encode()
    seen = 0
    for line in console.splitlines():
        at = line.find(marker)
        if at < 0:
            continue
        statuses = whole_commit(line[at + len(marker):].decode("ascii", "replace").split())
        if statuses is not None:
            return statuses
        seen += 1
        if seen == COMMIT_COPIES:
            break
    return None


def whole_commit(words: list[str]) -> dict[str, str] | None:
    """`N id=status ... ZOO-END` as a dict, or None when it is not whole."""
    if len(words) < 2 or not words[0].isdigit() or words[-1] != COMMIT_END:
        return None
    pairs = words[1:-1]
    if len(pairs) != int(words[0]):
        return None
    statuses = {}
    for pair in pairs:
        check_id, _, status = pair.partition("=")
        status = status.replace("_", " ")
        if status not in WORDS:
            return None
        statuses[check_id] = status
    return statuses


def number(value) -> float | None:
    """A JSON number as a float; None for anything else (a bool is no number here, nor
    Python's NaN and Infinity, which json reads and writes but JSON has not: jq and a
    browser's JSON.parse refuse them)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    try:
        value = float(value)  # an int of 400 digits is no float
    except OverflowError:
        return None
    return value if math.isfinite(value) else None


def write_results(path, results: list[CheckResult]) -> None:
    """results as JSON, written whole or not at all (a reader, the VM's watchdog, may
    read it meanwhile)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump([r.to_dict() for r in results], f, indent=1)
    os.replace(tmp, path)


def check_line(r: CheckResult) -> str:
    return f"== part{r.part}: {r.name} == {WORDS[r.status]} ({r.seconds:.1f}s)"


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def incomplete(results: list[CheckResult]) -> str:
    """'' when every check ran to a verdict, else e.g. '2 not run, 1 grader error'."""
    not_run = sum(1 for r in results if r.status == "not run")
    errors = sum(1 for r in results if r.status == "error")
    said = ([f"{not_run} not run"] if not_run else []) + (
        [plural(errors, "grader error")] if errors else [])
    return ", ".join(said)


def status(results: list[CheckResult], problem: str = "") -> str:
    """A submission's grading status: "ok", or what went wrong on the grader's side
    (problem: the VM's, say) and how many checks gave no verdict.  Anything but "ok"
    means the score may lack points the submission would earn."""
    said = [problem] if problem else []
    missing = incomplete(results)
    if missing:
        said.append(f"incomplete: {missing}")
    return "; ".join(said) or "ok"


def text_report(results: list[CheckResult], title: str = "", run_status: str = "ok",
                rules: list[dict] | None = None) -> str:
    """The terminal report, in the style TAs know from other labs; rules: the course's
    submission rules' verdicts (grader/rules.py), shown after the score."""
    out = [f"# {title}"] if title else []
    parts = sorted({r.part for r in results})
    for part in parts:
        mine = [r for r in results if r.part == part]
        for r in mine:
            out.append(check_line(r))
            if r.status != "ok":
                out.extend(f"    {printable(line)}" for line in r.message.split("\n")
                           if line.strip())
                if r.log:
                    out.append(f"    log: {printable(r.log)}")
        got = sum(r.score for r in mine)
        total = sum(r.max_score for r in mine)
        missing = incomplete(mine)
        extra = f" ({missing})" if missing else ""
        out.append(f"Part {part} score: {got}/{total}{extra}")
        out.append("")
    out.append(f"Score: {score(results)}/{max_score(results)}")
    if run_status != "ok":
        out.append(f"Status: {run_status}")
    if rules:
        out += ["", "Course rules (reported, not scored):"] + [rule_line(v) for v in rules]
    return "\n".join(out)


RULE_WORDS = {"ok": "OK", "fail": "FAIL", "unknown": "NOT CHECKED"}


def rule_line(v: dict) -> str:
    """A rule's verdict (grader/rules.py): `== rule: no binary files == FAIL (...)`."""
    return f"== rule: {v['name']} == {RULE_WORDS[v['status']]} ({v['message']})"


def rule_tests(rules: list[dict]) -> list[dict]:
    """The rules as Gradescope tests worth no points, passed or failed (a rule that
    could not be checked has no status)."""
    tests = []
    for n, v in enumerate(rules, 1):
        test = {"name": f"rule: {v['name']}", "number": f"0.{n}", "score": 0, "max_score": 0,
                "output": f"{RULE_WORDS[v['status']]}: {v['message']} (reported, not scored)",
                "visibility": "visible"}
        if v["status"] != "unknown":
            test["status"] = "passed" if v["status"] == "ok" else "failed"
        tests.append(test)
    return tests


def rule_cell(v: dict) -> str:
    """A rule's verdict in one CSV cell: ok, or fail/not checked with the reason."""
    return "ok" if v["status"] == "ok" else (
        f"{'fail' if v['status'] == 'fail' else 'not checked'}: {v['message']}")


def score(results: list[CheckResult]) -> int:
    return sum(r.score for r in results)


def max_score(results: list[CheckResult]) -> int:
    return sum(r.max_score for r in results)


def gradescope(results: list[CheckResult], execution_time: float, logs_text=None,
               run_status: str = "ok", rules: list[dict] | None = None) -> dict:
    """Gradescope's results.json: score, execution_time, tests[]; and when the grading
    is not complete, a top-level output that says so (Gradescope shows it first)."""
    tests = []
    numbers: dict[int, int] = {}
    for r in results:
        numbers[r.part] = numbers.get(r.part, 0) + 1
        output = printable(r.message, lines=True) or "passed"
        if r.status == "not run":
            output = f"not run: {printable(r.message, lines=True)}"
        if logs_text and r.status != "ok":
            output += "\n\n" + logs_text(r)
        tests.append({
            "name": f"part{r.part}: {r.name}",
            "number": f"{r.part}.{numbers[r.part]}",
            "score": r.score,
            "max_score": r.max_score,
            "output": output,
            "visibility": "visible" if r.public else "after_published",
        })
    out = {"score": score(results), "execution_time": round(execution_time, 1),
           "tests": rule_tests(rules or []) + tests}
    if run_status != "ok":
        out["output"] = (f"Grading status: {run_status}.  The score may lack points for "
                         "checks the grader could not run: ask the course staff.")
    return out


def write_gradescope(path, results, execution_time, run_status: str = "ok",
                     rules: list[dict] | None = None) -> None:
    def log_text(r: CheckResult) -> str:  # the log's end, never through a link
        try:
            end = read_regular_file(r.log, 12000, tail=True) if r.log else b""
        except OSError:
            return ""
        return printable(end.decode("utf-8", errors="replace")[-3000:], lines=True)

    text = json.dumps(gradescope(results, execution_time, log_text, run_status, rules),
                      indent=1)
    with os.fdopen(open_output(path), "w") as f:
        f.write(text)


def open_output(path) -> int:
    """path opened to be written anew, as open(2) with O_CREAT|O_TRUNC would, but never
    through another user's link nor into another user's file.  A link of ours or
    root's is followed (--json /dev/stdout); none else: in /tmp another student may
    leave a link named as the TA's --json to the TA's files (followed, where
    fs.protected_symlinks is 0), or a file of theirs to read and change the results
    in.  OSError (EPERM) for those."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        info = None
    if info is None or not stat.S_ISLNK(info.st_mode):
        flags |= os.O_NOFOLLOW  # a link put there since: ELOOP, not followed
    refuse_anothers(info, path)
    fd = os.open(path, flags, 0o666)
    try:
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode):
            refuse_anothers(info, path)
            os.ftruncate(fd, 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


def refuse_anothers(info: os.stat_result | None, path) -> None:
    if info is not None and info.st_uid not in (os.geteuid(), 0):
        raise OSError(errno.EPERM, f"another user's (uid {info.st_uid}) "
                      f"{'link' if stat.S_ISLNK(info.st_mode) else 'file'}: not written",
                      str(path))


UMASK = os.umask(0o022)  # read at import, before any thread, and put back at once
os.umask(UMASK)
# A cell that a spreadsheet would take for a formula (OWASP's "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@")


def cell(text: str) -> str:
    """text as a CSV cell for the TA's spreadsheet: control characters and bytes that
    are no UTF-8 (a directory's name) escaped, and a ' before what would be a formula."""
    text = printable(text)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def write_csv_file(path, header: list[str], rows) -> None:
    """A CSV written whole or not at all: into a file of its own beside path (another
    run may be writing its own), then renamed over path (rename(2)), which a link
    or a device at path does not follow."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with open(fd, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rows)
        os.chmod(tmp, 0o666 & ~UMASK)  # as open(2) would have made it
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class Terminal:
    """sys.stdout or sys.stderr for a long run's progress lines: a reader that went
    away (grade | head) or a terminal hung up loses the lines, never a grading or a
    row (print raised BrokenPipeError in the middle of one).  Any other failure (a
    full disk) is raised, as before."""

    def __init__(self, stream):
        self.stream, self.gone = stream, False

    def write(self, text: str) -> int:
        if not self.gone:
            with self.reader_gone():
                self.stream.write(text)
        return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if not self.gone:
            with self.reader_gone():
                self.stream.flush()

    @contextlib.contextmanager
    def reader_gone(self):
        try:
            yield
        except OSError as e:
            if not isinstance(e, BrokenPipeError) and e.errno != errno.EIO:
                raise
            self.gone = True

    def __getattr__(self, name):  # buffer, encoding, fileno, isatty: the stream's own
        return getattr(self.stream, name)


def progress_to_terminal() -> None:
    """Progress lines (print) from now on through Terminal."""
    sys.stdout, sys.stderr = Terminal(sys.stdout), Terminal(sys.stderr)


def try_lock(f, program: str, shared: bool = False) -> bool:
    """flock(2) f's file, without waiting: False if another process holds it (shared:
    others that share it do not count).  A filesystem without flock (ENOLCK, ENOSYS,
    EOPNOTSUPP: some NFS, Lustre by default) locks nothing, and says so once: runs
    there must not overlap."""
    try:
        fcntl.flock(f, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as e:
        if not LOCKS_UNSUPPORTED:
            print(f"{program}: {f.name}: cannot lock it ({e.strerror}): no two runs may "
                  "write there at once", file=sys.stderr)
        LOCKS_UNSUPPORTED.append(e.errno)
    return True


LOCKS_UNSUPPORTED: list[int] = []


def write_csv(path, rows: list[tuple[str, list[CheckResult], str]],
              rules: dict[str, list[dict]] | None = None, selected=()) -> None:
    """One row per submission: name, total, each part's score, status; with rules
    (submission name -> verdicts), a column per course rule after them.  selected:
    the checks graded (their parts are columns, their points the most a row can
    have), when the rows alone may not tell: every one of them an error."""
    parts = sorted({r.part for _, results, _ in rows for r in results}
                   | {c.part for c in selected}) or [1]
    ids = list(dict.fromkeys(v["id"] for vs in (rules or {}).values() for v in vs))
    # A row without results (not collected, not graded) is 0 of what the others could
    # get, not 0 of 0 (a spreadsheet's percentage would divide by zero).
    full = max([max_score(results) for _, results, _ in rows]
               + [sum(c.points for c in selected)])
    write_csv_file(path, ["submission", "score", "max_score"] + [f"part{p}" for p in parts]
                   + ["status"] + [f"rule_{i}" for i in ids],
                   ([cell(name), score(results), max_score(results) if results else full]
                    + [sum(r.score for r in results if r.part == p) for p in parts]
                    + [cell(status)] + [next((rule_cell(v) for v in (rules or {}).get(name, [])
                                              if v["id"] == i), "") for i in ids]
                    for name, results, status in rows))
