"""README.md's command lines, examples and workflow are what the commands do and print.

- Usage: every ``flexkv-sim`` / ``flexkv-run`` line of a fenced block (its indented
  continuation lines joined to it) and every inline code span that starts with one names
  only options that the (sub)command's ``--help`` lists; a choice list ``a|b|c`` after an
  option is the option's choices; a literal value in ``[--option VALUE]`` is its default.
- Figures: a command line whose comment states a summary figure (``# hit_rate 0.1387``)
  is run and the figure compared at the README's precision, and the sentence before its
  block, when it sizes the CPU tier (``a 3e6-token CPU tier``), is checked against the
  summary's capacity. The sharing figures (``two-instances.yaml`: 0.697 shared against
  0.531 partitioned``) are pinned by ``tests/sim/test_sharing_figures.py``; every other
  figure of that shape in README.md must be pinned here.
- Defaults that the prose states and ``flexkv-run config`` prints (``max_concurrency``,
  ``ssd_restore``, ``remote_backend``) and its stderr's tier sizes in GiB.
- "Record, calibrate, change, predict": the block's commands run as written, in a
  temporary folder, on two small generated traces and a one-layer model layout, and
  write what the block says they write.
- ``make demo``: README.md states no figure the demo prints, only that its last line
  names the report (``runs/demo/run/report.html``); the Makefile's demo commands take
  about two seconds, so that line is checked with the demo's own inputs.

Public traces are read from ``$FLEXKV_TRACES_DIR``; an example that needs an absent one
skips, saying so.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from flexkv_engine.cli import main as run_main
from flexkv_engine.trace.locations import public_traces_dir
from flexkv_sim.cli import main as sim_main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SHARING_TEST = ROOT / "tests" / "sim" / "test_sharing_figures.py"
MAINS: dict[str, click.Group] = {"flexkv-sim": sim_main, "flexkv-run": run_main}
# The README's path to the public traces, replaced by $FLEXKV_TRACES_DIR when run.
README_TRACES = "../shared/traces/"
WORKFLOW_HEADING = "## Record, calibrate, change, predict"
# A one-layer model: blocks of 512 bytes, so engine replays take a fraction of a second.
TINY_MODEL = {"num_layers": 1, "num_kv_heads": 1, "head_size": 16, "dtype": "float16"}

# An option where a command line can name one: not inside a word (flexkv-sim, run-a).
_OPTION = re.compile(r"(?<![\w.-])(\[)?(--?[A-Za-z][\w-]*)(?:[ \t]+(?![-\[])([^\s\[\]]+))?")
_PLACEHOLDER = re.compile(r"[A-Z][A-Z_]*|\.\.\.")
# A figure a command prints: a rate with three or more decimals, or a count like 3e6.
_FIGURE = re.compile(r"(?<![\w.])(?:\d+\.\d{3,}|\d+(?:\.\d+)?e\d+)(?![\w.]|\.\d)")
_COMMENT = re.compile(r"(?:^|\s)#(.*)$")


@dataclass(frozen=True)
class Command:
    """One command of README.md: its code with continuations joined, and its comments."""

    code: str
    comment: str  # on its lines, or indented below them
    line: int
    block: int  # index of its fenced block; -1 for an inline code span
    notes: str = ""  # comment lines above it

    @property
    def words(self) -> list[str]:
        return self.code.split()

    def __str__(self) -> str:
        return f"README.md:{self.line}: {self.code}"


def _readme() -> str:
    return README.read_text(encoding="utf-8")


def fenced_blocks(text: str) -> list[tuple[int, list[str]]]:
    """(line number of the first line, lines) of every fenced block."""
    blocks: list[tuple[int, list[str]]] = []
    current: list[str] | None = None
    start = 0
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            if current is None:
                current, start = [], number + 1
            else:
                blocks.append((start, current))
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def _split_comment(line: str) -> tuple[str, str]:
    found = _COMMENT.search(line)
    if found is None:
        return line.rstrip(), ""
    return line[: found.start()].rstrip(), found.group(1).strip()


def block_commands(index: int, start: int, lines: list[str]) -> list[Command]:
    """The commands of one block. An indented line continues the command above it, as
    does the line after one ending in a backslash; a comment line in the first column
    belongs to the command below it."""
    commands: list[Command] = []
    code: list[str] = []
    comments: list[str] = []
    notes: list[str] = []
    first = 0

    def close() -> None:
        if code:
            commands.append(Command(" ".join(code), " ".join(comments), first, index,
                                    " ".join(notes)))
            notes.clear()
        code.clear()
        comments.clear()

    continued = False
    for offset, line in enumerate(lines):
        text, comment = _split_comment(line)
        text = text.strip()
        if text.split(" ", 1)[0] in MAINS:
            close()
            first = start + offset
        elif not text and not line[:1].isspace():
            close()
            notes.append(comment)
            continue
        elif not (code and (continued or line[:1].isspace() or not text)):
            close()
            notes.clear()
            continue
        continued = text.endswith("\\")
        if text:
            code.append(text.rstrip("\\").strip())
        if comment:
            comments.append(comment)
    close()
    return commands


def readme_commands() -> list[Command]:
    text = _readme()
    commands = [c for i, (start, lines) in enumerate(fenced_blocks(text))
                for c in block_commands(i, start, lines)]
    in_block = False
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            in_block = not in_block
        elif not in_block:
            spans = re.findall(r"`(flexkv-(?:sim|run)(?: [^`]*)?)`", line)
            commands.extend(Command(span, "", number, -1) for span in spans)
    return commands


def resolve(words: list[str]) -> tuple[list[str], click.Command]:
    """The (sub)command the words name: the longest run of subcommand names."""
    command: click.Command = MAINS[words[0]]
    path: list[str] = []
    for word in words[1:]:
        if not isinstance(command, click.Group):
            break
        sub = command.get_command(click.Context(command), word)
        if sub is None:
            break
        command, path = sub, [*path, word]
    return path, command


def listed_options(help_text: str) -> set[str]:
    """The option names in the left column of --help's option list."""
    names: set[str] = set()
    for line in help_text.splitlines():
        entry = re.match(r"  (-\S.*?)(?:\s{2,}|$)", line)
        if entry:
            names.update(re.findall(r"(?<![\w-])--?[A-Za-z][\w-]*", entry.group(1)))
    return names


def _param(command: click.Command, option: str) -> click.Parameter | None:
    for param in command.params:
        if option in (*param.opts, *param.secondary_opts):
            return param
    return None


def _id(command: Command) -> str:
    return f"L{command.line}:{' '.join(command.words[:3])}"


COMMANDS = readme_commands()


def test_the_usage_lines_are_found() -> None:
    usage = {" ".join(resolve(c.words)[0]) for c in COMMANDS if c.block >= 0}
    assert {"replay", "curve", "trace generate", "config", "calibrate", "validate"} <= usage


@pytest.mark.parametrize("command", COMMANDS, ids=_id)
def test_command_line_options_are_the_commands(command: Command) -> None:
    path, target = resolve(command.words)
    helped = CliRunner().invoke(MAINS[command.words[0]], [*path, "--help"])
    assert helped.exit_code == 0, f"{command}\n{helped.output}"
    options = listed_options(helped.stdout)
    for found in _OPTION.finditer(command.code):
        bracket, option, value = found.groups()
        named = " ".join([command.words[0], *path])
        assert option in options, \
            f"{command}\n{option} is not an option of {named}: {sorted(options)}"
        param = _param(target, option)
        assert param is not None, f"{command}\n{option}"
        if value is None:
            continue
        if "|" in value and isinstance(param.type, click.Choice):
            stated = set(value.split("|"))
            assert stated == set(param.type.choices), \
                f"{command}\n{option} {value}: the choices are {list(param.type.choices)}"
        elif (bracket and not _PLACEHOLDER.fullmatch(value) and "|" not in value
              and not getattr(param, "multiple", False)):
            default = param.get_default(click.Context(target), call=False)
            if default is not None and not callable(default):
                assert value == str(default), \
                    f"{command}\n{option} {value}: the default is {default}"


def _invoke(words: list[str]) -> Result:
    path = words[0]
    return CliRunner().invoke(MAINS[path], words[1:])


def _public(words: list[str]) -> list[str]:
    """The words with the README's trace folder replaced by $FLEXKV_TRACES_DIR; skips
    when a trace named is absent."""
    out = []
    for word in words:
        if not word.startswith(README_TRACES):
            out.append(word)
            continue
        trace = public_traces_dir() / word.removeprefix(README_TRACES)
        if not trace.is_file():
            pytest.skip(f"public trace {trace} not found (set FLEXKV_TRACES_DIR)")
        out.append(str(trace))
    return out


def _dig(summary: dict, key: str) -> float:
    value: object = summary
    for part in key.split("."):
        assert isinstance(value, dict) and part in value, f"{key} not in the summary"
        value = value[part]
    assert isinstance(value, (int, float)), (key, value)
    return float(value)


def _scientific(value: float, stated: str) -> str:
    """``value`` written as ``stated`` is (``3e6``: one significant digit)."""
    mantissa = stated.split("e", maxsplit=1)[0]
    digits = len(mantissa.split(".")[1]) if "." in mantissa else 0
    m, e = f"{value:.{digits}e}".split("e")
    return f"{m}e{int(e)}"


def figure_examples() -> list[Command]:
    return [c for c in COMMANDS if c.block >= 0
            and re.fullmatch(r"[\w.]+ -?\d+\.\d+", c.comment)]


def _sentence_before(block: int) -> str:
    """The paragraph just before a fenced block, on one line."""
    text = _readme()
    start = fenced_blocks(text)[block][0]
    lines = text.splitlines()[: start - 2]
    paragraph: list[str] = []
    for line in reversed(lines):
        if not line.strip():
            if paragraph:
                break
            continue
        paragraph.insert(0, line.strip())
    return " ".join(paragraph)


@pytest.mark.parametrize("command", figure_examples(), ids=_id)
def test_example_prints_the_figures_the_readme_states(command: Command) -> None:
    key, stated = command.comment.split()
    assert "--json" in command.words, f"{command}\nan example with a figure prints --json"
    result = _invoke(_public(shlex.split(command.code)))
    assert result.exit_code == 0, f"{command}\n{result.output}"
    summary = json.loads(result.stdout)
    decimals = len(stated.split(".")[1])
    assert f"{_dig(summary, key):.{decimals}f}" == stated, f"{command}\n{key}"
    tier = re.search(r"(\d+(?:\.\d+)?e\d+)-token CPU tier", _sentence_before(command.block))
    if tier is not None:
        tokens = summary["tiers"]["cpu"]["capacity_blocks"] * summary["tokens_per_block"]
        assert _scientific(tokens, tier.group(1)) == tier.group(1), \
            f"{command}\nits CPU tier holds {tokens} tokens"


def test_every_figure_in_the_readme_is_pinned() -> None:
    pinned: set[str] = set()
    for command in figure_examples():
        pinned.add(command.comment.split()[1])
        pinned.update(_FIGURE.findall(_sentence_before(command.block)))
    text = " ".join(_readme().split())
    sharing = re.search(r"two-instances\.yaml`: (\d\.\d{3}) shared against (\d\.\d{3}) "
                        r"partitioned", text)
    assert sharing is not None, "README.md no longer states the sharing figures"
    assert "shared against" in SHARING_TEST.read_text(), f"{SHARING_TEST} no longer pins them"
    pinned.update(sharing.groups())
    unpinned = sorted(set(_FIGURE.findall(text)) - pinned)
    assert not unpinned, f"figures in README.md that no test runs the command for: {unpinned}"


def test_defaults_the_readme_states_are_what_config_prints() -> None:
    result = CliRunner().invoke(run_main, ["config"])
    assert result.exit_code == 0, result.output
    resolved = json.loads(result.stdout)
    assert "GiB" in result.stderr and "cpu" in result.stderr, result.stderr
    text = " ".join(_readme().split())
    concurrency = re.search(r"`serving_config\.max_concurrency` at once \((\d+), the default",
                            text)
    restore = re.search(r"`ssd_restore`, default (true|false)", text)
    backend = re.search(r"`cache_config\.remote_backend`: `(\w+)` \(the default\)", text)
    assert concurrency and restore and backend, "README.md no longer states these defaults"
    assert int(concurrency.group(1)) == resolved["serving_config"]["max_concurrency"]
    assert restore.group(1) == json.dumps(resolved["cache_config"]["ssd_restore"])
    assert backend.group(1) == resolved["cache_config"]["remote_backend"]
    model = re.search(r"\(([\w.-]+) by default\)", text)
    assert model is not None
    _, bench_remote = resolve(["flexkv-run", "bench", "remote"])
    param = _param(bench_remote, "--model")
    assert param is not None and str(param.default).lower() == model.group(1).lower()


def _workflow() -> list[Command]:
    text = _readme()
    lines = text.splitlines()
    assert WORKFLOW_HEADING in lines, f"README.md has no section {WORKFLOW_HEADING!r}"
    heading = lines.index(WORKFLOW_HEADING) + 1
    for index, (start, _) in enumerate(fenced_blocks(text)):
        if start > heading:
            return [c for c in COMMANDS if c.block == index]
    raise AssertionError(f"no block under {WORKFLOW_HEADING!r}")


def test_record_calibrate_change_predict_runs_as_written(tmp_path, monkeypatch) -> None:
    pytest.importorskip("torch", reason="flexkv-run replay needs torch (pip install '.[engine]')")
    steps = _workflow()
    monkeypatch.chdir(tmp_path)
    for seed, name in enumerate(("chat.jsonl", "other.jsonl"), 1):
        made = _invoke(["flexkv-sim", "trace", "generate", "--workload", "multiturn",
                        "--requests", "60", "--seed", str(seed), "-o", name])
        assert made.exit_code == 0, made.output
    for blocks, name in ((200, "today.json"), (400, "tomorrow.json")):
        config = {"model_config": TINY_MODEL, "cache_config": {"num_cpu_blocks": blocks}}
        Path(name).write_text(json.dumps(config))
    written: set[str] = set()
    for step in steps:
        words = shlex.split(step.code)
        result = _invoke(words)
        assert result.exit_code == 0, f"{step}\n{result.output}"
        for flag in ("-o", "--out"):
            if flag in words:
                written.add(words[words.index(flag) + 1])
        written.update(re.findall(r"[\w-]+/[\w.-]+\.\w+", f"{step.notes} {step.comment}"))
        if "--mode" in words and words[words.index("--mode") + 1] == "timing":
            assert "TTFT" in result.output and "GET latency" in result.output, result.output
    assert len(steps) == 5 and len(written) >= 5, (steps, written)
    missing = sorted(p for p in written if not Path(p).exists())
    assert not missing, f"the workflow of README.md did not write {missing}"


def _demo_recipe() -> tuple[str, list[list[str]]]:
    """DEMO_DIR's default and the demo target's commands, from the Makefile."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    demo_dir = re.search(r"^DEMO_DIR \?= (\S+)$", makefile, re.MULTILINE)
    recipe = re.search(r"^demo:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert demo_dir and recipe, "the Makefile has no demo target"
    joined = recipe.group(1).replace("\\\n", " ")
    commands = []
    for line in joined.splitlines():
        command = line.strip().lstrip("@").replace("$(DEMO_DIR)", demo_dir.group(1))
        commands.append(shlex.split(command))
    return demo_dir.group(1), commands


def test_make_demo_last_line_names_the_report(tmp_path, monkeypatch) -> None:
    stated = re.search(r"The last line of `make demo` names the report, e\.g\. `([^`]+)`",
                       " ".join(_readme().split()))
    assert stated is not None
    demo_dir, commands = _demo_recipe()
    (tmp_path / "scenarios").symlink_to(ROOT / "scenarios")
    monkeypatch.chdir(tmp_path)
    last = ""
    for words in commands:
        if words[:2] == ["mkdir", "-p"]:
            Path(words[2]).mkdir(parents=True)
            continue
        assert words[0] == "$(VENV)/bin/flexkv-sim", words
        result = _invoke(["flexkv-sim", *words[1:]])
        assert result.exit_code == 0, f"{words}\n{result.output}"
        last = result.output.strip().splitlines()[-1]
    assert stated.group(1).startswith(demo_dir)
    assert last.split()[-1] == stated.group(1), last
    assert Path(stated.group(1)).is_file()
