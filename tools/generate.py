#!/usr/bin/env python3
"""Write the six part directories and the student skeleton from the one source in src/.

The source is ordinary Python with a few annotations (see src/README.md):

  # zookeeper-source: stage=N [only=parts|skeleton]
        first line of a file: the file joins the parts from stage N on; `only=parts`
        keeps it out of the skeleton, `only=skeleton` out of the parts.
  if PART >= N:   /   if PART < N:
        a run-time guard inside a function, around the calls a stage adds.  In part K
        the generator keeps the body (dedented) when the condition holds for K and
        drops it otherwise; the skeleton keeps the guard as real code, so a student's
        copy switches a part's code on by its directory's name.
  # >>> stage N  ...  # <<< stage N
        a region of module-level code (definitions) that joins the parts at stage N;
        the skeleton has every stage's, without the markers.
  # >>> before stage N  ...  # <<< before stage N
        module-level code only parts before N have (what an `if PART < N:` guard
        calls); the skeleton has it, without the markers.  No exercise inside.
  ...  # from stage N
        one line (an import, a declared field) that joins the parts at stage N; the
        skeleton has it, without the annotation.
  ...  # skeleton only
        a line kept only in the skeleton (which part a student's copy is), without
        the annotation.
  # STUDENT CODE BELOW (qN)  ...  # STUDENT CODE ABOVE (qN)
        an exercise.  Its first comment lines are the hint; the references keep the block
        whole, the skeleton keeps the hint and replaces the code by a call that says
        "qN (part S) is not implemented yet: <first hint line>".

Any malformed annotation stops the generator with file:line.

Usage: generate.py [--check] [--src DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import difflib
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

# Part N's directory, from the one list the Makefiles and demo.sh read too.
PART_NAMES_FILE = Path(__file__).resolve().parent / "part-names.txt"
PARTS = dict(enumerate(PART_NAMES_FILE.read_text().split(), start=1))
SKELETON = "skeleton"
LAST_STAGE = max(PARTS)

HEADER_RE = re.compile(r"^# zookeeper-source: stage=(\d)(?: only=(parts|skeleton))?\s*$")
GUARD_RE = re.compile(r"^(\s*)if PART (>=|<) (\d):\s*$")
FROM_STAGE_RE = re.compile(r"^(.*\S)  # from stage (\d)$")
REGION_OPEN_RE = re.compile(r"^# >>> (before )?stage (\d)\s*$")
REGION_CLOSE_RE = re.compile(r"^# <<< (before )?stage (\d)\s*$")
BELOW_RE = re.compile(r"^(\s*)# STUDENT CODE BELOW \(q(\d+)\)\s*$")
ABOVE_RE = re.compile(r"^(\s*)# STUDENT CODE ABOVE \(q(\d+)\)\s*$")
SKELETON_ONLY = "  # skeleton only"
NOT_IMPLEMENTED_IMPORT = "from exercise import not_implemented\n"


class GeneratorError(Exception):
    """A malformed annotation, reported as file:line: message."""

    def __init__(self, path: str, lineno: int, message: str):
        super().__init__(f"{path}:{lineno}: {message}")


@dataclass
class Block:
    """One exercise: where it is, its stage, its hint and its code lines."""

    q: int
    stage: int
    path: str
    lineno: int
    indent: str
    hint: list[str] = field(default_factory=list)
    code: list[str] = field(default_factory=list)
    function: str = ""

    @property
    def man_pages(self) -> list[str]:
        found = re.findall(r"\b[a-z_0-9]+\([1-8]\)", " ".join(self.hint))
        return list(dict.fromkeys(found))

    @property
    def what(self) -> str:
        """The hint's first sentence or clause, as the 'not implemented' message shows it."""
        text = " ".join(h.strip().lstrip("#").strip() for h in self.hint)
        text = re.split(r"[.:;](?:\s|$)", text)[0].strip()
        return text[:1].lower() + text[1:]


@dataclass
class SourceFile:
    path: str  # relative to src/
    stage: int
    only: str | None
    lines: list[str]
    executable: bool


def read_source(src: Path, rel: str) -> SourceFile:
    path = src / rel
    lines = path.read_text().splitlines(keepends=True)
    stage, only = 1, None
    # The header may follow a shebang line.
    for i, line in enumerate(lines[:2]):
        m = HEADER_RE.match(line)
        if m:
            stage, only = int(m.group(1)), m.group(2)
            del lines[i]
            break
        if "zookeeper-source" in line:
            raise GeneratorError(rel, i + 1, f"malformed header {line.strip()!r}")
    if not 1 <= stage <= LAST_STAGE:
        raise GeneratorError(rel, 1, f"stage {stage} is not 1..{LAST_STAGE}")
    return SourceFile(rel, stage, only, lines, bool(path.stat().st_mode & 0o111))


def indent_of(line: str) -> int:
    return len(line) - len(line.lstrip())


def guard_body_end(lines: list[str], start: int, indent: int) -> int:
    """Index just past the body of the guard at lines[start] (blank lines inside count)."""
    end = start + 1
    last_body = start
    while end < len(lines):
        line = lines[end]
        if line.strip():
            if indent_of(line) <= indent:
                break
            last_body = end
        end += 1
    return last_body + 1


def check_markers(sf: SourceFile) -> list[Block]:
    """Find the exercise blocks of one file, and check every annotation in it."""
    blocks: list[Block] = []
    open_block: Block | None = None
    in_hint = False
    region: tuple[int, int, bool] | None = None  # (stage, lineno, before)
    guards: list[tuple[int, str, int]] = []  # (indent, op, stage) of enclosing guards
    for i, line in enumerate(sf.lines):
        lineno = i + 1
        stripped = line.strip()
        if stripped and not (open_block and stripped.startswith("#")):
            while guards and indent_of(line) <= guards[-1][0]:
                guards.pop()
        if stripped.startswith(("elif", "else")) and guards_just_closed(sf.lines, i):
            raise GeneratorError(sf.path, lineno, "a stage guard cannot have elif/else")
        m = GUARD_RE.match(line)
        if m:
            stage = int(m.group(3))
            if not 2 <= stage <= LAST_STAGE:
                raise GeneratorError(sf.path, lineno, f"guard stage {stage} is not 2..{LAST_STAGE}")
            if stage <= sf.stage:
                raise GeneratorError(
                    sf.path, lineno, f"guard for stage {stage} in a file of stage {sf.stage}")
            if indent_of(line) == 0:
                raise GeneratorError(sf.path, lineno, "stage guards belong inside functions; "
                                     "use '# >>> stage N' for module-level code")
            guards.append((indent_of(line), m.group(2), stage))
            continue
        if "PART >=" in line or "PART <" in line:
            if stripped.startswith("if ") or stripped.startswith("elif "):
                raise GeneratorError(sf.path, lineno, f"malformed stage guard {stripped!r}")
        m = REGION_OPEN_RE.match(line)
        if m:
            if region:
                raise GeneratorError(sf.path, lineno, f"stage region nested in the one "
                                     f"opened at line {region[1]}")
            region = (int(m.group(2)), lineno, bool(m.group(1)))
            if region[0] <= sf.stage:
                raise GeneratorError(sf.path, lineno, f"region for stage {region[0]} in a "
                                     f"file of stage {sf.stage}")
            continue
        m = REGION_CLOSE_RE.match(line)
        if m:
            if not region or (region[0], region[2]) != (int(m.group(2)), bool(m.group(1))):
                raise GeneratorError(sf.path, lineno, f"'{stripped}' closes no open region")
            region = None
            continue
        if re.search(r"(>>>|<<<) (before )?stage", line):
            raise GeneratorError(sf.path, lineno, f"malformed stage region marker {stripped!r}")
        m = FROM_STAGE_RE.match(line.rstrip("\n"))
        if m:
            stage = int(m.group(2))
            if not sf.stage < stage <= LAST_STAGE:
                raise GeneratorError(sf.path, lineno, f"'# from stage {stage}' in a file of "
                                     f"stage {sf.stage}: it must be {sf.stage + 1}..{LAST_STAGE}")
            if open_block or guards or region:
                raise GeneratorError(sf.path, lineno, "'# from stage N' stands alone: not in "
                                     "an exercise, a guard or a region")
        elif "# from stage" in line:
            raise GeneratorError(sf.path, lineno, f"malformed '# from stage N' {stripped!r}")
        below, above = BELOW_RE.match(line), ABOVE_RE.match(line)
        if below:
            if open_block:
                raise GeneratorError(sf.path, lineno, f"q{below.group(2)} opens inside "
                                     f"q{open_block.q} (opened at line {open_block.lineno})")
            if any(op == "<" for _, op, _ in guards) or (region and region[2]):
                raise GeneratorError(sf.path, lineno, "an exercise cannot sit in code that "
                                     "a later stage removes (if PART < N, before stage N)")
            stage = max([sf.stage] + [s for _, _, s in guards] + ([region[0]] if region else []))
            open_block = Block(int(below.group(2)), stage, sf.path, lineno, below.group(1),
                               function=enclosing_function(sf.lines, i))
            in_hint = True
            continue
        if above:
            q = int(above.group(2))
            if not open_block:
                raise GeneratorError(sf.path, lineno, f"q{q} closes a block that was never opened")
            if q != open_block.q:
                raise GeneratorError(sf.path, lineno, f"q{q} closes q{open_block.q} "
                                     f"(opened at line {open_block.lineno})")
            if above.group(1) != open_block.indent:
                raise GeneratorError(sf.path, lineno, f"q{q}: ABOVE and BELOW markers are "
                                     "not indented alike")
            if not open_block.hint:
                raise GeneratorError(sf.path, open_block.lineno, f"q{q} has no hint comment")
            if not any(c.strip() for c in open_block.code):
                raise GeneratorError(sf.path, open_block.lineno, f"q{q} has no code")
            blocks.append(open_block)
            open_block = None
            continue
        if "STUDENT CODE" in line:
            raise GeneratorError(sf.path, lineno, f"malformed exercise marker {stripped!r}")
        if open_block:
            if in_hint and stripped.startswith("#"):
                open_block.hint.append(line)
            else:
                in_hint = False
                open_block.code.append(line)
    if open_block:
        raise GeneratorError(sf.path, open_block.lineno, f"q{open_block.q} is never closed "
                             f"(no '# STUDENT CODE ABOVE (q{open_block.q})')")
    if region:
        raise GeneratorError(sf.path, region[1], f"stage {region[0]} region is never closed")
    return blocks


def enclosing_function(lines: list[str], i: int) -> str:
    """The name of the function that line i is in, with its class for a method
    (Slirp.start: network.py has a start() in each of its classes)."""
    names, ind = [], indent_of(lines[i])
    for j in range(i - 1, -1, -1):
        m = re.match(r"^(\s*)(def|class) (\w+)", lines[j])
        if m and len(m.group(1)) < ind:
            names.insert(0, m.group(3))
            ind = len(m.group(1))
    return ".".join(names) or "(module)"


def exercise_table(blocks: list[Block]) -> str:
    """The README's table of exercises: number, part, where, what, which man pages."""
    lines = []
    for b in blocks:
        where = f"{b.path}: {b.function}()"
        lines.append(f"q{b.q:<3} {b.stage}  {where:<36} {b.what}")
        if b.man_pages:
            lines.append(f"{'':44} see {', '.join(b.man_pages)}")
    return "\n".join(lines) + "\n"


def guards_just_closed(lines: list[str], i: int) -> bool:
    """Does the line before lines[i] (ignoring blanks) end the body of a stage guard?"""
    ind = indent_of(lines[i])
    for j in range(i - 1, -1, -1):
        if not lines[j].strip():
            continue
        if indent_of(lines[j]) <= ind:
            return bool(GUARD_RE.match(lines[j])) and indent_of(lines[j]) == ind
    return False


def check_numbering(blocks: list[Block]) -> None:
    """q numbers: unique, 1..N with no gap, never lower in a later stage, in file order."""
    seen: dict[int, Block] = {}
    for b in blocks:
        if b.q in seen:
            first = seen[b.q]
            raise GeneratorError(b.path, b.lineno, f"q{b.q} is used twice "
                                 f"(first at {first.path}:{first.lineno})")
        seen[b.q] = b
    for q in range(1, len(seen) + 1):
        if q not in seen:
            last = max(seen.values(), key=lambda b: b.q)
            raise GeneratorError(last.path, last.lineno, f"q{q} is missing: exercises must "
                                 f"be numbered 1..{len(seen)} without gaps")
    ordered = sorted(seen.values(), key=lambda b: b.q)
    for a, b in zip(ordered, ordered[1:]):
        if b.stage < a.stage:
            raise GeneratorError(b.path, b.lineno, f"q{b.q} is in stage {b.stage} but q{a.q} "
                                 f"is in stage {a.stage}: number the exercises in stage order")
    by_file: dict[tuple[str, int], list[Block]] = {}
    for b in blocks:
        by_file.setdefault((b.path, b.stage), []).append(b)
    for same in by_file.values():
        for a, b in zip(same, same[1:]):
            if b.q < a.q:
                raise GeneratorError(b.path, b.lineno, f"q{b.q} comes after q{a.q} in the "
                                     "file: number a stage's exercises in reading order")


def specialise(lines: list[str], stage: int) -> list[str]:
    """The text of one file as part `stage` has it: guards and regions resolved."""
    out: list[str] = []
    i = 0
    keep_region = True
    dropped = False  # something was just left out: do not leave a double blank line
    while i < len(lines):
        line = lines[i]
        if dropped and not line.strip() and (not out or not out[-1].strip()):
            i += 1
            continue
        dropped = False
        m = REGION_OPEN_RE.match(line)
        if m:
            n = int(m.group(2))
            keep_region = stage < n if m.group(1) else stage >= n
            dropped = not keep_region
            i += 1
            continue
        if REGION_CLOSE_RE.match(line):
            keep_region = True
            i += 1
            continue
        if not keep_region or line.rstrip("\n").endswith(SKELETON_ONLY):
            dropped = True
            i += 1
            continue
        m = FROM_STAGE_RE.match(line.rstrip("\n"))
        if m:
            if stage >= int(m.group(2)):
                out.append(m.group(1) + "\n")
            else:
                dropped = True
            i += 1
            continue
        m = GUARD_RE.match(line)
        if m:
            end = guard_body_end(lines, i, len(m.group(1)))
            n = int(m.group(3))
            holds = stage >= n if m.group(2) == ">=" else stage < n
            if holds:
                body = [dedent4(x) for x in lines[i + 1:end]]
                out.extend(specialise(body, stage))
            else:
                dropped = True
            i = end
            continue
        out.append(line)
        i += 1
    return out


def part_text(lines: list[str], stage: int) -> str:
    """A file of part `stage`: specialised, and without the blank lines that the regions
    and guards it leaves out would leave behind (at most two in a row, none at the end),
    so that `diff` between two parts shows code, not spacing."""
    out: list[str] = []
    for line in specialise(lines, stage):
        if not line.strip() and len(out) >= 2 and not out[-1].strip() and not out[-2].strip():
            continue
        out.append(line)
    while out and not out[-1].strip():
        out.pop()
    return "".join(out)


def dedent4(line: str) -> str:
    """Remove one level of indentation (a guard's body moves up one level)."""
    if not line.strip():
        return "\n"
    return line[4:] if line.startswith("    ") else line


def skeletonise(sf: SourceFile, blocks: list[Block], first_party: set[str],
                empty: bool = True) -> list[str]:
    """The skeleton's text of one file: the source as a student reads it, each block
    emptied to its hint (unless `empty` is false: the round-trip test's view).

    Guards stay as real code (a student's copy turns parts on by its directory name);
    the annotations only the generator reads go: region markers, `# from stage N`
    and `# skeleton only`.  Filling the blocks back in gives the unemptied view.
    """
    out: list[str] = []
    by_line = {b.lineno: b for b in blocks}
    i = 0
    while i < len(sf.lines):
        line = sf.lines[i]
        b = by_line.get(i + 1)
        if b and empty:
            out.append(line)
            out.extend(b.hint)
            out.append(not_implemented_call(b))
            i += 1 + len(b.hint) + len(b.code)
            continue
        i += 1
        if REGION_OPEN_RE.match(line) or REGION_CLOSE_RE.match(line):
            continue
        text = line.rstrip("\n")
        if text.endswith(SKELETON_ONLY):
            text = text[: -len(SKELETON_ONLY)]
        m = FROM_STAGE_RE.match(text)
        text = m.group(1) if m else text
        out.append(text + "\n" if line.endswith("\n") else text)
    if blocks and empty:
        out = add_import(out, "exercise", "not_implemented", first_party)
    return out


IMPORT_RE = re.compile(r"^(?:import (\w+)|from (\w+) import (.+))$")


def add_import(lines: list[str], module: str, name: str, first_party: set[str]) -> list[str]:
    """Add `from module import name` where isort (ruff's I001) wants it: into an import
    from the same module, else before the first-party import that sorts after it, else
    after the first-party imports, else as a new section after the standard library."""
    imports = [(i, IMPORT_RE.match(x.rstrip("\n"))) for i, x in enumerate(lines)]
    imports = [(i, m) for i, m in imports if m]
    if not imports:
        raise GeneratorError("?", 1, "a file with exercises needs an import section")
    for i, m in imports:
        if m.group(2) == module:
            names = sorted({*m.group(3).split(", "), name})
            return lines[:i] + [f"from {module} import {', '.join(names)}\n"] + lines[i + 1:]
    line = f"from {module} import {name}\n"
    ours = [(i, m) for i, m in imports if (m.group(1) or m.group(2)) in first_party]
    for i, m in ours:
        if m.group(2) and m.group(2) > module:
            return lines[:i] + [line] + lines[i:]
    if ours:
        last = ours[-1][0]
        return lines[: last + 1] + [line] + lines[last + 1:]
    last = imports[-1][0]
    return lines[: last + 1] + ["\n", line] + lines[last + 1:]


def not_implemented_call(b: Block) -> str:
    """The line that stands for an unwritten exercise in the skeleton."""
    call = f"{b.indent}not_implemented({b.q}, {b.stage}, {b.what!r})\n"
    if len(call) <= 100:
        return call
    return f"{b.indent}not_implemented(\n{b.indent}    {b.q}, {b.stage}, {b.what!r})\n"


def generate(src: Path) -> dict[str, dict[str, tuple[str, bool]]]:
    """All outputs: {directory: {relative path: (text, executable)}}."""
    files = [read_source(src, p.relative_to(src).as_posix())
             for p in sorted(src.rglob("*")) if p.is_file() and wanted(p)]
    blocks_of = {sf.path: check_markers(sf) for sf in files}
    check_numbering([b for bs in blocks_of.values() for b in bs])
    outputs: dict[str, dict[str, tuple[str, bool]]] = {}
    for stage, name in PARTS.items():
        outputs[name] = {
            sf.path: (part_text(sf.lines, stage), sf.executable)
            for sf in files if sf.stage <= stage and sf.only != "skeleton"
        }
    first_party = first_party_modules(files)
    outputs[SKELETON] = {
        sf.path: ("".join(skeletonise(sf, blocks_of[sf.path], first_party)), sf.executable)
        for sf in files if sf.only != "parts"
    }
    return outputs


def first_party_modules(files: list[SourceFile]) -> set[str]:
    """The modules src/ holds: what isort calls first-party."""
    return {Path(sf.path).stem for sf in files if sf.path.endswith(".py")}


def skeleton_view(src: Path, rel: str) -> str:
    """One file of the skeleton with every block filled: what fill_blocks gives back."""
    files = [read_source(src, p.relative_to(src).as_posix())
             for p in sorted(src.rglob("*")) if p.is_file() and wanted(p)]
    sf = next(f for f in files if f.path == rel)
    return "".join(skeletonise(sf, check_markers(sf), first_party_modules(files), empty=False))


def wanted(path: Path) -> bool:
    return "__pycache__" not in path.parts and path.name != "README.md" and path.suffix != ".pyc"


def all_blocks(src: Path) -> list[Block]:
    files = [read_source(src, p.relative_to(src).as_posix())
             for p in sorted(src.rglob("*")) if p.is_file() and wanted(p)]
    return sorted((b for sf in files for b in check_markers(sf)), key=lambda b: b.q)


README_START = "---- exercises: generated by `python3 tools/generate.py --exercises` ----\n"
README_END = "---- end of exercises ----\n"


def readme_with_table(text: str, table: str) -> str:
    """README.txt with its exercise table replaced by `table`."""
    if README_START not in text or README_END not in text:
        raise GeneratorError("README.txt", 1, "the exercise table's marker lines are missing")
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    return head + README_START + table + README_END + tail


def fill_blocks(skeleton_text: str, blocks: dict[int, Block], only=None) -> str:
    """Put the reference code back into a skeleton file's blocks (all, or those in
    `only`): what a student does, used by the round-trip and grader tests."""
    out, lines, i = [], skeleton_text.splitlines(keepends=True), 0
    filled_all = only is None
    while i < len(lines):
        line = lines[i]
        if filled_all and line == NOT_IMPLEMENTED_IMPORT:
            i += 1
            continue
        if filled_all and line.startswith("from exercise import ") and "not_implemented" in line:
            names = line.rstrip("\n").split(" import ", 1)[1].split(", ")
            line = f"from exercise import {', '.join(n for n in names if n != 'not_implemented')}\n"
        m = BELOW_RE.match(line)
        out.append(line)
        i += 1
        if m and (filled_all or int(m.group(2)) in only):
            block = blocks[int(m.group(2))]
            out.extend(block.hint)
            out.extend(block.code)
            while not ABOVE_RE.match(lines[i]):
                i += 1
    return "".join(out)


def write(out: Path, outputs: dict[str, dict[str, tuple[str, bool]]]) -> None:
    for name, files in outputs.items():
        target = out / name
        if target.exists():
            shutil.rmtree(target)
        for rel, (text, executable) in files.items():
            path = target / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            path.chmod(0o755 if executable else 0o644)


def stale(out: Path, outputs: dict[str, dict[str, tuple[str, bool]]]) -> list[str]:
    """Describe every difference between the committed directories and fresh output."""
    problems = []
    for name, files in outputs.items():
        target = out / name
        present = {p.relative_to(target).as_posix() for p in target.rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts} if target.exists() else set()
        for rel in sorted(present - files.keys()):
            problems.append(f"{name}/{rel}: not generated from src/ (remove it)")
        for rel, (text, executable) in sorted(files.items()):
            path = target / rel
            if not path.exists():
                problems.append(f"{name}/{rel}: missing")
                continue
            have = path.read_text()
            if have != text:
                diff = difflib.unified_diff(text.splitlines(), have.splitlines(),
                                            f"generated/{rel}", f"{name}/{rel}", lineterm="", n=1)
                problems.append(f"{name}/{rel}: stale\n" + "\n".join(list(diff)[:12]))
            elif bool(path.stat().st_mode & 0o111) != executable:
                problems.append(f"{name}/{rel}: executable bit differs")
    return problems


def main(argv: list[str] | None = None) -> int:
    root = Path(__file__).resolve().parent.parent
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only report stale outputs")
    ap.add_argument("--src", type=Path, default=root / "src")
    ap.add_argument("--out", type=Path, default=root)
    ap.add_argument("--only", choices=["parts", "skeleton"], help="write only these outputs")
    ap.add_argument("--exercises", action="store_true", help="print the exercise table")
    args = ap.parse_args(argv)
    if args.exercises:
        try:
            print(exercise_table(all_blocks(args.src)), end="")
        except GeneratorError as e:
            print(f"generate: {e}", file=sys.stderr)
            return 2
        return 0
    try:
        outputs = generate(args.src)
    except GeneratorError as e:
        print(f"generate: {e}", file=sys.stderr)
        return 2
    if args.only == "parts":
        outputs = {k: v for k, v in outputs.items() if k != SKELETON}
    elif args.only == "skeleton":
        outputs = {SKELETON: outputs[SKELETON]}
    readme = args.out / "README.txt"
    table = exercise_table(all_blocks(args.src))
    if args.check:
        problems = stale(args.out, outputs)
        if readme.exists() and readme_with_table(readme.read_text(), table) != readme.read_text():
            problems.append("README.txt: the exercise table is stale")
        for p in problems:
            print(f"generate: {p}", file=sys.stderr)
        if problems:
            print("generate: run 'make parts skeleton' and commit the result", file=sys.stderr)
        return 1 if problems else 0
    write(args.out, outputs)
    if readme.exists():
        readme.write_text(readme_with_table(readme.read_text(), table))
    print(f"generate: wrote {', '.join(outputs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
