"""``mpp-admin simulate``: the script parser, the runner, both renderers, the golden scripts
of tests/scripts (the article's illustrations and MPP's acceptance scenarios), and the CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mpp_agent.model import PoolStatus, State
from mpp_agent.simulate import (
    ScriptError,
    StepResult,
    parse_script,
    render_json_lines,
    render_text,
    run_steps,
    simulate,
)
from mpp_cli.app import app

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
SIM_FILES = sorted(SCRIPTS.glob("*.sim"))

BOOTSTRAP = 'pool "name:pool1;primary:a;secondary:b"\ncycle\ncycle\n'


# ---- golden scripts ------------------------------------------------------------------------


def test_the_article_and_acceptance_scripts_exist() -> None:
    names = {p.stem for p in SIM_FILES}
    assert {
        "illustration05_bootstrap",
        "illustration12-14_secondary_failure_recovery",
        "illustration15_primary_failover_handback",
        "s01_bootstrap",
        "s03_primary_failover",
        "s06_manual_recovery_handback",
    } <= names


@pytest.mark.parametrize("script", SIM_FILES, ids=[p.stem for p in SIM_FILES])
def test_golden_script(script: Path) -> None:
    # The .jsonl files were generated once and reviewed step by step against the comments in
    # the .sim file, which quote the article and MPP's behaviour. Regenerate with
    # `mpp-admin simulate --json X.sim > X.jsonl` only after reviewing the difference.
    expected = script.with_suffix(".jsonl").read_text(encoding="utf-8")
    results = simulate(script.read_text(encoding="utf-8"))
    assert render_json_lines(results) == expected
    for result in results:
        for pool in result.pools:
            assert len(pool.active_nodes) <= 1
            if pool.status is PoolStatus.FAIL:
                assert pool.active_nodes == ()


# ---- parsing ---------------------------------------------------------------------------------

MALFORMED = [
    pytest.param(
        "pool name:p;primary:a\nfrobnicate a\n", 2, "unknown step 'frobnicate'", id="verb"
    ),
    pytest.param("pool name:p;primary:a\nrecover a:99999\n", 2, "bad port", id="bad-node"),
    pytest.param("# c\n\npool name:p;primary:a;primary:b\n", 3, "primary, because", id="pool"),
    pytest.param("pool name:p;primary:a\ncycle a=down\n", 2, "bad outcome 'down'", id="outcome"),
    pytest.param("pool name:p;primary:a\ncycle a\n", 2, "bad outcome 'a'", id="no-outcome"),
    pytest.param("pool name:p;primary:a\ncycle a=request:\n", 2, "bad outcome", id="empty-req"),
    pytest.param(
        "pool name:p;primary:a\ncycle a=connect:x a:3306=request:y\n",
        2,
        "node a:3306 is given two outcomes",
        id="two-outcomes",
    ),
    pytest.param(
        "pool name:p;primary:a\ncycle pool:p=down\n", 2, "pool:<name>=fail", id="pool-fail"
    ),
    pytest.param(
        "pool name:p;primary:a;secondary:b\ncycle b=receives:\n", 2, "not a node", id="receives"
    ),
    pytest.param('cycle a=connect:"oops\n', 1, "No closing quotation", id="quote"),
    pytest.param("pool name:p;primary:a max_requests=x\n", 1, "whole number", id="max-requests"),
    pytest.param("pool name:p;primary:a max_requests=0\n", 1, "max_requests must be", id="m-0"),
    pytest.param("pool\n", 1, "needs a failoverpool string", id="pool-empty"),
    pytest.param("activate-primary\n", 1, "takes one pool name", id="activate-arity"),
    pytest.param("recover a b\n", 1, "recover takes <host[:port]>", id="recover-arity"),
    pytest.param("delete a pool=\n", 1, "empty pool name", id="delete-empty-pool"),
]


@pytest.mark.parametrize(("text", "line_no", "reason"), MALFORMED)
def test_malformed_script_names_line(text: str, line_no: int, reason: str) -> None:
    with pytest.raises(ScriptError) as error:
        parse_script(text)
    line = text.splitlines()[line_no - 1].strip()
    assert error.value.line_no == line_no
    assert reason in str(error.value)
    assert str(error.value).startswith(f"line {line_no}: ")
    assert str(error.value).endswith(f": {line}")


def test_comments_and_blank_lines_are_not_steps() -> None:
    steps = parse_script("# setup\n\npool name:p;primary:a  # inline\n   \ncycle\n")
    assert [(s.number, s.line_no, s.command) for s in steps] == [
        (1, 3, "pool name:p;primary:a  # inline"),
        (2, 5, "cycle"),
    ]


def test_connect_outcome_is_worded_as_mpp_probe_and_request_verbatim() -> None:
    results = simulate(
        'pool "name:p;primary:a;secondary:b:3307"\n'
        "cycle a=connect:'Too many connections' b:3307=request:\"Slave Error: x, Last_Error: y\"\n"
    )
    messages = [n.message for n in results[-1].pools[0].nodes]
    assert messages == [
        "Could not connect to mysql host a:3306: Too many connections",
        "Slave Error: x, Last_Error: y",
    ]


# ---- running ---------------------------------------------------------------------------------


def test_now_is_the_step_number() -> None:
    results = simulate(BOOTSTRAP)
    assert [n.last_request_time for n in results[2].pools[0].nodes] == [3, 3]


def test_refused_steps_report_and_the_run_goes_on() -> None:
    results = simulate(BOOTSTRAP + "activate-primary pool1\ndelete z\ncycle\n")
    assert [(r.output, r.error) for r in results[3:]] == [
        ("", "PRIMARY SERVER a:3306 IS NOT READY. STATE must be STANDBY for activation."),
        ("", "Server z:3306 is not a member of any pool."),
        ("", ""),
    ]
    assert results[3].pools == results[2].pools
    assert results[5].pools[0].nodes[0].state is State.ACTIVE


def test_recover_pool_output_and_unknown_pool() -> None:
    results = simulate(BOOTSTRAP + "recover pool:pool1\nrecover pool:nope\n")
    assert (results[3].output, results[3].error) == ("OK: Pool status reset from OK to OK", "")
    assert (results[4].output, results[4].error) == ("", "No pool named nope.")


def test_pool_again_replaces_the_configuration() -> None:
    results = simulate(
        BOOTSTRAP
        + "cycle\n"
        + 'pool "name:pool1;secondary:b"\n'
        + 'pool "name:pool1;primary:a;secondary:c" max_requests=2\n'
        + 'pool "name:pool1;secondary:c" force\n'
    )
    refused, replaced, forced = results[4:]
    assert refused.error == (
        "Refusing to remove the ACTIVE server a:3306 from pool pool1; use force to remove it "
        "anyway."
    )
    rows = [(str(n.node), n.requests, n.state) for n in replaced.pools[0].nodes]
    assert rows == [("a:3306", 0, State.ACTIVE), ("c:3306", None, State.UNKNOWN)]
    assert replaced.pools[0].max_requests == 2
    assert [str(n.node) for n in forced.pools[0].nodes] == ["c:3306"]


# ---- rendering -------------------------------------------------------------------------------

TEXT_BOOTSTRAP = (
    '== step 1: pool "name:pool1;primary:a;secondary:b"\n'
    "T  Server Name                     req  Status   State           Last Status Message  \n"
    "-  ------------------------------  ---  -------  --------------  -------------------  \n"
    "*  [ pool1 ] status=OK\n"
    "P  a:3306                               OK       UNKNOWN                              \n"
    "S  b:3306                               OK       UNKNOWN                              \n"
    "\n"
    "== step 2: cycle\n"
    "T  Server Name                     req  Status   State           Last Status Message  \n"
    "-  ------------------------------  ---  -------  --------------  -------------------  \n"
    "*  [ pool1 ] status=OK\n"
    "P  a:3306                          0    OK       STANDBY                              \n"
    "S  b:3306                          0    OK       STANDBY                              \n"
    "\n"
    "== step 3: cycle\n"
    "T  Server Name                     req  Status   State           Last Status Message  \n"
    "-  ------------------------------  ---  -------  --------------  -------------------  \n"
    "*  [ pool1 ] status=OK\n"
    "P  a:3306                          1    OK_WARN  ACTIVE          "
    "PRIMARY instatement to ACTIVE complete.  \n"
    "S  b:3306                          0    OK       STANDBY                              \n"
)


def test_text_is_mpp_listing_without_time_column() -> None:
    # MPP's --list: widths 1, 30, 3, 7, 14, 19, each followed by two spaces; an unset R
    # prints blank; a longer value is neither padded nor cut.
    assert render_text(simulate(BOOTSTRAP)) == TEXT_BOOTSTRAP


def test_text_shows_output_and_error_lines() -> None:
    text = render_text(simulate(BOOTSTRAP + "recover a\nrecover x\n"))
    assert (
        "== step 4: recover a\n"
        "OK: Cached level reset from OK_WARN/1 (ACTIVE) to OK_WARN/0 (UNKNOWN) for a:3306\n"
        "T  Server Name"
    ) in text
    assert "== step 5: recover x\nerror: Server x:3306 is not a member of any pool.\nT  " in text


def test_json_line_has_exactly_the_documented_shape() -> None:
    lines = render_json_lines(simulate(BOOTSTRAP + "recover b\n")).splitlines()
    assert len(lines) == 4
    first = json.loads(lines[0])
    assert first == {
        "step": 1,
        "command": 'pool "name:pool1;primary:a;secondary:b"',
        "output": "",
        "error": "",
        "pools": [
            {
                "name": "pool1",
                "status": "OK",
                "nodes": [
                    {
                        "node": "a:3306",
                        "type": "PRIMARY",
                        "requests": 0,
                        "status": "OK",
                        "state": "UNKNOWN",
                        "message": "",
                        "monitor_note": "",
                    },
                    {
                        "node": "b:3306",
                        "type": "SECONDARY",
                        "requests": 0,
                        "status": "OK",
                        "state": "UNKNOWN",
                        "message": "",
                        "monitor_note": "",
                    },
                ],
            }
        ],
    }
    assert list(first) == ["step", "command", "output", "error", "pools"]
    last = json.loads(lines[3])
    assert last["output"] == (
        "OK: Cached level reset from OK/0 (STANDBY) to OK_WARN/0 (UNKNOWN) for b:3306"
    )
    assert last["pools"][0]["nodes"][1] == {
        "node": "b:3306",
        "type": "SECONDARY",
        "requests": 0,
        "status": "OK_WARN",
        "state": "UNKNOWN",
        "message": "Manual Recovery Initiated.",
        "monitor_note": "",
    }


def test_runner_is_pure_over_parsed_steps() -> None:
    steps = parse_script(BOOTSTRAP)
    first: tuple[StepResult, ...] = run_steps(steps)
    assert run_steps(steps) == first


# ---- the command -----------------------------------------------------------------------------

runner = CliRunner()


def test_cli_text_from_file(tmp_path: Path) -> None:
    script = tmp_path / "boot.sim"
    script.write_text(BOOTSTRAP, encoding="utf-8")
    result = runner.invoke(app, ["simulate", str(script)])
    assert result.exit_code == 0
    assert result.stdout == TEXT_BOOTSTRAP


def test_cli_json_from_stdin() -> None:
    result = runner.invoke(app, ["simulate", "--json", "-"], input=BOOTSTRAP)
    assert result.exit_code == 0
    docs = [json.loads(line) for line in result.stdout.splitlines()]
    assert [d["step"] for d in docs] == [1, 2, 3]
    assert docs[2]["pools"][0]["nodes"][0]["state"] == "ACTIVE"


def test_cli_malformed_script_exits_2_and_prints_nothing_else() -> None:
    result = runner.invoke(app, ["simulate", "-"], input=BOOTSTRAP + "cycle a=boom\n")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "line 4: bad outcome 'boom'" in result.stderr
    assert result.stderr.rstrip().endswith(": cycle a=boom")


def test_cli_missing_file_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["simulate", str(tmp_path / "nope.sim")])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "cannot read" in result.stderr


def test_cli_refused_step_still_exits_0() -> None:
    result = runner.invoke(app, ["simulate", "--json", "-"], input=BOOTSTRAP + "delete q\n")
    assert result.exit_code == 0
    assert json.loads(result.stdout.splitlines()[-1])["error"] == (
        "Server q:3306 is not a member of any pool."
    )


def test_real_console_script_reads_stdin() -> None:
    exe = shutil.which("mpp-admin")
    assert exe is not None, "mpp-admin is not installed (pip install -e .)"
    script = (SCRIPTS / "s03_primary_failover.sim").read_text(encoding="utf-8")
    done = subprocess.run(
        [exe, "simulate", "--json", "-"],
        input=script,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == (SCRIPTS / "s03_primary_failover.jsonl").read_text(encoding="utf-8")
    bad = subprocess.run(
        [exe, "simulate", "-"], input="cycle\nzap\n", capture_output=True, text=True, timeout=60
    )
    assert (bad.returncode, bad.stdout) == (2, "")
    assert "line 2: unknown step 'zap'" in bad.stderr
