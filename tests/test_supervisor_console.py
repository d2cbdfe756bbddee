"""The run command's console (deploy/supervisor/console.py) speaks supervisord's event listener
protocol: these feed it what supervisord sends and read what it writes."""

from __future__ import annotations

import re
import subprocess

from tests.procs import ROOT, project_env, python


def _event(name: str, payload: bytes) -> bytes:
    header = f"ver:3.0 server:supervisor serial:1 pool:console eventname:{name} len:{len(payload)}\n"
    return header.encode() + payload


def _log(process: str, data: str) -> bytes:
    return _event(
        "PROCESS_LOG_STDOUT",
        f"processname:{process} groupname:servers pid:42 channel:stdout\n".encode() + data.encode(),
    )


def _state(name: str, process: str, **extra: str) -> bytes:
    fields = {"processname": process, "groupname": "workers", "from_state": "RUNNING", **extra}
    return _event(name, " ".join(f"{k}:{v}" for k, v in fields.items()).encode())


def _console(*events: bytes) -> tuple[str, list[str]]:
    done = subprocess.run(
        [python(), "deploy/supervisor/console.py", "--width", "6", "--startsecs", "10", "--startretries", "2"]
        + ["--conf", "var/supervisord.conf"],
        cwd=ROOT,
        env=project_env(),
        input=b"".join(events),
        capture_output=True,
        timeout=30,
    )
    # Each line without its time, and with one space before the bar: the names are padded.
    lines = [
        re.sub(r" +\| ", " | ", line.split(" ", 1)[1], count=1) for line in done.stderr.decode().splitlines()
    ]
    return done.stdout.decode(), lines


def test_it_prefixes_whole_lines_with_the_process_name_across_chunks_and_multibyte_text() -> None:
    protocol, lines = _console(_log("web", "héllo — wo"), _log("worker", "one\n"), _log("web", "rld\nnext\n"))

    assert protocol == "READY\nRESULT 2\nOK" * 3 + "READY\n"
    assert lines == ["worker | one", "web | héllo — world", "web | next"]


def test_it_writes_the_unfinished_line_of_a_process_that_died_then_says_it_died() -> None:
    _, lines = _console(
        _state("PROCESS_STATE_STARTING", "worker", tries="0"),
        _log("worker", "Traceback: half a li"),
        _state("PROCESS_STATE_EXITED", "worker", expected="0", pid="42"),
    )

    assert lines[0] == "worker | Traceback: half a li"
    assert lines[1].startswith("supervisor | !! worker stopped without being asked (how, unknown) at ")
    assert lines[1].endswith("up; restarting it now (restart 1 since the run command started)")


def test_it_counts_retries_and_says_loudly_when_a_process_is_given_up_on() -> None:
    _, lines = _console(
        _state("PROCESS_STATE_BACKOFF", "worker", tries="1"),
        _state("PROCESS_STATE_BACKOFF", "worker", tries="2"),
        _state("PROCESS_STATE_BACKOFF", "worker", tries="3"),
        _state("PROCESS_STATE_FATAL", "worker", from_state="BACKOFF"),
    )

    assert "trying again in 1 s (retry 1 of 2)" in lines[0]
    assert "trying again in 2 s (retry 2 of 2)" in lines[1]
    assert "worker IS DOWN and stays down: it exited within 10 s of starting 3 times in a row." in lines[3]
    assert lines[-2].endswith("/supervisorctl -c var/supervisord.conf start workers:worker")
