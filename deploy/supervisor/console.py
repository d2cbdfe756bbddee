"""The run command's console: a supervisord event listener (scripts/run.sh starts it).

supervisord writes each program's output to that program's log file (var/log/<name>.log) and
puts nothing in front of the lines it passes on, so this listener, which is handed every chunk
of output as a PROCESS_LOG event, writes it to the terminal line by line with the time and the
program's name in front. It also turns the state events of a process that died into one line
each: which process, how it ended, when, after how long, and which restart this is; and into a
banner when supervisord gives up on a process that keeps failing as it starts.

The listener protocol (supervisord's docs, "Events"): write READY, read a header line and a
payload of `len` bytes, handle it, write RESULT. Bytes throughout: `len` counts bytes, and the
programs' output is not always ASCII. The listener's stdout is that protocol, so what it has to
say goes to its stderr, which supervisord passes on to the terminal.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import time
import traceback
import xmlrpc.client
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO, TextIO

from supervisor import childutils

# A line that never ends (a progress bar) is written once this long rather than held forever.
LONGEST_LINE = 64 * 1024


def _fields(raw: bytes) -> dict[str, str]:
    """`key:value key:value` as supervisord writes event headers and state payloads."""
    return dict(token.split(":", 1) for token in raw.decode(errors="replace").split())


class Console:
    """What the terminal shows: every program's lines, and each death, restart and give-up."""

    def __init__(self, out: TextIO, *, width: int, startsecs: int, startretries: int, conf: str) -> None:
        self.out = out
        self.ctl = f"{Path(sys.executable).parent / 'supervisorctl'} -c {conf}"
        self.width = width
        self.startsecs = startsecs
        self.startretries = startretries
        self.partial: dict[str, str] = {}
        self.started: dict[str, float] = {}
        self.restarts: Counter[str] = Counter()

    def handle(self, event: str, payload: bytes) -> None:
        if event.startswith("PROCESS_LOG"):
            head, _, data = payload.partition(b"\n")
            self.output(_fields(head)["processname"], data.decode(errors="replace"))
            return
        fields = _fields(payload)
        name, group = fields["processname"], fields["groupname"]
        if event == "PROCESS_STATE_STARTING":
            self.started[name] = time.time()
        elif event == "PROCESS_STATE_EXITED":
            self.flush(name)
            self.restarts[name] += 1
            how, when = self.ending(name)
            self.say(
                f"{name} stopped without being asked ({how}) at {when} after {self.uptime(name)} up; "
                f"restarting it now (restart {self.restarts[name]} since the run command started)"
            )
        elif event == "PROCESS_STATE_BACKOFF":
            self.flush(name)
            tries = int(fields["tries"])
            if tries <= self.startretries:
                how, when = self.ending(name)
                self.say(
                    f"{name} exited while starting ({how}) at {when} after {self.uptime(name)}; "
                    f"trying again in {tries} s (retry {tries} of {self.startretries})"
                )
        elif event == "PROCESS_STATE_FATAL":
            target = name if group == name else f"{group}:{name}"
            rule = "!" * 78
            for line in (
                rule,
                f"{name} IS DOWN and stays down: it exited within {self.startsecs} s of starting "
                f"{self.startretries + 1} times in a row.",
                "The rest of MOC keeps running. What it wrote is above, and in its log file:",
                f"  {self.ctl} tail {target}",
                "Once the cause is fixed, start it again with:",
                f"  {self.ctl} start {target}",
                rule,
            ):
                self.say(line)

    def output(self, name: str, data: str) -> None:
        lines = (self.partial.pop(name, "") + data).split("\n")
        rest = lines.pop()
        if len(rest) > LONGEST_LINE:
            lines.append(rest)
        elif rest:
            self.partial[name] = rest
        for line in lines:
            self.write(name, line.rstrip("\r"))

    def flush(self, name: str) -> None:
        """A process that ended will not finish its last line: write what there is."""
        rest = self.partial.pop(name, "")
        if rest:
            self.write(name, rest)

    def write(self, name: str, line: str) -> None:
        self.out.write(f"{time.strftime('%H:%M:%S')} {name:<{self.width}} | {line}\n")

    def say(self, line: str) -> None:
        self.write("supervisor", f"!! {line}")

    def uptime(self, name: str) -> str:
        started = self.started.get(name)
        return "an unknown time" if started is None else str(timedelta(seconds=round(time.time() - started)))

    def ending(self, name: str) -> tuple[str, str]:
        """How the process ended ("terminated by SIGKILL", "exit status 1") and when: supervisord
        logs both as it reaps the process, before it sends the event, which carries neither."""
        unknown = ("how, unknown", time.strftime("%H:%M:%S"))
        try:
            tail = childutils.getRPCInterface(os.environ).supervisor.readLog(-16384, 0)
        except (KeyError, OSError, xmlrpc.client.Error):  # KeyError: not run by supervisord
            return unknown
        pattern = rf"^\S+ (\d\d:\d\d:\d\d)\S* \w+ exited: {re.escape(name)} \((.+?); (?:not )?expected\)$"
        found = re.findall(pattern, tail, re.MULTILINE)
        return (found[-1][1], found[-1][0]) if found else unknown


def serve(console: Console, inp: BinaryIO, out: BinaryIO) -> None:
    while True:
        out.write(b"READY\n")
        out.flush()
        header = inp.readline()
        if not header:  # supervisord is gone
            return
        headers = _fields(header)
        payload = inp.read(int(headers["len"]))
        try:
            console.handle(headers["eventname"], payload)
        except Exception:  # one odd event must not stop the console, nor be redelivered forever
            console.out.write(traceback.format_exc())
        console.out.flush()
        out.write(b"RESULT 2\nOK")
        out.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=20, help="the longest program name")
    parser.add_argument("--startsecs", type=int, required=True)
    parser.add_argument("--startretries", type=int, required=True)
    parser.add_argument("--conf", required=True, help="supervisord's configuration file")
    args = parser.parse_args()
    # Stopped last, when there is nothing left to report: a SIGTERM is the end, not a failure.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    console = Console(
        sys.stderr,
        width=max(args.width, len("supervisor")),
        startsecs=args.startsecs,
        startretries=args.startretries,
        conf=args.conf,
    )
    serve(console, sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    main()
